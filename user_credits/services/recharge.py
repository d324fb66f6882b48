"""Auto-recharge: buy an offer again, off-session, when a balance runs low (DESIGN.md §10).

The enabled recharge's threshold is copied onto its account (``auto_recharge_below``): every
write that lowers a balance holds that row already, so it knows without a query whether the
available balance it leaves is under the threshold. It then schedules ``start_auto_recharge``
after commit (never inside the account lock). That claims the recharge with a locked read
that only matches while nothing is in flight (``pending_order`` empty), creates an ordinary
order and asks the payment provider to charge it off-session. The order then takes the usual
path: ``mark_paid`` grants it; ``mark_paid`` and ``mark_failed`` call ``order_settled`` to clear
the in-flight marker and count failures. While a recharge is in flight the account's copy of
the threshold is cleared (and put back when it settles), so writes under the threshold cost
nothing more meanwhile.
"""

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Sum
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from .. import signals
from ..conf import app_settings
from ..exceptions import InvalidArgument, PaymentProviderError, UserCreditsError
from ..models import (
    AutoRecharge,
    Billing,
    CreditAccount,
    CreditLot,
    LotStatus,
    Offer,
    OfferGroup,
    Order,
)
from .common import holder_pk, positive_int, resolve_group, send_on_commit
from .ledger import lock_account

if TYPE_CHECKING:
    from ..payments.base import PaymentStart

logger = logging.getLogger("user_credits")


# --- enable, change, disable ---------------------------------------------------------------


def enable_auto_recharge(
    holder: Any,
    offer_group: OfferGroup | str,
    offer: Offer | int,
    *,
    threshold: int,
    quantity: int = 1,
) -> AutoRecharge:
    """Buy ``quantity`` × ``offer`` off-session whenever a write leaves the holder's available
    balance in ``offer_group`` under ``threshold`` tokens. One per holder and group: enabling
    again changes it (and forgets past failures).

    Raises ``InvalidArgument`` naming the field, and writes nothing, for a threshold or quantity
    that is not a positive integer, an offer of another group, a free, inactive, recurring or
    token-less offer, or a holder of another model than ``USER_CREDITS_HOLDER_MODEL``.
    """
    uid = holder_pk(holder)
    group = resolve_group(offer_group)
    threshold = positive_int(threshold, "threshold")
    quantity = positive_int(quantity, "quantity")
    offer = _recharge_offer(offer, group, quantity)
    with transaction.atomic():
        # Locks in the order every recharge write takes: the order, the recharge, the account.
        recharge, created = AutoRecharge.objects.select_for_update().get_or_create(
            holder_id=uid,
            offer_group=group,
            defaults={"offer": offer, "threshold": threshold, "quantity": quantity},
        )
        account = lock_account(uid, group)
        if not created:
            recharge.offer, recharge.threshold, recharge.quantity = offer, threshold, quantity
            recharge.enabled, recharge.failures, recharge.last_failure = True, 0, ""
            recharge.save()
        # While a recharge is in flight the account keeps no threshold (see ``_claim``).
        below = threshold if recharge.pending_order_id is None else None
        CreditAccount.objects.filter(pk=account.pk).update(auto_recharge_below=below)
    return recharge


def disable_auto_recharge(holder: Any, offer_group: OfferGroup | str) -> AutoRecharge | None:
    """Stop recharging the holder's account in ``offer_group`` (``None`` if it had none). A
    recharge already in flight still completes (its order is an ordinary order)."""
    uid = holder_pk(holder)
    group = resolve_group(offer_group)
    with transaction.atomic():
        recharge = (
            AutoRecharge.objects.select_for_update()
            .filter(holder_id=uid, offer_group=group)
            .first()
        )
        account = lock_account(uid, group, create=False)
        if account is not None:
            CreditAccount.objects.filter(pk=account.pk).update(auto_recharge_below=None)
        if recharge is not None and recharge.enabled:
            recharge.enabled = False
            recharge.save(update_fields=["enabled", "updated_at"])
    return recharge


