"""Reading the catalog: which offers a user sees, and whether a user is subscribed."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Value
from django.utils import timezone

from .. import money
from ..models import BundleItem, Offer, Order, OrderStatus
from .common import holder_pk, logger


def current_orders_q(now: datetime) -> Q:
    """Orders that are paid and whose period has not ended (by time, not by sweep)."""
    return Q(status__in=OrderStatus.active()) & (Q(expires__isnull=True) | Q(expires__gt=now))


def _holder_or_none(holder):
    if holder is None or getattr(holder, "is_anonymous", False):
        return None
    return holder_pk(holder)


def offers_queryset() -> QuerySet:
    """Active offers with everything an offer card shows, in a fixed number of queries."""
    return (
        Offer.objects.filter(is_active=True)
        .select_related("offer_group")
        .prefetch_related(
            "tags",
            "prices",
            Prefetch(
                "bundle_items",
                queryset=BundleItem.objects.select_related(
                    "offer", "offer_group", "offer__offer_group"
                ),
            ),
        )
    )


def load_offers(
    holder: Any = None, env_tags: Iterable[str] | None = None, *, currency: str | None = None
) -> list[Offer]:
    """The offers ``user`` may buy, as DESIGN §3 "Offer loading" says.

    Regular offers (no ``unlocked_by``) plus the offers unlocked by a group in which the user
    has a paid, unexpired order, all carrying every one of ``env_tags``; for each
    ``overriding_key`` the heaviest unlocked offer replaces the regular offers with that key.
    With ``currency``, only the offers that have a price in it (``Offer.price_in``) are kept:
    an offer is never shown at a converted price. An unknown currency raises
    ``InvalidArgument(field="currency")``.
    """
    code = None
    if currency is not None:
        code = str(currency).strip().lower()
        money.currency_decimals(code)
    tags = sorted({str(t) for t in (env_tags or []) if str(t)})
    uid = _holder_or_none(holder)

    has_unlockers = Exists(Offer.unlocked_by.through.objects.filter(offer_id=OuterRef("pk")))
    wanted = Q(has_unlockers=False)
    if uid is not None:
        now = timezone.now()
        owned_groups = Order.objects.filter(current_orders_q(now), holder_id=uid).values(
            "offer_group_id"
        )
        unlocked = Exists(
            Offer.unlocked_by.through.objects.filter(
                offer_id=OuterRef("pk"), offergroup_id__in=owned_groups
            )
        )
        wanted |= Q(is_unlocked=True)
    else:
        unlocked = Value(False)
    if tags:
        # The page's tags select unlocked offers too: a VIP talk is not a monthly plan.
        tagged = (
            Offer.objects.filter(tags__name__in=tags)
            .values("pk")
            .annotate(n=Count("tags", distinct=True))
            .filter(n=len(tags))
            .values("pk")
        )
        wanted &= Q(pk__in=tagged)
    offers = list(
        offers_queryset().annotate(has_unlockers=has_unlockers, is_unlocked=unlocked).filter(wanted)
    )
    merged = _merge(offers)
    if code is not None:
        # After the merge: an unlocked offer replaces its twin even if only the twin has a
        # price in this currency (the buyer sees what they would see in any currency).
        merged = [offer for offer in merged if offer.price_in(code) is not None]
    return merged


def _merge(offers):
    regular = [o for o in offers if not o.has_unlockers]
    unlocked = [o for o in offers if o.has_unlockers]
    best = {}
    free_unlocked = []
    for offer in unlocked:
        key = offer.overriding_key
        if not key:
            free_unlocked.append(offer)
            continue
        current = best.get(key)
        if current is None or offer.weight > current.weight:
            best[key] = offer
        elif offer.weight == current.weight:
            first, second = sorted((current, offer), key=lambda o: o.pk)
            logger.warning(
                "Offers %r (id %s) and %r (id %s) override key %r with the same weight %s; "
                "choosing the lower id.",
                first.name,
                first.pk,
                second.name,
                second.pk,
                key,
                offer.weight,
            )
            best[key] = first
    result = []
    placed = set()
    for offer in regular:
        replacement = best.get(offer.overriding_key) if offer.overriding_key else None
        if replacement is None:
            result.append(offer)
        elif replacement.pk not in placed:
            result.append(replacement)
            placed.add(replacement.pk)
    for offer in best.values():
        if offer.pk not in placed:
            result.append(offer)
    result.extend(free_unlocked)
    return result


def is_user_subscribed(holder: Any, offer: Offer | int) -> Order | None:
    """The user's current paid order for ``offer`` (the one ending last), or ``None``."""
    offer_id = offer.pk if isinstance(offer, Offer) else offer
    return (
        Order.objects.filter(
            current_orders_q(timezone.now()), holder_id=holder_pk(holder), offer_id=offer_id
        )
        .order_by(F("expires").desc(nulls_first=True), "-id")
        .first()
    )
