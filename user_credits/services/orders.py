"""Orders: creation with a snapshot of the offer, payment, failure and refunds."""

from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone

from .. import signals
from ..exceptions import InvalidOrder, InvalidTransition, PaymentMismatch
from ..models import (
    CreditLot,
    EntryKind,
    LedgerEntry,
    LotCategory,
    LotStatus,
    Offer,
    OfferGroup,
    Order,
    OrderEvent,
    OrderStatus,
)
from .catalog import _current_order_q
from .common import send_on_commit, user_pk
from .credits import add_lot, lock_accounts
from .cycles import cycle_end
from .reservations import drop_held_tokens

# --- creation ----------------------------------------------------------------------------


def _resolve_offer(offer) -> Offer:
    if not isinstance(offer, Offer):
        try:
            offer = Offer.objects.select_related("offer_group").get(pk=offer)
        except (Offer.DoesNotExist, ValueError, TypeError):
            raise InvalidOrder(f"Unknown offer {offer!r}.", field="offer") from None
    if not offer.is_active:
        raise InvalidOrder(f"The offer {offer.name!r} is not for sale.", field="offer")
    return offer


def _check_unlocked(uid, offer, now):
    unlockers = Offer.unlocked_by.through.objects.filter(offer_id=offer.pk)
    if not unlockers.exists():
        return
    owned = Order.objects.filter(
        _current_order_q(now),
        user_id=uid,
        offer_group_id__in=unlockers.values("offergroup_id"),
    )
    if not owned.exists():
        raise InvalidOrder(
            f"The offer {offer.name!r} is not unlocked for this user.", field="offer"
        )


def _snapshot_items(offer) -> list[dict]:
    items = []
    for item in offer.bundle_items.select_related("offer__offer_group", "offer_group"):
        group = item.offer_group or item.offer.offer_group
        cycle = item.cycle or item.offer.cycle
        items.append(
            {
                "offer": item.offer_id,
                "name": item.offer.name,
                "offer_group": group.pk,
                "offer_group_key": group.key,
                "cycle": cycle,
                "custom_cycle": item.custom_cycle if item.cycle else item.offer.custom_cycle,
                "token_count": item.offer.token_count,
                "quantity": item.quantity,
                "append_date": item.offer.append_date,
            }
        )
    return items


def create_order(user, offer, *, quantity=1, currency=None, starts=None) -> Order:
    """Create a pending order for ``offer`` with a snapshot of it; a free order is paid at once.

    Raises ``InvalidOrder`` (and writes nothing) for a bad quantity, a currency other than the
    offer's, a start in the past, or an offer that is inactive or not unlocked for the user.
    """
    uid = user_pk(user)
    offer = _resolve_offer(offer)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidOrder(
            f"quantity must be a positive integer, got {quantity!r}.", field="quantity"
        )
    if offer.quantity_limit is not None and quantity > offer.quantity_limit:
        raise InvalidOrder(
            f"quantity {quantity} is over the limit of {offer.quantity_limit} for {offer.name!r}.",
            field="quantity",
        )
    if currency is not None and str(currency).lower() != offer.currency:
        raise InvalidOrder(
            f"{offer.name!r} is sold in {offer.currency.upper()}, not {str(currency).upper()}.",
            field="currency",
        )
    now = timezone.now()
    if starts is not None:
        if timezone.is_naive(starts):
            raise InvalidOrder("starts must be an aware datetime.", field="starts")
        if starts < now:
            raise InvalidOrder("starts cannot be in the past.", field="starts")
    _check_unlocked(uid, offer, now)
    with transaction.atomic():
        order = Order.objects.create(
            user_id=uid,
            offer=offer,
            status=OrderStatus.PENDING,
            name=offer.name,
            offer_group_id=offer.offer_group_id,
            cycle=offer.cycle,
            custom_cycle=offer.custom_cycle,
            append_date=offer.append_date,
            token_count=offer.token_count,
            unit_price=offer.price,
            quantity=quantity,
            total=offer.price * quantity,
            currency=offer.currency,
            bundle_items=_snapshot_items(offer),
            starts=starts,
        )
        OrderEvent.objects.create(order=order, status=OrderStatus.PENDING, message="Order created.")
        if order.total == 0:
            order = mark_paid(order, message="Free order.")
    return order


# --- payment -----------------------------------------------------------------------------


def _lock_order(order) -> Order:
    pk = order.pk if isinstance(order, Order) else order
    # Lock the order row only, not the offer group joined to it.
    return Order.objects.select_for_update(of=("self",)).select_related("offer_group").get(pk=pk)


