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

    def start_payment(self, order, *, request=None) -> PaymentStart:
        raise NotImplementedError
