from django.contrib import admin

from user_credits.admin import SpendingLimitInline

from .models import Workspace


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "owner")
    search_fields = ("name", "slug")
    filter_horizontal = ("members",)
    inlines = [SpendingLimitInline]  # what each member may spend, edited on the team's page
