"""Recurring plans: subscriptions whose every paid period is an order with its own lot.

A subscription is created ``incomplete`` (a free plan is ``active`` at once with its first
period). Each renewal (``renew_subscription``: a provider's invoice paid, or the expiry sweep
for a free plan) is a paid ``Order`` of the subscription, granted exactly once per
``reference`` (the provider's invoice id) under the subscription's row lock. Its lot lives from
the period start to the period end + ``RENEWAL_GRACE`` seconds.

Rollover (per offer): at a renewal, the previous period's lot, if still alive, moves its unused
tokens (all, or up to ``rollover_cap``; held tokens stay) to the new lot: an entry of kind
``rollover`` out of the old lot (negative) and one into the new lot (positive), so the balance
does not move. What is left in the old lot expires with it. The new lot's ``granted`` counts
the period's tokens plus those rolled into it; a refund of the period revokes from that lot.

Free recurring plans are renewed by the expiry sweep (``renew_due_subscriptions``): the current
period only. Periods that passed while the sweep did not run grant nothing (a free allowance
is for using now, not for banking by not running a cron).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Min, Q
from django.utils import timezone
from django.utils.translation import gettext

from .. import signals
from ..conf import app_settings
from ..exceptions import InvalidArgument, InvalidOrder, InvalidTransition
from ..holders import holder_is_user
from ..models import (
    CreditLot,
    EntryKind,
    LotCategory,
    LotStatus,
    Offer,
    Order,
    OrderEvent,
    OrderStatus,
    Rollover,
    Subscription,
    SubscriptionStatus,
)
from .common import holder_pk, member_pk, send_on_commit
from .cycles import cycle_end
from .ledger import LedgerWriter, announce_grant, lock_account, save_lots
from .orders import (
    check_quantity,
    offer_snapshot,
    order_price,
    parse_money,
    resolve_offer,
    set_status,
)

# --- subscribing -------------------------------------------------------------------------


def subscribe(
    holder: Any,
    offer: Offer | int,
    *,
    quantity: int = 1,
    member: Any = None,
    request: Any = None,
) -> Subscription:
    """Subscribe ``holder`` to a recurring offer.

    A free plan is ``active`` at once with its first period granted; a paid plan is
    ``incomplete`` and its first payment is started through the provider (the provider's start,
    a URL or a client secret, is on ``subscription.payment_start``; ``None`` for manual
    payments). Raises ``InvalidOrder`` naming the field for a one-time or inactive offer
    (``offer``), a live subscription of the holder to the same offer (``offer``) or a bad
    ``quantity``; nothing is written then. ``member``: the user who subscribed for the holder.
    """
    hid = holder_pk(holder)
    offer = resolve_offer(offer)
    if not offer.is_recurring:
        raise InvalidOrder(
            gettext("%(offer)r is sold once, not as a subscription: buy it with an order.")
            % {"offer": offer.name},
            field="offer",
        )
    check_quantity(offer, quantity)
    if cycle_end(timezone.now(), offer.cycle, custom_cycle=offer.custom_cycle) is None:
        raise InvalidOrder(
            gettext("%(offer)r has no cycle: a recurring offer needs one.") % {"offer": offer.name},
            field="offer",
        )
    member_id = None if member is None else member_pk(member)
    order_price(offer, None, quantity)  # a price the currency can hold, or InvalidOrder
    try:
        with transaction.atomic():
            if Subscription.objects.filter(
                holder_id=hid, offer=offer, status__in=SubscriptionStatus.live()
            ).exists():
                raise InvalidOrder(
                    gettext("This holder already subscribes to %(offer)r.") % {"offer": offer.name},
                    field="offer",
                )
            subscription = Subscription.objects.create(
                holder_id=hid,
                # By default the holder placed it when holders are users; else nobody named.
                placed_by_id=member_id if member_id is not None or not holder_is_user() else hid,
                offer=offer,
                quantity=quantity,
            )
    except IntegrityError:  # subscribed meanwhile by a concurrent request
        raise InvalidOrder(
            gettext("This holder already subscribes to %(offer)r.") % {"offer": offer.name},
            field="offer",
        ) from None
    subscription.payment_start = None
    if offer.price == 0:
        now = timezone.now()
        renew_subscription(
            subscription,
            period_start=now,
            period_end=cycle_end(now, offer.cycle, custom_cycle=offer.custom_cycle),
            reference=free_reference(subscription, now),
        )
        subscription.refresh_from_db()
        subscription.payment_start = None
        return subscription
    from ..payments import get_provider

    subscription.payment_start = get_provider().start_subscription(subscription, request=request)
    return subscription


def free_reference(subscription: Subscription, period_start: datetime) -> str:
    """The reference of a free period: one renewal per subscription and period start."""
    return f"free:{subscription.pk}:{int(period_start.timestamp())}"


# --- renewals ----------------------------------------------------------------------------


def lock_subscription(subscription: Subscription | int) -> Subscription:
    pk = subscription.pk if isinstance(subscription, Subscription) else subscription
    try:
        return (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("offer__offer_group")
            .get(pk=pk)
        )
    except (Subscription.DoesNotExist, ValueError, TypeError):
        raise InvalidArgument(
            gettext("Unknown subscription %(subscription)r.") % {"subscription": subscription},
            field="subscription",
        ) from None


def _check_period(period_start, period_end):
    for name, value in (("period_start", period_start), ("period_end", period_end)):
        if not isinstance(value, datetime) or timezone.is_naive(value):
            raise InvalidArgument(
                gettext("%(field)s must be an aware datetime.") % {"field": name}, field=name
            )
    if period_end <= period_start:
        raise InvalidArgument(gettext("period_end must be after period_start."), field="period_end")


def renew_subscription(
    subscription: Subscription | int,
    *,
    period_start: datetime,
    period_end: datetime,
    reference: str,
    amount: Decimal | str | None = None,
    currency: str | None = None,
    payload: dict | None = None,
) -> Order:
    """Record one paid period of ``subscription`` as a paid order and grant its tokens.

    Exactly once per ``reference`` (the provider's invoice id): a replay returns the order
    already made. An ``amount`` or ``currency`` that does not match the plan makes the order
    ``inconsistent`` and grants nothing. The period's lot lives from ``period_start`` to
    ``period_end`` + ``RENEWAL_GRACE``; rollover as in the module's docstring. A canceled
    subscription raises ``InvalidTransition`` (field ``subscription``).
    """
    reference = str(reference or "")
    if not reference:
        raise InvalidArgument(gettext("reference is required (the invoice id)."), field="reference")
    _check_period(period_start, period_end)
    with transaction.atomic():
        sub = lock_subscription(subscription)
        done = Order.objects.filter(subscription=sub, payment_reference=reference).first()
        if done is not None:
            return done
        if sub.status == SubscriptionStatus.CANCELED:
            raise InvalidTransition(
                gettext("Subscription #%(pk)s is canceled; it renews no more.") % {"pk": sub.pk},
                field="subscription",
            )
        offer = sub.offer
        code = offer.currency if currency is None else str(currency).strip().lower()
        priced = offer.price_in(code) is not None
        order_currency, unit_price, total = order_price(
            offer, code if priced else None, sub.quantity
        )
        order = Order.objects.create(
            holder_id=sub.holder_id,
            placed_by_id=sub.placed_by_id,
            subscription=sub,
            status=OrderStatus.PENDING,
            # A period has its own dates: it never chains.
            **{**offer_snapshot(offer), "append_date": False},
            unit_price=unit_price,
            quantity=sub.quantity,
            total=total,
            currency=order_currency,
            starts=period_start,
            expires=period_end,
            payment_reference=reference,
        )
        OrderEvent.objects.create(
            order=order,
            status=OrderStatus.PENDING,
            message=f"Period {period_start:%Y-%m-%d %H:%M} – {period_end:%Y-%m-%d %H:%M} of "
            f"subscription #{sub.pk}.",
        )
        details = {**(payload or {}), "reference": reference}
        mismatch = []
        if amount is not None:
            same = code == order_currency
            paid = parse_money(amount, "amount", order_currency if same else None)
            details["amount"] = str(paid)
            if paid != total:
                mismatch.append(f"amount {paid} instead of {total}")
        if currency is not None:
            details["currency"] = code
            if code != order_currency:
                mismatch.append(f"currency {code} instead of {order_currency}")
        if mismatch:
            return set_status(
                order,
                OrderStatus.INCONSISTENT,
                message=f"Payment does not match the plan: {'; '.join(mismatch)}.",
                payload=details,
                signal=signals.order_failed,
            )
        rolled = _grant_period(sub, order)
        if rolled:
            details["rolled_over"] = rolled
        set_status(
            order,
            OrderStatus.PAID,
            message="Period paid." if total else "Free period.",
            payload=details,
            signal=signals.order_paid,
        )
        sub.status = SubscriptionStatus.ACTIVE
        if sub.current_period_end is None or period_end > sub.current_period_end:
            sub.current_period_start, sub.current_period_end = period_start, period_end
        sub.save()
        send_on_commit(signals.subscription_renewed, subscription=sub, order=order)
        return order


def _grant_period(sub: Subscription, order: Order) -> int:
    """The period's lot, with the previous period's unused tokens rolled into it. Returns the
    number of tokens rolled over."""
    tokens = (order.token_count or 0) * order.quantity
    if not tokens:
        return 0
    now = timezone.now()
    offer = sub.offer
    account = lock_account(sub.holder_id, offer.offer_group)
    carry, previous = 0, None
    if offer.rollover != Rollover.NONE:
        # Read under the account lock: consumptions of the old lot are all in.
        previous = (
            CreditLot.objects.filter(
                order__subscription=sub,
                account=account,
                status=LotStatus.ACTIVE,
                remaining__gt=0,
                expires__gt=now,
                starts__lt=order.starts,
            )
            .order_by("-starts", "-id")
            .first()
        )
        if previous is not None:
            carry = previous.remaining - previous.held
            if offer.rollover == Rollover.CAPPED:
                carry = min(carry, offer.rollover_cap or 0)
            carry = max(carry, 0)
    settled = min(account.overdraft, tokens)
    expires = order.expires + timedelta(seconds=app_settings.RENEWAL_GRACE)
    lot = CreditLot.objects.create(
        account=account,
        order=order,
        granted=tokens + carry,
        remaining=tokens + carry - settled,
        starts=order.starts,
        expires=expires,
        category=LotCategory.PAID,
    )
    account.overdraft -= settled
    metadata = {"order": order.pk, "subscription": sub.pk}
    if settled:
        metadata["settled_overdraft"] = settled
    writer = LedgerWriter(account, now)
    writer.add(EntryKind.GRANT, tokens, lot_id=lot.pk, metadata=metadata)
    if carry:
        moved = {"subscription": sub.pk, "from_lot": previous.pk, "to_lot": lot.pk}
        writer.add(EntryKind.ROLLOVER, -carry, lot_id=previous.pk, metadata=moved)
        writer.add(EntryKind.ROLLOVER, carry, lot_id=lot.pk, metadata=moved)
        previous.remaining -= carry
        save_lots([previous])
    writer.save()
    announce_grant(account, lot)
    return carry


def mark_past_due(subscription: Subscription | int, *, message: str = "") -> Subscription:
    """A renewal payment failed: ``past_due`` (no tokens) until a retry pays. A first payment
    that fails leaves the subscription ``incomplete``; a canceled one stays canceled."""
    with transaction.atomic():
        sub = lock_subscription(subscription)
        if sub.status == SubscriptionStatus.ACTIVE:
            sub.status = SubscriptionStatus.PAST_DUE
            sub.save(update_fields=["status", "updated_at"])
            send_on_commit(signals.subscription_past_due, subscription=sub)
        return sub


# --- cancel and resume -------------------------------------------------------------------


def cancel_subscription(
    subscription: Subscription | int, *, at_period_end: bool = True
) -> Subscription:
    """Cancel: at the period end (stays ``active`` with ``cancel_at_period_end``), or at once
    (``canceled``). Either way the current period's tokens stay until they expire. A
    subscription without a current period is canceled at once. The provider is told first: if
    it refuses, nothing is written."""
    sub = _get(subscription)
    if sub.status == SubscriptionStatus.CANCELED:
        raise InvalidTransition(
            gettext("Subscription #%(pk)s is already canceled.") % {"pk": sub.pk},
            field="subscription",
        )
    at_end = bool(at_period_end) and sub.current_period_end is not None
    if sub.status != SubscriptionStatus.ACTIVE:
        at_end = False
    if at_end and sub.cancel_at_period_end:
        return sub
    if sub.reference:
        from ..payments import get_provider

        get_provider().cancel_subscription(sub, at_period_end=at_end)
    return _apply_cancel(sub, at_end=at_end)


def _get(subscription) -> Subscription:
    pk = subscription.pk if isinstance(subscription, Subscription) else subscription
    try:
        return Subscription.objects.select_related("offer").get(pk=pk)
    except (Subscription.DoesNotExist, ValueError, TypeError):
        raise InvalidArgument(
            gettext("Unknown subscription %(subscription)r.") % {"subscription": subscription},
            field="subscription",
        ) from None


def _apply_cancel(subscription, *, at_end: bool) -> Subscription:
    with transaction.atomic():
        sub = lock_subscription(subscription)
        if sub.status == SubscriptionStatus.CANCELED:
            return sub
        if at_end:
            sub.cancel_at_period_end = True
            sub.save(update_fields=["cancel_at_period_end", "updated_at"])
            return sub
        sub.status = SubscriptionStatus.CANCELED
        sub.cancel_at_period_end = False
        sub.canceled_at = timezone.now()
        sub.save(update_fields=["status", "cancel_at_period_end", "canceled_at", "updated_at"])
        send_on_commit(signals.subscription_canceled, subscription=sub)
        return sub


def resume_subscription(subscription: Subscription | int) -> Subscription:
    """Withdraw a cancel at period end: the subscription renews again."""
    sub = _get(subscription)
    if sub.status != SubscriptionStatus.ACTIVE or not sub.cancel_at_period_end:
        raise InvalidTransition(
            gettext(
                "Subscription #%(pk)s is not set to cancel at its period end; nothing to resume."
            )
            % {"pk": sub.pk},
            field="subscription",
        )
    if sub.reference:
        from ..payments import get_provider

        get_provider().resume_subscription(sub)
    with transaction.atomic():
        sub = lock_subscription(sub)
        sub.cancel_at_period_end = False
        sub.save(update_fields=["cancel_at_period_end", "updated_at"])
        return sub


# --- what a provider tells us ------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionNotification:
    """A provider's news about one of our subscriptions (parsed from a webhook)."""

    subscription_id: int
    reference: str = ""  # the provider's subscription id (sub_…)
    status: str = ""  # one of SubscriptionStatus, already mapped
    cancel_at_period_end: bool | None = None
    offer_id: int | None = None  # the offer of the provider's current price, if ours


def subscription_updated(notification: SubscriptionNotification) -> Subscription:
    """The provider's subscription changed: record its id, status and cancel flag. Tokens
    come only from paid invoices (``renew_subscription``); ``active`` is only taken from a
    subscription that has a paid period (an invoice may arrive after its subscription's
    event)."""
    with transaction.atomic():
        sub = lock_subscription(notification.subscription_id)
        if sub.status == SubscriptionStatus.CANCELED:
            return sub
        fields = ["updated_at"]
        if notification.reference and sub.reference != notification.reference:
            sub.reference = notification.reference
            fields.append("reference")
        if notification.cancel_at_period_end is not None:
            sub.cancel_at_period_end = notification.cancel_at_period_end
            fields.append("cancel_at_period_end")
        if notification.offer_id and notification.offer_id != sub.offer_id:
            try:
                sub.offer = _plan_offer(sub, notification.offer_id)
                fields.append("offer")
            except InvalidArgument:
                pass  # a price of another group: not a plan change we can follow
        status = notification.status
        paid = sub.orders.filter(status__in=OrderStatus.settled()).exists()
        if status == SubscriptionStatus.CANCELED:
            sub.save(update_fields=fields)
            return _apply_cancel(sub, at_end=False)
        if status == SubscriptionStatus.PAST_DUE and sub.status == SubscriptionStatus.ACTIVE:
            sub.status = status
            fields.append("status")
            send_on_commit(signals.subscription_past_due, subscription=sub)
        elif status == SubscriptionStatus.ACTIVE and paid and sub.status != status:
            sub.status = status
            fields.append("status")
        sub.save(update_fields=fields)
        return sub


# --- free plans and period ends (the expiry sweep) ---------------------------------------


def renew_due_subscriptions(now: datetime | None = None, *, holder: Any = None) -> int:
    """Subscriptions whose period is over: a cancel at period end becomes ``canceled``; a free
    plan without a provider renews its current period (only the current one). Returns the
    number of periods granted."""
    now = now or timezone.now()
    # Only what the sweep acts on: a provider's subscriptions (``reference``) end and renew
    # through the provider's events, a manual paid plan by hand.
    due = Subscription.objects.filter(
        Q(offer__price=0) | Q(cancel_at_period_end=True),
        status=SubscriptionStatus.ACTIVE,
        current_period_end__lte=now,
        reference="",
    ).select_related("offer")
    if holder is not None:
        due = due.filter(holder_id=holder_pk(holder))
    granted = 0
    for sub in due.order_by("pk").iterator():
        if sub.cancel_at_period_end:
            _apply_cancel(sub, at_end=False)
            continue
        start, end = current_period(sub, now)
        try:
            renew_subscription(
                sub,
                period_start=start,
                period_end=end,
                reference=free_reference(sub, start),
            )
        except InvalidTransition:  # canceled meanwhile
            continue
        granted += 1
    return granted


def current_period(sub: Subscription, now: datetime) -> tuple[datetime, datetime]:
    """The period of ``sub`` that contains ``now``, counted from its first period's start
    (so that Jan 31 monthly stays on month ends: Feb 28, Mar 31…)."""
    anchor = sub.orders.aggregate(first=Min("starts"))["first"] or sub.current_period_start
    offer = sub.offer
    n = 1
    start = anchor
    end = cycle_end(anchor, offer.cycle, custom_cycle=offer.custom_cycle)
    while end <= now:
        n += 1
        start = end
        end = cycle_end(anchor, offer.cycle, quantity=n, custom_cycle=offer.custom_cycle)
    return start, end


@dataclass(frozen=True)
class InvoiceNotification:
    """A provider's invoice of one of our subscriptions, paid or failed, in major units."""

    subscription_id: int
    reference: str  # the invoice id: one renewal per invoice
    period_start: datetime | None = None
    period_end: datetime | None = None
    amount: Decimal | None = None
    currency: str = ""
    subscription_reference: str = ""  # the provider's subscription id (sub_…)
    payload: dict = field(default_factory=dict)
    # A proration invoice (a plan changed mid-period): the offers of its credit and debit
    # lines and the moment the change took effect.
    old_offer_id: int | None = None
    new_offer_id: int | None = None
    since: datetime | None = None


def invoice_paid(notification: InvoiceNotification) -> Order:
    """An invoice of the subscription was paid: renew (once per invoice), and remember the
    provider's subscription id if its own event has not told it yet."""
    if notification.subscription_reference:
        with transaction.atomic():
            sub = lock_subscription(notification.subscription_id)
            if not sub.reference:
                sub.reference = notification.subscription_reference
                sub.save(update_fields=["reference", "updated_at"])
    return renew_subscription(
        notification.subscription_id,
        period_start=notification.period_start,
        period_end=notification.period_end,
        reference=notification.reference,
        amount=notification.amount,
        currency=notification.currency or None,
        payload=notification.payload,
    )


def invoice_prorated(notification: InvoiceNotification) -> Order | None:
    """A proration invoice was paid: an upgrade grants its extra tokens pro rata."""
    return prorate_upgrade(
        notification.subscription_id,
        old_offer=notification.old_offer_id,
        new_offer=notification.new_offer_id,
        since=notification.since,
        reference=notification.reference,
        amount=notification.amount,
        currency=notification.currency,
        payload=notification.payload,
    )


def invoice_failed(notification: InvoiceNotification) -> Subscription:
    """An invoice of the subscription could not be paid: past due (no tokens)."""
    return mark_past_due(notification.subscription_id)


# --- provider prices ---------------------------------------------------------------------


def sync_prices(offers=None) -> dict[int, str]:
    """Create or update the provider's Product and Price of each recurring paid offer (default:
    every active one); idempotent. Returns ``{offer pk: "created" | "updated" | "unchanged"}``.
    Raises ``PaymentProviderError`` if the provider refuses one (those before it are kept)."""
    from ..models import Billing
    from ..payments import get_provider

    if offers is None:
        offers = Offer.objects.filter(billing=Billing.RECURRING, is_active=True, price__gt=0)
    provider = get_provider()
    results = {}
    for offer in offers:
        if not offer.is_recurring or offer.price == 0:
            continue
        results[offer.pk] = provider.sync_price(offer)
    return results


# --- plan changes ------------------------------------------------------------------------


def change_offer(subscription: Subscription | int, offer: Offer | int) -> Subscription:
    """The subscription now renews ``offer`` (the provider changed its price). No tokens move
    now: a downgrade takes effect at the next period, whose invoice grants the new plan; an
    upgrade's extra tokens for the period left come from its proration invoice
    (``prorate_upgrade``). Same offer group and recurring only (``InvalidArgument``, field
    ``offer``)."""
    with transaction.atomic():
        sub = lock_subscription(subscription)
        offer = _plan_offer(sub, offer)
        if sub.offer_id != offer.pk:
            sub.offer = offer
            sub.save(update_fields=["offer", "updated_at"])
        return sub


def _plan_offer(sub: Subscription, offer) -> Offer:
    pk = offer.pk if isinstance(offer, Offer) else offer
    offer = Offer.objects.select_related("offer_group").filter(pk=pk).first()
    if offer is None or not offer.is_recurring or offer.offer_group_id != sub.offer.offer_group_id:
        raise InvalidArgument(
            gettext("Subscription #%(pk)s can only change to a recurring offer of its group.")
            % {"pk": sub.pk},
            field="offer",
        )
    return offer


def prorate_upgrade(
    subscription: Subscription | int,
    *,
    old_offer: Offer | int,
    new_offer: Offer | int,
    since: datetime,
    reference: str,
    amount: Decimal,
    currency: str,
    payload: dict | None = None,
) -> Order | None:
    """An upgrade paid mid-period (the provider's proration invoice ``reference``): grant the
    new plan's extra tokens × quantity pro rata of the current period left after ``since``
    (rounded down), once per ``reference``, as a paid order of ``amount`` whose lot ends with the
    period (+ grace). The subscription renews ``new_offer`` from now on. A downgrade or an
    equal plan grants nothing (``None``)."""
    reference = str(reference or "")
    if not reference:
        raise InvalidArgument(gettext("reference is required (the invoice id)."), field="reference")
    with transaction.atomic():
        sub = lock_subscription(subscription)
        done = Order.objects.filter(subscription=sub, payment_reference=reference).first()
        if done is not None:
            return done
        old = _plan_offer(sub, old_offer)
        new = _plan_offer(sub, new_offer)
        if sub.offer_id != new.pk:
            sub.offer = new
            sub.save(update_fields=["offer", "updated_at"])
        start, end = sub.current_period_start, sub.current_period_end
        if start is None or end is None or not (start <= since < end):
            raise InvalidArgument(
                gettext("since must fall in the subscription's current period."), field="since"
            )
        extra = ((new.token_count or 0) - (old.token_count or 0)) * sub.quantity
        extra = int(extra * (end - since).total_seconds() // (end - start).total_seconds())
        if extra <= 0:
            return None
        code = str(currency).lower()
        paid = parse_money(amount, "amount", code)
        order = Order.objects.create(
            holder_id=sub.holder_id,
            placed_by_id=sub.placed_by_id,
            offer=new,
            subscription=sub,
            status=OrderStatus.PENDING,
            name=f"{new.name} (upgrade from {old.name})",
            offer_group_id=new.offer_group_id,
            cycle=new.cycle,
            custom_cycle=new.custom_cycle,
            token_count=extra,
            unit_price=paid,
            quantity=1,
            total=paid,
            currency=code,
            starts=since,
            expires=end,
            payment_reference=reference,
        )
        account = lock_account(sub.holder_id, new.offer_group)
        now = timezone.now()
        settled = min(account.overdraft, extra)
        lot = CreditLot.objects.create(
            account=account,
            order=order,
            granted=extra,
            remaining=extra - settled,
            starts=since,
            expires=end + timedelta(seconds=app_settings.RENEWAL_GRACE),
            category=LotCategory.PAID,
        )
        account.overdraft -= settled
        metadata = {"order": order.pk, "subscription": sub.pk, "upgrade_from": old.pk}
        if settled:
            metadata["settled_overdraft"] = settled
        writer = LedgerWriter(account, now)
        writer.add(EntryKind.GRANT, extra, lot_id=lot.pk, metadata=metadata)
        writer.save()
        set_status(
            order,
            OrderStatus.PAID,
            message=f"Upgrade from {old.name}: {extra} token(s) for the rest of the period.",
            payload={**(payload or {}), "reference": reference, "amount": str(paid)},
            signal=signals.order_paid,
        )
        announce_grant(account, lot)
        return order
