from django.core.management.base import BaseCommand

from example_project.shop.demo import load_demo_catalog


class Command(BaseCommand):
    help = "Create or update the demo offers (WonderAI plans, talks, a mobile bundle)."

    def handle(self, *args, **options):
        offers = load_demo_catalog()
        self.stdout.write(f"Demo catalog ready: {len(offers)} offers.")
