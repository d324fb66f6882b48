"""Reservations by holds, as consumption, refunds and the expiry sweep must respect them.

Every function here runs with the account already locked.
"""

from datetime import datetime

from django.db.models import F

from ..models import CreditAccount, CreditLot, Hold, HoldLine, HoldStatus
from .allocation import allocate


def release_expired_holds(account: CreditAccount, now: datetime) -> int:
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


def free_lines(hold: Hold) -> None:
    """Give the tokens a hold reserves back to their lots."""
    for line in hold.lines.filter(count__gt=0):
        CreditLot.objects.filter(pk=line.lot_id).update(held=F("held") - line.count)


def drop_held_tokens(lot: CreditLot, amount: int) -> None:
    """``amount`` held tokens of ``lot`` are gone (expired, revoked): shrink its holds,
    the most recent first. Saves the lines, not the lot."""
    lines = HoldLine.objects.filter(lot=lot, hold__status=HoldStatus.ACTIVE, count__gt=0).order_by(
        "-id"
    )
    takes, left = allocate(lines, amount, capacity=lambda line: line.count)
    for line, take in takes:
        line.count -= take
        line.save(update_fields=["count"])
    lot.held -= amount - left
