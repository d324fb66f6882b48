"""Members and spending limits: who may spend a holder's credits, and how much per period.

``consume``, ``hold`` and ``capture`` take ``member=`` (the user acting for the holder). The
member must pass ``CAN_SPEND`` (else ``SpendingNotAllowed``, nothing written); a
``SpendingLimit`` of the member in the group caps what they consume (and hold) per calendar
period. The check is made under the account lock, with the spend: the portable path calls
``check_limit`` below, the PL/pgSQL function does the same with the period starts passed in.
"""

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model, Sum
from django.utils.translation import gettext

from ..exceptions import InvalidArgument, SpendingLimitExceeded, SpendingNotAllowed
from ..holders import can_spend, get_holder_model
from ..models import (
    CreditAccount,
    EntryKind,
    HoldLine,
    HoldStatus,
    LedgerEntry,
    OfferGroup,
    SpendingLimit,
)
from .common import holder_pk, member_pk, resolve_group
from .cycles import LIMIT_PERIODS, period_start

#: Ledger kinds that a member spends (a consumption, and its part on overdraft).
SPENT_KINDS = (EntryKind.CONSUME, EntryKind.OVERDRAFT)


def authorize(member: Any, holder: Any) -> Any:
    """The member's primary key once ``CAN_SPEND(member, holder)`` allowed it; ``None`` for
    no member (a server-side spend)."""
    mid = member_pk(member)
    if mid is None:
        return None
    if not hasattr(member, "pk"):
        member = get_user_model()._default_manager.filter(pk=mid).first()
        if member is None:
            raise InvalidArgument(
                gettext("Unknown member %(member)r.") % {"member": mid}, field="member"
            )
    if not isinstance(holder, Model):  # the hook is given instances
        holder = get_holder_model()._default_manager.filter(pk=holder).first()
    if holder is None or not can_spend(member, holder):
        raise SpendingNotAllowed(
            gettext("%(member)s may not spend these credits.") % {"member": member},
            field="member",
        )
    return mid


def period_starts(now: datetime) -> dict[str, str]:
    """The start of every limit period containing ``now`` (for the PL/pgSQL function)."""
    return {period: period_start(now, period).isoformat() for period in LIMIT_PERIODS}


def check_limit(
    account: CreditAccount, member_id: Any, count: int, now: datetime, *, exclude_hold=None
) -> None:
    """Raise ``SpendingLimitExceeded`` if ``count`` more tokens would take the member over
    their limit in the account's group. Call under the account lock."""
    if member_id is None:
        return
    limit = SpendingLimit.objects.filter(
        holder_id=account.holder_id, member_id=member_id, offer_group_id=account.offer_group_id
    ).first()
    if limit is None:
        return
    spent = -(
        LedgerEntry.objects.filter(
            account=account,
            member_id=member_id,
            kind__in=SPENT_KINDS,
            created_at__gte=period_start(now, limit.period),
        ).aggregate(total=Sum("amount"))["total"]
        or 0
    )
    holds = HoldLine.objects.filter(
        hold__account=account, hold__member_id=member_id, hold__status=HoldStatus.ACTIVE
    )
    if exclude_hold is not None:
        holds = holds.exclude(hold_id=exclude_hold)
    spent += holds.aggregate(total=Sum("count"))["total"] or 0
    if spent + count > limit.tokens:
        raise exceeded(account.offer_group, limit.tokens, spent, count)


def exceeded(group: OfferGroup, limit: int, spent: int, count: int) -> SpendingLimitExceeded:
    return SpendingLimitExceeded(
        gettext(
            "Spending limit in %(group)s: %(requested)s requested, "
            "%(spent)s of %(limit)s spent this period."
        )
        % {"group": group.key, "requested": count, "spent": spent, "limit": limit},
        limit=limit,
        spent=spent,
        requested=count,
    )


def set_spending_limit(
    holder: Any, member: Any, offer_group: OfferGroup | str, tokens: int, *, period="monthly"
) -> SpendingLimit:
    """Cap what ``member`` may spend of the holder's ``offer_group`` per calendar ``period``
    (``daily``, ``weekly``, ``bi-weekly``, ``monthly``, ``trimester``, ``semester``,
    ``yearly``). One limit per holder, member and group: setting it again changes it."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise InvalidArgument(
            gettext("tokens must be a positive integer, got %(value)r.") % {"value": tokens},
            field="tokens",
        )
    if period not in LIMIT_PERIODS:
        raise InvalidArgument(
            gettext("Unknown period %(period)r; one of %(periods)s.")
            % {"period": period, "periods": ", ".join(LIMIT_PERIODS)},
            field="period",
        )
    hid = holder_pk(holder)
    mid = member_pk(member)
    if mid is None:
        raise InvalidArgument(gettext("member is required."), field="member")
    group = resolve_group(offer_group)
    with transaction.atomic():
        limit, _ = SpendingLimit.objects.update_or_create(
            holder_id=hid,
            member_id=mid,
            offer_group=group,
            defaults={"tokens": tokens, "period": period},
        )
    return limit


def remove_spending_limit(holder: Any, member: Any, offer_group: OfferGroup | str) -> bool:
    """Remove the member's limit in the group; whether there was one."""
    hid = holder_pk(holder)
    mid = member_pk(member)
    group = resolve_group(offer_group)
    deleted, _ = SpendingLimit.objects.filter(
        holder_id=hid, member_id=mid, offer_group=group
    ).delete()
    return bool(deleted)
