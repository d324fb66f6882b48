"""Reservations by holds, as consumption, refunds and the expiry sweep must respect them.

Every function here runs with the account already locked.
"""

from django.db.models import F

from ..models import CreditLot, Hold, HoldLine, HoldStatus


def release_expired_holds(account, now) -> int:
    """Release the account's holds past their ``expires_at`` (the account is locked)."""
    expired = list(
        Hold.objects.filter(account=account, status=HoldStatus.ACTIVE, expires_at__lte=now)
    )
    for hold in expired:
        free_lines(hold)
        hold.status = HoldStatus.EXPIRED
        hold.settled_at = now
        hold.save(update_fields=["status", "settled_at"])
    return len(expired)


def free_lines(hold):
    for line in hold.lines.filter(count__gt=0):
        CreditLot.objects.filter(pk=line.lot_id).update(held=F("held") - line.count)


def drop_held_tokens(lot, amount):
    """``amount`` held tokens of ``lot`` are gone (expired, revoked): shrink its holds,
    the most recent first. Call with the account locked; saves the lines, not the lot."""
    left = amount
    for line in HoldLine.objects.filter(
        lot=lot, hold__status=HoldStatus.ACTIVE, count__gt=0
    ).order_by("-id"):
        if not left:
            break
        take = min(left, line.count)
        line.count -= take
        left -= take
        line.save(update_fields=["count"])
    lot.held -= amount - left
