import os

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from example_project.shop.demo import load_demo_catalog


class Command(BaseCommand):
    help = "Migrate, load the demo catalog and make an admin login (idempotent)."

    def handle(self, *args, **options):
        self.stdout.write("Migrating the database…")
        call_command("migrate", verbosity=0)
        offers = load_demo_catalog()
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        users = get_user_model().objects
        if not users.filter(username=username).exists():
            users.create_superuser(username=username, email="", password=password)
            login = f"{username} / {password}"
        else:
            login = f"{username} (existing user, password unchanged)"
        if not users.filter(username="buyer").exists():
            users.create_user(username="buyer", email="buyer@example.com", password="buyer")
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {len(offers)} offers.\n"
                f"  Site:  http://127.0.0.1:8000/  login buyer / buyer\n"
                f"  Admin: http://127.0.0.1:8000/admin/  login {login}"
            )
        )
