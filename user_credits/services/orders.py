"""Orders: creation with a snapshot of the offer, payment and failure."""

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext

from .. import money, signals
from ..exceptions import InvalidArgument, InvalidOrder, InvalidTransition, PaymentMismatch
from ..holders import holder_is_user
from ..models import (
    AutoRecharge,
    Offer,
    Order,
    OrderEvent,
    OrderStatus,
)
from .catalog import current_orders_q
from .common import acting_user, holder_pk, member_pk, send_on_commit
from .fulfilment import grant_order
from .recharge import order_settled

if TYPE_CHECKING:
    from ..payments.base import PaymentStart

# --- creation ----------------------------------------------------------------------------


def offer_snapshot(offer: Offer) -> dict:
    """The fields an order copies from its offer at creation (prices apart: they depend on
    the currency and the quantity)."""
    return {
        "offer": offer,
        "name": offer.name,
        "offer_group_id": offer.offer_group_id,
        "cycle": offer.cycle,
        "custom_cycle": offer.custom_cycle,
        "append_date": offer.append_date,
        "token_count": offer.token_count,
        "bundle_items": snapshot_items(offer),
    }


def check_quantity(offer: Offer, quantity: Any) -> None:
    """``quantity`` is a positive integer within the offer's limit, else ``InvalidOrder``."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidOrder(
            gettext("quantity must be a positive integer, got %(value)r.") % {"value": quantity},
            field="quantity",
        )
    if offer.quantity_limit is not None and quantity > offer.quantity_limit:
        raise InvalidOrder(
            gettext("quantity %(quantity)s is over the limit of %(limit)s for %(offer)r.")
            % {"quantity": quantity, "limit": offer.quantity_limit, "offer": offer.name},
            field="quantity",
        )


def resolve_offer(offer) -> Offer:
    if not isinstance(offer, Offer):
        try:
            offer = Offer.objects.select_related("offer_group").get(pk=offer)
        except (Offer.DoesNotExist, ValueError, TypeError):
            raise InvalidOrder(
                gettext("Unknown offer %(offer)r.") % {"offer": offer}, field="offer"
            ) from None
    if not offer.is_active:
        raise InvalidOrder(
            gettext("The offer %(offer)r is not for sale.") % {"offer": offer.name}, field="offer"
        )
    return offer


def _check_unlocked(uid, offer, now):
    unlockers = Offer.unlocked_by.through.objects.filter(offer_id=offer.pk)
    if not unlockers.exists():
        return
    owned = Order.objects.filter(
        current_orders_q(now),
        holder_id=uid,
        offer_group_id__in=unlockers.values("offergroup_id"),
    )
    if not owned.exists():
        raise InvalidOrder(
            gettext("The offer %(offer)r is not unlocked for this user.") % {"offer": offer.name},
            field="offer",
        )


def snapshot_items(offer) -> list[dict]:
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


def order_price(offer, currency, quantity) -> tuple[str, Decimal, Decimal]:
    """(currency, unit price, total) of an order, exact at the currency's decimals."""
    code = offer.currency if currency is None else str(currency).strip().lower()
    unit_price = offer.price_in(code)
    if unit_price is None:
        sold_in = ", ".join(
            c.upper() for c in [offer.currency, *offer.prices.values_list("currency", flat=True)]
        )
        raise InvalidOrder(
            gettext("%(offer)r has no price in %(currency)s (sold in %(sold_in)s).")
            % {"offer": offer.name, "currency": code.upper(), "sold_in": sold_in},
            field="currency",
        )
    try:
        unit_price = money.validate_amount(unit_price, code, "price")
    except InvalidArgument as exc:
        raise InvalidOrder(
            gettext("%(offer)r: %(error)s") % {"offer": offer.name, "error": exc}, field="price"
        ) from None
    total = money.validate_amount(unit_price * quantity, code, "total")
    column = Order._meta.get_field("total")
    if total.adjusted() >= column.max_digits - column.decimal_places:
        raise InvalidOrder(
            gettext("quantity %(quantity)s makes a total too large to store.")
            % {"quantity": quantity},
            field="quantity",
        )
    return code, unit_price, total


