"""Fulfilment of a paid order: its period, its lots, and its bundle items' child orders."""

from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from ..models import LotCategory, OfferGroup, Order, OrderEvent, OrderStatus
from .cycles import cycle_end
from .ledger import add_lot, lock_accounts


def chained_start(uid, group_id: int, now: datetime, *, exclude: int | None = None) -> datetime:
    """Latest expiry of the user's paid orders in the group if in the future, else ``now``.

    Read under the group's account lock, so concurrent payments chain one after the other.
    """
    latest = (
        Order.objects.filter(
            holder_id=uid, offer_group_id=group_id, status__in=OrderStatus.active(), expires__gt=now
        )
        .exclude(pk=exclude)
        .aggregate(latest=Max("expires"))["latest"]
    )
    return latest or now


def grant_order(order: Order) -> None:
    """Set the order's period and grant its lots (and its bundle items' child orders)."""
    now = timezone.now()
    uid = order.holder_id
    items = order.bundle_items or []
    groups = {order.offer_group_id: order.offer_group}
    item_groups = {item["offer_group"] for item in items} - set(groups)
    if item_groups:
        groups.update((g.pk, g) for g in OfferGroup.objects.filter(pk__in=item_groups))
    accounts = lock_accounts(uid, groups.values())

    starts = order.starts or (
        chained_start(uid, order.offer_group_id, now, exclude=order.pk)
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
            now=now,
            order=order,
        )
    for item in items:
        _grant_bundle_item(order, item, accounts[item["offer_group"]], now)


def _grant_bundle_item(order: Order, item: dict, account, now: datetime) -> None:
    """A bundle item becomes a paid child order with its own lot; an item whose offer chains
    its dates does so in its own group, otherwise it shares the bundle order's period."""
    if item["append_date"]:
        starts = chained_start(order.holder_id, item["offer_group"], now)
        expires = cycle_end(
            starts, item["cycle"], quantity=order.quantity, custom_cycle=item["custom_cycle"]
        )
    else:
        starts, expires = order.starts, order.expires
    quantity = item["quantity"] * order.quantity
    child = Order.objects.create(
        holder_id=order.holder_id,
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
        starts=starts,
        expires=expires,
    )
    OrderEvent.objects.create(
        order=child, status=OrderStatus.PAID, message=f"Granted by bundle order #{order.pk}."
    )
    if item["token_count"]:
        add_lot(
            account,
            tokens=item["token_count"] * quantity,
            starts=starts,
            expires=expires,
            category=LotCategory.PAID,
            now=now,
            order=child,
        )
