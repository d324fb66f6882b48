from dataclasses import dataclass


@dataclass(frozen=True)
class PaymentStart:
    """What a buyer's front end needs to go on with a payment."""

    provider: str
    reference: str = ""
    client_secret: str = ""
    redirect_url: str = ""


class PaymentProvider:
    """Starts payments. Providers translate; the order services hold the rules."""

    name = "base"
    requires_djstripe = False

    def start_payment(self, order, *, request=None, save_payment_method=False) -> PaymentStart:
        """``save_payment_method``: keep the buyer's payment method for off-session payments
        (auto-recharge), where the provider can."""
        raise NotImplementedError

    def charge_off_session(self, order, *, idempotency_key: str) -> PaymentStart:
        """Charge an auto-recharge order without the buyer (DESIGN.md §10). The default
        (manual payments) charges nothing: the order waits for an admin to validate it.
        A provider that is refused raises ``PaymentDeclined``; the order then fails."""
        return PaymentStart(provider=self.name, reference=f"{self.name}-{order.pk}")

    def start_setup(self, holder) -> PaymentStart:
        """Save a payment method for off-session payments before any purchase (Stripe: a
        SetupIntent). The default (manual payments) has nothing to save: ``InvalidTransition``
        (the API's 409), since retrying changes nothing."""
        from django.utils.translation import gettext

        from ..exceptions import InvalidTransition

        raise InvalidTransition(
            gettext("The %(provider)s payment provider saves no payment method.")
            % {"provider": self.name}
        )

    def start_subscription(self, subscription, *, request=None) -> PaymentStart | None:
        """Start the first payment of a paid subscription. The default (manual payments)
        starts nothing: its periods are renewed by hand (``services.renew_subscription``)."""
        return None

    def cancel_subscription(self, subscription, *, at_period_end: bool) -> None:
        """Tell the provider; the default has nothing to tell."""

    def resume_subscription(self, subscription) -> None:
        """Tell the provider that a cancel at period end is withdrawn."""

    def sync_price(self, offer) -> str:
        """Create or update the provider's price of a recurring offer; returns ``created``,
        ``updated`` or ``unchanged``. The default (manual payments) has no prices."""
        return "unchanged"