def setup_payment_method(holder: Any) -> "PaymentStart":
    """Start saving the holder's payment method for auto-recharge before any purchase (Stripe:
    a SetupIntent; its ``client_secret`` goes to the front end). A provider that saves none
    (manual payments) raises ``InvalidTransition``; one that fails ``PaymentProviderError``."""
    from ..holders import get_holder_model
    from ..payments import get_provider

    uid = holder_pk(holder)
    if not isinstance(holder, get_holder_model()):
        holder = get_holder_model()._default_manager.get(pk=uid)
    return get_provider().start_setup(holder)


def _recharge_offer(offer: Offer | int, group: OfferGroup, quantity: int) -> Offer:
    if not isinstance(offer, Offer):
        try:
            offer = Offer.objects.get(pk=offer)
        except (Offer.DoesNotExist, ValueError, TypeError):
            raise InvalidArgument(
                gettext("Unknown offer %(offer)r.") % {"offer": offer}, field="offer"
            ) from None
    problem = None
    if offer.offer_group_id != group.pk:
        problem = gettext("%(offer)s is not an offer of the group %(group)s.")
    elif not offer.is_active:
        problem = gettext("%(offer)s is not for sale.")
    elif offer.billing != Billing.ONE_TIME:
        problem = gettext("%(offer)s is a recurring plan; it renews by itself.")
    elif not offer.token_count:
        problem = gettext("%(offer)s grants no tokens.")
    elif not offer.price:
        problem = gettext("%(offer)s is free; a free offer is not recharged automatically.")
    if problem:
        raise InvalidArgument(problem % {"offer": offer.name, "group": group.key}, field="offer")
    if offer.quantity_limit is not None and quantity > offer.quantity_limit:
        raise InvalidArgument(
            gettext("quantity %(quantity)s is over the limit of %(limit)s for %(offer)s.")
            % {"quantity": quantity, "limit": offer.quantity_limit, "offer": offer.name},
            field="quantity",
        )
    return offer


# --- the trigger ---------------------------------------------------------------------------


def recharge_if_low(holder_id: Any, group_id: int, available: int, threshold: int | None) -> None:
    """Called by a write, under its account lock, with the available balance it leaves and the
    account's ``auto_recharge_below``: under it, start a recharge once the write commits."""
    if threshold is None or available >= threshold:
        return
    transaction.on_commit(partial(_start_safely, holder_id, group_id))


def recharge_accounts_if_low(accounts) -> None:
    """``recharge_if_low`` for accounts a batch write changed (expiry, refunds), under their
    locks; the held tokens are read only for accounts that have a threshold."""
    watched = [a for a in accounts if a.auto_recharge_below is not None]
    if not watched:
        return
    held = dict(
        CreditLot.objects.filter(account__in=watched, status=LotStatus.ACTIVE)
        .values("account")
        .annotate(held=Sum("held"))
        .values_list("account", "held")
    )
    for account in watched:
        available = account.balance - (held.get(account.pk) or 0)
        recharge_if_low(
            account.holder_id, account.offer_group_id, available, account.auto_recharge_below
        )


def _start_safely(holder_id, group_id) -> None:
    # The write that called for it is committed: a failure here must not reach its caller.
    try:
        if app_settings.AUTO_RECHARGE_RUNNER:
            import_string(app_settings.AUTO_RECHARGE_RUNNER)(holder_id, group_id)
        else:
            start_auto_recharge(holder_id, group_id)
    except Exception:
        logger.exception(
            "Auto-recharge of holder %s in group %s could not start", holder_id, group_id
        )