def _chained_start(uid, group_id, now, *, exclude=None):
    """Latest expiry of the user's paid orders in the group if in the future, else ``now``.

    Read under the group's account lock, so concurrent payments chain one after the other.
    """
    latest = (
        Order.objects.filter(
            user_id=uid, offer_group_id=group_id, status__in=OrderStatus.active(), expires__gt=now
        )
        .exclude(pk=exclude)
        .aggregate(latest=Max("expires"))["latest"]
    )
    return latest or now


def _money(value, name):
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PaymentMismatch(f"{name} {value!r} is not an amount.") from None


def mark_paid(
    order, *, amount=None, currency=None, reference="", message="", payload=None
) -> Order:
    """Record the payment of ``order`` and grant its tokens, exactly once.

    Calling it again on a paid order grants nothing. An ``amount`` or ``currency`` that differs
    from the order's makes it ``inconsistent`` (with a history entry) and grants nothing.
    """
    with transaction.atomic():
        order = _lock_order(order)
        if order.status in OrderStatus.settled():
            return order
        if order.parent_id is not None:
            raise InvalidTransition("A bundle item order is paid through its bundle order.")
        details = dict(payload or {})
        if reference:
            details["reference"] = reference
        mismatch = []
        if amount is not None:
            paid = _money(amount, "amount")
            details["amount"] = str(paid)
            if paid != order.total:
                mismatch.append(f"amount {paid} instead of {order.total}")
        if currency is not None:
            details["currency"] = str(currency).lower()
            if str(currency).lower() != order.currency:
                mismatch.append(f"currency {str(currency).lower()} instead of {order.currency}")
        if mismatch:
            return _set_status(
                order,
                OrderStatus.INCONSISTENT,
                message=f"Payment does not match the order: {'; '.join(mismatch)}.",
                payload=details,
                signal=signals.order_failed,
                reference=reference,
            )
        _grant_order(order)
        return _set_status(
            order,
            OrderStatus.PAID,
            message=message or "Paid.",
            payload=details,
            signal=signals.order_paid,
            reference=reference,
        )


def _set_status(order, status, *, message, payload, signal=None, reference=""):
    order.status = status
    if reference:
        order.payment_reference = reference
    order.save()
    OrderEvent.objects.create(order=order, status=status, message=message, payload=payload)
    if signal is not None:
        send_on_commit(signal, order=order)
    return order


def _grant_order(order):
    """Set the order's period and grant its lots (and its bundle items' child orders)."""
    now = timezone.now()
    uid = order.user_id
    items = order.bundle_items or []
    groups = {order.offer_group_id: order.offer_group}
    item_groups = {item["offer_group"] for item in items} - set(groups)
    if item_groups:
        groups.update((g.pk, g) for g in OfferGroup.objects.filter(pk__in=item_groups))
    accounts = lock_accounts(uid, groups.values())

    starts = order.starts or (
        _chained_start(uid, order.offer_group_id, now, exclude=order.pk)
        if order.append_date
        else now
    )
    order.starts = starts
    order.expires = cycle_end(
        starts, order.cycle, quantity=order.quantity, custom_cycle=order.custom_cycle
    )
    if order.token_count:
        add_lot(
            accounts[order.offer_group_id],
            tokens=order.token_count * order.quantity,
            starts=order.starts,
            expires=order.expires,
            category=LotCategory.PAID,
            order=order,
        )
    for item in items:
        if item["append_date"]:
            item_starts = _chained_start(uid, item["offer_group"], now)
            item_expires = cycle_end(
                item_starts,
                item["cycle"],
                quantity=order.quantity,
                custom_cycle=item["custom_cycle"],
            )
        else:
            item_starts, item_expires = order.starts, order.expires
        quantity = item["quantity"] * order.quantity
        child = Order.objects.create(
            user_id=uid,
            offer_id=item["offer"],
            parent=order,
            status=OrderStatus.PAID,
            name=item["name"],
            offer_group_id=item["offer_group"],
            cycle=item["cycle"],
            custom_cycle=item["custom_cycle"],
            append_date=item["append_date"],
            token_count=item["token_count"],
            unit_price=0,
            quantity=quantity,
            total=0,
            currency=order.currency,
            starts=item_starts,
            expires=item_expires,
        )
        OrderEvent.objects.create(
            order=child, status=OrderStatus.PAID, message=f"Granted by bundle order #{order.pk}."
        )
        if item["token_count"]:
            add_lot(
                accounts[item["offer_group"]],
                tokens=item["token_count"] * quantity,
                starts=item_starts,
                expires=item_expires,
                category=LotCategory.PAID,
                order=child,
            )


