"""Manual validation: an admin (or the example site's simulated payment) marks orders paid."""

from .. import services
from .base import PaymentProvider, PaymentStart


class ManualProvider(PaymentProvider):
    name = "manual"

    def start_payment(self, order, *, request=None, save_payment_method=False) -> PaymentStart:
        return PaymentStart(provider=self.name, reference=f"manual-{order.pk}")

    def validate(self, order, *, message="", validated_by=None):
        """Mark ``order`` paid by hand, with a message in its history."""
        who = f" by {validated_by}" if validated_by is not None else ""
        return services.mark_paid(
            order,
            reference=f"manual-{order.pk}",
            message=message or f"Validated manually{who}.",
        )