def create_order(
    holder: Any,
    offer: Offer | int,
    *,
    quantity: int = 1,
    currency: str | None = None,
    starts: datetime | None = None,
    placed_by: Any = None,
) -> Order:
    """Create a pending order for ``offer`` with a snapshot of it; a free order is paid at once.

    ``currency`` (default: the offer's) takes the offer's price in that currency, its own or an
    ``OfferPrice``; there is no conversion. Raises ``InvalidOrder`` (and writes nothing) for a
    bad quantity, a currency the offer has no price in, a price with more decimals than its
    currency has, a start in the past, or an offer that is inactive or not unlocked for the user.

    ``placed_by``: the user who placed the order for the holder (default: the holder, when
    holders are users).
    """
    uid = holder_pk(holder)
    placed_by_id = member_pk(placed_by) if placed_by is not None else None
    if placed_by_id is None and holder_is_user():
        placed_by_id = uid
    offer = resolve_offer(offer)
    check_quantity(offer, quantity)
    currency, unit_price, total = order_price(offer, currency, quantity)
    now = timezone.now()
    if starts is not None:
        if timezone.is_naive(starts):
            raise InvalidOrder(gettext("starts must be an aware datetime."), field="starts")
        if starts < now:
            raise InvalidOrder(gettext("starts cannot be in the past."), field="starts")
    _check_unlocked(uid, offer, now)
    with transaction.atomic():
        order = Order.objects.create(
            holder_id=uid,
            placed_by_id=placed_by_id,
            status=OrderStatus.PENDING,
            **offer_snapshot(offer),
            unit_price=unit_price,
            quantity=quantity,
            total=total,
            currency=currency,
            starts=starts,
        )
        OrderEvent.objects.create(order=order, status=OrderStatus.PENDING, message="Order created.")
        if order.total == 0:
            order = mark_paid(order, message="Free order.")
    return order


# --- payment -----------------------------------------------------------------------------


def start_payment(
    order: Order | int, *, request: Any = None, save_payment_method: bool = False
) -> "PaymentStart":
    """Start paying an unpaid order through the configured payment provider.

    An order that cannot be paid any more (paid, refunded, expired) raises
    ``InvalidTransition``. The provider records the attempt in the order's history.
    ``save_payment_method``: keep the buyer's payment method for off-session payments
    (auto-recharge; Stripe: ``setup_future_usage=off_session``).
    """
    # The provider is configured by the site; providers call back into the services.
    from ..payments import get_provider

    pk = order.pk if isinstance(order, Order) else order
    order = Order.objects.select_related("offer_group").get(pk=pk)
    if order.status not in OrderStatus.payable():
        raise InvalidTransition(
            gettext("Order #%(order)s is %(status)s; it cannot be paid.")
            % {"order": order.pk, "status": order.status},
            field="order",
        )
    if save_payment_method:
        return get_provider().start_payment(order, request=request, save_payment_method=True)
    return get_provider().start_payment(order, request=request)


def lock_order(order) -> Order:
    pk = order.pk if isinstance(order, Order) else order
    # Lock the order row only, not the offer group joined to it. ``recharging``: whether an
    # auto-recharge waits for this order (read here, so other orders pay no query for it).
    return (
        Order.objects.select_for_update(of=("self",))
        .select_related("offer_group")
        .annotate(recharging=Exists(AutoRecharge.objects.filter(pending_order=OuterRef("pk"))))
        .get(pk=pk)
    )


def parse_money(value, name, currency=None):
    """``value`` as an amount (exact in ``currency`` when given); ``PaymentMismatch`` naming
    ``name`` if it is not one."""
    try:
        if currency is None:
            return money.parse_amount(value, name)
        return money.validate_amount(value, currency, name)
    except InvalidArgument as exc:
        raise PaymentMismatch(str(exc), field=exc.field) from None


