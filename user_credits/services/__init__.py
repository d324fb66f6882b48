"""The public API: every write of the app goes through these functions.

See DESIGN.md §4. ``user`` is a user instance or its primary key; ``offer_group`` an
``OfferGroup`` or its key.
"""

from .catalog import is_user_subscribed, load_offers
from .credits import (
    BalanceDetail,
    Consumption,
    GroupCredits,
    LotCredits,
    consume,
    get_balance,
    get_balance_detail,
    get_user_credits,
    grant,
)
from .cycles import cycle_end
from .expiry import ExpiryReport, expire_credits
from .holds import capture, held_tokens, hold, release
from .orders import create_order, mark_failed, mark_paid, record_payment_event, refund

__all__ = [
    "BalanceDetail",
    "Consumption",
    "ExpiryReport",
    "GroupCredits",
    "LotCredits",
    "consume",
    "create_order",
    "cycle_end",
    "expire_credits",
    "capture",
    "get_balance",
    "get_balance_detail",
    "hold",
    "held_tokens",
    "release",
    "get_user_credits",
    "grant",
    "is_user_subscribed",
    "load_offers",
    "mark_failed",
    "mark_paid",
    "record_payment_event",
    "refund",
]
