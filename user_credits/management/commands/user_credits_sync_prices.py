"""Create or update the payment provider's Product and Price of every recurring offer."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext, gettext_lazy

from ... import services
from ...exceptions import UserCreditsError
from ...models import Billing, Offer

#: ``services.sync_prices``' result for each offer, as printed.
RESULTS = {
    "created": gettext_lazy("created"),
    "updated": gettext_lazy("updated"),
    "unchanged": gettext_lazy("unchanged"),
}


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
            self.stdout.write(
                gettext("%(offer)s (#%(pk)s): %(result)s %(price)s")
                % {
                    "offer": names[pk].name,
                    "pk": pk,
                    "result": RESULTS.get(result, result),
                    "price": names[pk].stripe_price_id,
                }
            )
        self.stdout.write(gettext("%(count)s recurring offer(s) synced.") % {"count": len(results)})
