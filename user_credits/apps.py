from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UserCreditsConfig(AppConfig):
    name = "user_credits"
    verbose_name = _("User credits")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .payments import connect_provider_handlers

        connect_provider_handlers()
