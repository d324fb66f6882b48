from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UserCreditsConfig(AppConfig):
    name = "user_credits"
    verbose_name = _("User credits")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import checks  # noqa: F401  (registers the system checks)
        from .payments import connect_provider_handlers
        from .services import sql

        connect_provider_handlers()
        # PostgreSQL fast paths are (re)created after every migrate.
        post_migrate.connect(sql.install, sender=self, dispatch_uid="user_credits_postgres")
