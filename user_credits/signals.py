"""Outbound signals. Services send them through ``transaction.on_commit`` with
``send_robust``: a failing receiver is logged and never undoes the write it reports.

The signals about a holder's credits (``credits_*``) provide ``holder`` (the instance of
``USER_CREDITS_HOLDER_MODEL``, read from the database only if the receiver uses it) and
``holder_id``; ``user_id``, their name before holders, is still sent with the same primary key
for existing receivers (deprecated: use ``holder_id``).
"""

from django.dispatch import Signal

#: An order became paid (tokens are granted). provides args: order
order_paid = Signal()

#: A payment failed or an order was refused. provides args: order
order_failed = Signal()

#: An order was refunded fully or in part. provides args: order, amount, revoked
order_refunded = Signal()

#: Tokens were granted. provides args: holder, holder_id, user_id, offer_group, lot
credits_granted = Signal()

#: Tokens were consumed. provides args: holder, holder_id, user_id, offer_group, count,
#: balance, entries
credits_consumed = Signal()

#: Due lots were expired (sent once per account and sweep batch). provides args: holder,
#: holder_id, user_id, offer_group, lot_ids, amount
credits_expired = Signal()

#: A lot expires soon (sent once per lot). provides args: holder, holder_id, user_id,
#: offer_group, lot
credits_expiring = Signal()

#: An account is at or under a minimum (sent once per threshold). provides args:
#: holder, holder_id, user_id, offer_group, account, balance, threshold
credits_low = Signal()

#: A subscription's period was paid and granted. provides args: subscription, order
subscription_renewed = Signal()

#: A subscription's renewal payment failed. provides args: subscription
subscription_past_due = Signal()

#: A subscription's status became ``canceled`` (at once, or at its period end).
#: provides args: subscription
subscription_canceled = Signal()

#: An auto-recharge failed (declined, authentication required, refused by hand, or it could
#: not start). provides args: auto_recharge, order (or None), reason, failures
auto_recharge_failed = Signal()

#: An auto-recharge disabled itself after too many failures in a row. provides args:
#: auto_recharge, reason
auto_recharge_disabled = Signal()
