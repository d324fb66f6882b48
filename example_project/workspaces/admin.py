from django.contrib import admin

from .models import Workspace


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "owner")
    search_fields = ("name", "slug")
    filter_horizontal = ("members",)