def mark_failed(order, *, status=OrderStatus.REFUSED, message="", payload=None) -> Order:
    """Record a refused or failed payment. A paid order stays paid (events arrive out of order)."""
    if status not in (OrderStatus.REFUSED, OrderStatus.ERROR):
        raise InvalidTransition(f"mark_failed sets 'refused' or 'error', not {status!r}.")
    with transaction.atomic():
        order = _lock_order(order)
        if order.status in OrderStatus.settled() or order.status == status:
            return order
        return _set_status(
            order,
            status,
            message=message or "Payment failed.",
            payload=payload or {},
            signal=signals.order_failed,
        )


def record_payment_event(order, *, message, payload=None, reference="") -> OrderEvent:
    """Add a line to the order's history (a payment started, a notification ignored).

    ``reference`` becomes the order's payment reference while it is unpaid: a new payment
    attempt replaces the previous one.
    """
    with transaction.atomic():
        order = _lock_order(order)
        if reference and order.status in OrderStatus.payable():
            order.payment_reference = reference
            order.save(update_fields=["payment_reference", "updated_at"])
        return OrderEvent.objects.create(
            order=order, status=order.status, message=message, payload=payload or {}
        )


# --- refunds -----------------------------------------------------------------------------


def refund(order, *, amount=None, reference="", payload=None, total_refunded=None) -> Order:
    """Refund ``amount`` of a paid order (default: all that is left) and revoke its tokens.

    A full refund revokes every remaining token (``refunded``); a partial one revokes the
    refunded share of each lot, rounded down and at most what is left (``partial``). A
    ``reference`` already seen (a provider's refund id) makes the call a no-op.
    ``total_refunded`` (instead of ``amount``) is the provider's cumulative refunded amount:
    only what exceeds the amount already refunded is refunded, so notifications can be
    replayed and reordered.
    """
    with transaction.atomic():
        order = _lock_order(order)
        if reference and order.events.filter(payload__refund_reference=reference).exists():
            return order
        if total_refunded is not None:
            if amount is not None:
                raise PaymentMismatch("Give amount or total_refunded, not both.")
            amount = _money(total_refunded, "total_refunded") - order.amount_refunded
            if amount <= 0 and order.status in OrderStatus.settled():
                return order
        if order.parent_id is not None:
            raise InvalidTransition("Refund the bundle order, not one of its items.")
        if order.status not in (OrderStatus.PAID, OrderStatus.PARTIAL, OrderStatus.EXPIRED):
            raise InvalidTransition(
                f"Order #{order.pk} is {order.status}; only a paid order can be refunded."
            )
        if order.total == 0:
            raise InvalidTransition("A free order cannot be refunded.")
        refundable = order.total - order.amount_refunded
        amount = refundable if amount is None else _money(amount, "amount")
        if amount <= 0 or amount > refundable:
            raise PaymentMismatch(
                f"Refund amount {amount} is out of range: {refundable} is left to refund."
            )
        refunded = order.amount_refunded + amount
        full = refunded == order.total
        revoked = _revoke(order, refunded, full)
        order.amount_refunded = refunded
        status = (
            OrderStatus.REFUNDED
            if full
            else (
                OrderStatus.EXPIRED if order.status == OrderStatus.EXPIRED else OrderStatus.PARTIAL
            )
        )
        if full:
            order.children.update(status=OrderStatus.REFUNDED)
        details = {**(payload or {}), "amount": str(amount), "revoked": revoked}
        if reference:
            details["refund_reference"] = reference
        _set_status(
            order,
            status,
            message=f"Refunded {amount} {order.currency.upper()}; {revoked} token(s) revoked.",
            payload=details,
        )
        send_on_commit(signals.order_refunded, order=order, amount=amount, revoked=revoked)
        return order


def _revoke(order, refunded, full) -> int:
    order_ids = [order.pk, *order.children.values_list("pk", flat=True)]
    lots = CreditLot.objects.filter(order_id__in=order_ids).order_by("id")
    groups = {lot.account.offer_group for lot in lots.select_related("account__offer_group")}
    if not groups:
        return 0
    accounts = {a.pk: a for a in lock_accounts(order.user_id, groups).values()}
    already = dict(
        LedgerEntry.objects.filter(lot__order_id__in=order_ids, kind=EntryKind.REVOKE)
        .values("lot")
        .annotate(total=Sum("amount"))
        .values_list("lot", "total")
    )
    revoked = 0
    entries = []
    # Read the lots again now that their accounts are locked.
    for lot in lots.filter(status=LotStatus.ACTIVE):
        account = accounts[lot.account_id]
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
            account.balance -= take
            revoked += take
            entries.append(
                LedgerEntry(
                    account=account,
                    lot=lot,
                    kind=EntryKind.REVOKE,
                    amount=-take,
                    balance_after=account.balance,
                    metadata={"order": order.pk},
                )
            )
        lot.save(update_fields=["remaining", "status", "held"])
    LedgerEntry.objects.bulk_create(entries)
    for account in accounts.values():
        account.save(update_fields=["balance"])
    return revoked
