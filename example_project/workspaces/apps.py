from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "example_project.workspaces"
    label = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"
