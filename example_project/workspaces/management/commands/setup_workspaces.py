"""``manage.py setup_workspaces``: a demo team (owner ``ada``, members ``bob`` and ``cy``) with
100 api-calls tokens, and a monthly limit of 10 tokens for ``cy``."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from user_credits import services
from user_credits.models import OfferGroup

from ...models import Workspace


class Command(BaseCommand):
    help = "Create a demo workspace whose members share its credits."

    def handle(self, *args, **options):
        users = get_user_model()._default_manager
        people = {}
        for name in ("ada", "bob", "cy"):
            people[name] = users.filter(username=name).first() or users.create_user(
                username=name, password=f"{name}-password"
            )
        team, created = Workspace.objects.get_or_create(
            slug="acme", defaults={"name": "Acme", "owner": people["ada"]}
        )
        team.members.add(people["bob"], people["cy"])
        group, _ = OfferGroup.objects.get_or_create(key="api-calls", defaults={"name": "API calls"})
        if created:
            services.grant(team, group, 100, reason="demo")
        services.set_spending_limit(team, people["cy"], group, 10, period="monthly")
        self.stdout.write(
            f"Workspace {team} ({services.get_balance(team, group)} api-calls): ada owns it, "
            "bob and cy are members; cy may spend 10 tokens a month."
        )
