"""The public API: every write of the app goes through these functions.

See DESIGN.md §4 and §6. ``holder`` is an instance of ``USER_CREDITS_HOLDER_MODEL`` (by
default a user) or its primary key; ``member`` the user acting for the holder; ``offer_group`` an
``OfferGroup`` or its key. Other modules import from here, never the private names of the
modules below.
"""

from .catalog import current_orders_q, is_user_subscribed, load_offers
from .consumption import Consumption, consume
from .cycles import cycle_end
from .expiry import ExpiryReport, expire_credits
from .grants import grant
from .holds import capture, held_tokens, hold, release
from .ledger import live_lots_q
from .notifications import (
    PaymentNotification,
    payment_failed,
    payment_pending,
    payment_refunded,
    payment_succeeded,
)
from .orders import (
    create_order,
    mark_failed,
    mark_paid,
    record_payment_event,
    start_payment,
)
from .refunds import refund
from .selectors import (
    BalanceDetail,
    GroupCredits,
    LotCredits,
    get_balance,
    get_balance_detail,
    get_user_credits,
    with_balances,
)
from .spending import remove_spending_limit, set_spending_limit
from .verification import Problem, VerifyReport, verify_ledger

__all__ = [
    "BalanceDetail",
    "Consumption",
    "ExpiryReport",
    "GroupCredits",
    "LotCredits",
    "PaymentNotification",
    "Problem",
    "VerifyReport",
    "capture",
    "consume",
    "create_order",
    "current_orders_q",
    "cycle_end",
    "expire_credits",
    "get_balance",
    "get_balance_detail",
    "get_user_credits",
    "grant",
    "held_tokens",
    "hold",
    "is_user_subscribed",
    "live_lots_q",
    "load_offers",
    "mark_failed",
    "mark_paid",
    "payment_failed",
    "payment_pending",
    "payment_refunded",
    "payment_succeeded",
    "record_payment_event",
    "refund",
    "release",
    "remove_spending_limit",
    "set_spending_limit",
    "start_payment",
    "verify_ledger",
    "with_balances",
]