def mark_paid(
    order: Order | int,
    *,
    amount: Decimal | str | None = None,
    currency: str | None = None,
    reference: str = "",
    message: str = "",
    payload: dict | None = None,
    by: Any = None,
) -> Order:
    """Record the payment of ``order`` and grant its tokens, exactly once.

    Calling it again on a paid order grants nothing. An ``amount`` or ``currency`` that differs
    from the order's makes it ``inconsistent`` (with a history entry) and grants nothing; an
    ``amount`` with more decimals than its currency has raises ``PaymentMismatch``.
    ``by``: the user who validated it by hand, recorded in the history.
    """
    with transaction.atomic():
        order = lock_order(order)
        if order.status in OrderStatus.settled():
            return order
        if order.parent_id is not None:
            raise InvalidTransition(
                gettext("A bundle item order is paid through its bundle order.")
            )
        details = {**(payload or {}), **acting_user(by)}
        if reference:
            details["reference"] = reference
        mismatch = []
        if amount is not None:
            # Decimals are checked in the order's currency; another currency is a mismatch.
            same = currency is None or str(currency).lower() == order.currency
            paid = parse_money(amount, "amount", order.currency if same else None)
            details["amount"] = str(paid)
            if paid != order.total:
                mismatch.append(f"amount {paid} instead of {order.total}")
        if currency is not None:
            details["currency"] = str(currency).lower()
            if str(currency).lower() != order.currency:
                mismatch.append(f"currency {str(currency).lower()} instead of {order.currency}")
        if mismatch:
            order_settled(order, paid=False, reason="; ".join(mismatch))
            return set_status(
                order,
                OrderStatus.INCONSISTENT,
                message=f"Payment does not match the order: {'; '.join(mismatch)}.",
                payload=details,
                signal=signals.order_failed,
                reference=reference,
            )
        order_settled(order, paid=True)
        grant_order(order)
        return set_status(
            order,
            OrderStatus.PAID,
            message=message or "Paid.",
            payload=details,
            signal=signals.order_paid,
            reference=reference,
        )


def set_status(order, status, *, message, payload, signal=None, reference=""):
    order.status = status
    if reference:
        order.payment_reference = reference
    order.save()
    OrderEvent.objects.create(order=order, status=status, message=message, payload=payload)
    if signal is not None:
        send_on_commit(signal, order=order)
    return order


def mark_failed(
    order: Order | int,
    *,
    status: str = OrderStatus.REFUSED,
    message: str = "",
    payload: dict | None = None,
    by: Any = None,
) -> Order:
    """Record a refused or failed payment. A paid order stays paid (events arrive out of order).

    ``by``: the user who marked it by hand, recorded in the history.
    """
    if status not in (OrderStatus.REFUSED, OrderStatus.ERROR):
        raise InvalidTransition(
            gettext("mark_failed sets 'refused' or 'error', not %(status)r.") % {"status": status},
            field="status",
        )
    with transaction.atomic():
        order = lock_order(order)
        if order.status in OrderStatus.settled() or order.status == status:
            return order
        order_settled(order, paid=False, reason=message or "Payment failed.")
        return set_status(
            order,
            status,
            message=message or "Payment failed.",
            payload={**(payload or {}), **acting_user(by)},
            signal=signals.order_failed,
        )


def record_payment_event(
    order: Order | int, *, message: str, payload: dict | None = None, reference: str = ""
) -> OrderEvent:
    """Add a line to the order's history (a payment started, a notification ignored).

    ``reference`` becomes the order's payment reference while it is unpaid: a new payment
    attempt replaces the previous one.
    """
    with transaction.atomic():
        order = lock_order(order)
        if reference and order.status in OrderStatus.payable():
            order.payment_reference = reference
            order.save(update_fields=["payment_reference", "updated_at"])
        return OrderEvent.objects.create(
            order=order, status=order.status, message=message, payload=payload or {}
        )
