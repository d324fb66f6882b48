"""Refunds: money back to the buyer, and the matching share of the order's tokens revoked."""

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext

from .. import money, signals
from ..exceptions import InvalidTransition, PaymentMismatch
from ..models import CreditLot, EntryKind, LedgerEntry, LotStatus, Order, OrderStatus
from .common import acting_user, send_on_commit
from .ledger import LedgerWriter, lock_accounts, save_writers
from .orders import lock_order, parse_money, set_status
from .recharge import recharge_accounts_if_low
from .reservations import drop_held_tokens


def refund(
    order: Order | int,
    *,
    amount: Decimal | str | None = None,
    reference: str = "",
    payload: dict | None = None,
    total_refunded: Decimal | str | None = None,
    by: Any = None,
) -> Order:
    """Refund ``amount`` of a paid order (default: all that is left) and revoke its tokens.

    A full refund revokes every remaining token (``refunded``); a partial one revokes the
    refunded share of each lot, rounded down and at most what is left (``partial``). A
    ``reference`` already seen (a provider's refund id) makes the call a no-op.
    ``total_refunded`` (instead of ``amount``) is the provider's cumulative refunded amount:
    only what exceeds the amount already refunded is refunded, so notifications can be
    replayed and reordered. An amount with more decimals than the order's currency has raises
    ``PaymentMismatch`` naming it. ``by``: the user who refunded by hand, kept in the history.
    """
    with transaction.atomic():
        order = lock_order(order)
        if reference and order.events.filter(payload__refund_reference=reference).exists():
            return order
        if total_refunded is not None:
            if amount is not None:
                raise PaymentMismatch(gettext("Give amount or total_refunded, not both."))
            amount = (
                parse_money(total_refunded, "total_refunded", order.currency)
                - order.amount_refunded
            )
            if amount <= 0 and order.status in OrderStatus.settled():
                return order
        amount = _refundable_amount(order, amount)
        refunded = money.quantize(order.amount_refunded + amount, order.currency)
        full = refunded == order.total
        revoked = _revoke(order, refunded, full)
        order.amount_refunded = refunded
        if full:
            status = OrderStatus.REFUNDED
            order.children.update(status=OrderStatus.REFUNDED)
        else:  # an expired order stays expired; a paid one is now partly refunded
            status = (
                OrderStatus.EXPIRED if order.status == OrderStatus.EXPIRED else OrderStatus.PARTIAL
            )
        details = {**(payload or {}), **acting_user(by), "amount": str(amount), "revoked": revoked}
        if reference:
            details["refund_reference"] = reference
        set_status(
            order,
            status,
            message=f"Refunded {amount} {order.currency.upper()}; {revoked} token(s) revoked.",
            payload=details,
        )
        send_on_commit(signals.order_refunded, order=order, amount=amount, revoked=revoked)
        return order


def _refundable_amount(order: Order, amount) -> Decimal:
    """``amount`` (default: all that is left) checked against what the order can refund, at
    the currency's decimals (exactly: the database never rounds)."""
    if order.parent_id is not None:
        raise InvalidTransition(gettext("Refund the bundle order, not one of its items."))
    if order.status not in (OrderStatus.PAID, OrderStatus.PARTIAL, OrderStatus.EXPIRED):
        raise InvalidTransition(
            gettext("Order #%(order)s is %(status)s; only a paid order can be refunded.")
            % {"order": order.pk, "status": order.status}
        )
    if order.total == 0:
        raise InvalidTransition(gettext("A free order cannot be refunded."))
    refundable = order.total - order.amount_refunded
    amount = refundable if amount is None else parse_money(amount, "amount", order.currency)
    if amount <= 0 or amount > refundable:
        raise PaymentMismatch(
            gettext("Refund amount %(amount)s is out of range: %(left)s is left to refund.")
            % {"amount": amount, "left": money.quantize(refundable, order.currency)},
            field="amount",
        )
    return money.quantize(amount, order.currency)


def _revoke(order, refunded, full) -> int:
    order_ids = [order.pk, *order.children.values_list("pk", flat=True)]
    lots = CreditLot.objects.filter(order_id__in=order_ids).order_by("id")
    groups = {lot.account.offer_group for lot in lots.select_related("account__offer_group")}
    if not groups:
        return 0
    now = timezone.now()
    writers = {
        account.pk: LedgerWriter(account, now)
        for account in lock_accounts(order.holder_id, groups).values()
    }
    already = dict(
        LedgerEntry.objects.filter(lot__order_id__in=order_ids, kind=EntryKind.REVOKE)
        .values("lot")
        .annotate(total=Sum("amount"))
        .values_list("lot", "total")
    )
    revoked = 0
    # Read the lots again now that their accounts are locked.
    for lot in lots.filter(status=LotStatus.ACTIVE):
        if full:
            take = lot.remaining
            lot.status = LotStatus.REVOKED
        else:
            share = int(lot.granted * refunded // order.total)  # rounded down
            take = min(max(share + already.get(lot.pk, 0), 0), lot.remaining)
        if take > lot.remaining - lot.held:
            drop_held_tokens(lot, take - (lot.remaining - lot.held))
        if take:
            lot.remaining -= take
            revoked += take
            writers[lot.account_id].add(
                EntryKind.REVOKE, -take, lot_id=lot.pk, metadata={"order": order.pk}
            )
        lot.save(update_fields=["remaining", "status", "held"])
    save_writers(writers.values())
    recharge_accounts_if_low(writer.account for writer in writers.values())
    return revoked
