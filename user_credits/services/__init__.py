"""The public API: every write of the app goes through these functions.

See DESIGN.md §4 and §6. ``holder`` is an instance of ``USER_CREDITS_HOLDER_MODEL`` (by
default a user) or its primary key; ``member`` the user acting for the holder; ``offer_group`` an
``OfferGroup`` or its key. Other modules import from here, never the private names of the
modules below.
"""

from .bulk import ConsumeItem, ConsumeResult, ConsumeStatus, consume_many
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
from .recharge import (
    disable_auto_recharge,
    enable_auto_recharge,
    setup_payment_method,
    start_auto_recharge,
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
from .subscriptions import (
    InvoiceNotification,
    SubscriptionNotification,
    cancel_subscription,
    change_offer,
    invoice_failed,
    invoice_paid,
    invoice_prorated,
    mark_past_due,
    prorate_upgrade,
    renew_subscription,
    resume_subscription,
    subscribe,
    subscription_updated,
    sync_prices,
)
from .verification import Problem, VerifyReport, verify_ledger

__all__ = [
    "BalanceDetail",
    "Consumption",
    "ExpiryReport",
    "GroupCredits",
    "InvoiceNotification",
    "LotCredits",
    "PaymentNotification",
    "Problem",
    "SubscriptionNotification",
    "VerifyReport",
    "disable_auto_recharge",
    "enable_auto_recharge",
    "setup_payment_method",
    "start_auto_recharge",
    "cancel_subscription",
    "capture",
    "change_offer",
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
    "invoice_failed",
    "invoice_paid",
    "invoice_prorated",
    "is_user_subscribed",
    "live_lots_q",
    "load_offers",
    "mark_failed",
    "mark_paid",
    "mark_past_due",
    "payment_failed",
    "payment_pending",
    "payment_refunded",
    "payment_succeeded",
    "prorate_upgrade",
    "record_payment_event",
    "refund",
    "release",
    "renew_subscription",
    "resume_subscription",
    "remove_spending_limit",
    "set_spending_limit",
    "start_payment",
    "subscribe",
    "subscription_updated",
    "sync_prices",
    "verify_ledger",
    "with_balances",
    "ConsumeItem",
    "ConsumeResult",
    "ConsumeStatus",
    "consume_many",
]
