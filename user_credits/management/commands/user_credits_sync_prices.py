"""Create or update the payment provider's Product and Price of every recurring offer."""

from django.core.management.base import BaseCommand, CommandError

from ... import services
from ...exceptions import UserCreditsError
from ...models import Billing, Offer


class Command(BaseCommand):
    help = (
        "Create or update the Stripe Product and Price of every active recurring paid offer "
        "(idempotent): a changed amount, currency or interval makes a new Price."
    )

    def add_arguments(self, parser):
        parser.add_argument("--offer", type=int, action="append", help="Only this offer id.")

    def handle(self, *args, offer=None, **options):
        offers = Offer.objects.filter(billing=Billing.RECURRING, is_active=True, price__gt=0)
        if offer:
            offers = Offer.objects.filter(pk__in=offer, billing=Billing.RECURRING)
        offers = offers.prefetch_related("prices").order_by("pk")
        try:
            results = services.sync_prices(offers)
        except UserCreditsError as exc:
            raise CommandError(str(exc)) from exc
        names = {o.pk: o for o in offers}
        for pk, result in results.items():
            self.stdout.write(f"{names[pk].name} (#{pk}): {result} {names[pk].stripe_price_id}")
        self.stdout.write(f"{len(results)} recurring offer(s) synced.")