def start_auto_recharge(holder: Any, offer_group: OfferGroup | int | str) -> Order | None:
    """Start the holder's auto-recharge in ``offer_group`` if it is enabled, none is in flight
    and the available balance is under its threshold; returns the new order, else ``None``.

    The order goes through the configured provider's ``charge_off_session``: Stripe confirms a
    PaymentIntent with the customer's saved payment method; with manual payments the order
    waits for an admin (and no second one starts meanwhile). A decline fails the order.
    """
    from ..payments import get_provider
    from .orders import mark_failed, record_payment_event

    order = _claim(holder_pk(holder), offer_group)
    if order is None:
        return None
    try:
        start = get_provider().charge_off_session(
            order, idempotency_key=f"user-credits-auto-recharge-{order.pk}"
        )
    except PaymentProviderError as exc:
        mark_failed(order, message=str(exc), payload={"reason": getattr(exc, "reason", "")})
        return order
    record_payment_event(
        order,
        message=gettext("Auto-recharge payment started (%(reference)s).")
        % {"reference": start.reference},
        payload={"provider": start.provider, "auto_recharge": True},
        reference=start.reference,
    )
    return order


def _claim(uid, offer_group) -> Order | None:
    """Create the recharge's order and mark it in flight, or ``None`` (disabled, one already in
    flight, or the balance is no longer low: a recharge paid since the write)."""
    from .orders import create_order
    from .selectors import get_balance

    if isinstance(offer_group, int):
        group_q = {"offer_group_id": offer_group}
    else:
        group_q = {"offer_group": resolve_group(offer_group)}
    with transaction.atomic():
        # Only a row with nothing in flight matches; a concurrent claimer waits for the lock,
        # and PostgreSQL then re-checks the condition on the row it committed.
        recharge = (
            AutoRecharge.objects.select_for_update(of=("self",))
            .select_related("offer", "offer_group")
            .filter(holder_id=uid, enabled=True, pending_order__isnull=True, **group_q)
            .first()
        )
        if recharge is None:
            return None
        if get_balance(uid, recharge.offer_group) >= recharge.threshold:
            return None
        try:
            order = create_order(uid, recharge.offer, quantity=recharge.quantity)
        except UserCreditsError as exc:
            _count_failure(recharge, None, str(exc))
            return None
        recharge.pending_order = order
        recharge.save(update_fields=["pending_order", "updated_at"])
        # Writes under the threshold need not try again while this one is in flight.
        _copy_threshold(recharge, None)
    return order


def _copy_threshold(recharge: AutoRecharge, threshold: int | None) -> None:
    """Set the account's copy of the threshold (``None``: writes start nothing). Called with
    the recharge locked: the account is locked after it, as every recharge write does."""
    CreditAccount.objects.filter(
        holder_id=recharge.holder_id, offer_group_id=recharge.offer_group_id
    ).update(auto_recharge_below=threshold)


# --- settlement ------------------------------------------------------------------------------


def order_settled(order: Order, *, paid: bool, reason: str = "") -> None:
    """Called by ``mark_paid`` and ``mark_failed`` under the order's lock, before they lock an
    account: a recharge order that is ``paid`` clears its recharge's in-flight marker and
    failures; one that failed (or whose payment did not match it) counts a failure."""
    if not getattr(order, "recharging", True):
        return
    recharge = AutoRecharge.objects.select_for_update().filter(pending_order=order).first()
    if recharge is None:
        return
    if not paid:
        _count_failure(recharge, order, reason)
        return
    recharge.pending_order, recharge.failures, recharge.last_failure = None, 0, ""
    recharge.save(update_fields=["pending_order", "failures", "last_failure", "updated_at"])
    _copy_threshold(recharge, recharge.threshold if recharge.enabled else None)


def _count_failure(recharge: AutoRecharge, order: Order | None, reason: str) -> None:
    recharge.pending_order = None
    recharge.failures += 1
    recharge.last_failure = reason[:255]
    disabled = recharge.enabled and recharge.failures >= app_settings.AUTO_RECHARGE_MAX_FAILURES
    if disabled:
        recharge.enabled = False
    recharge.save()
    _copy_threshold(recharge, recharge.threshold if recharge.enabled else None)
    send_on_commit(
        signals.auto_recharge_failed,
        auto_recharge=recharge,
        order=order,
        reason=reason,
        failures=recharge.failures,
    )
    if disabled:
        send_on_commit(
            signals.auto_recharge_disabled,
            auto_recharge=recharge,
            reason=gettext("%(count)s failed recharges in a row; the last: %(reason)s")
            % {"count": recharge.failures, "reason": reason},
        )
