"""Manual grants: tokens given by hand (a promotion, a goodwill gesture)."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from ..exceptions import InvalidArgument
from ..models import CreditLot, LotCategory, OfferGroup
from .common import acting_user, holder_pk, positive_int, resolve_group
from .ledger import add_lot, lock_account


def grant(
    holder: Any,
    offer_group: OfferGroup | str,
    tokens: int,
    *,
    expires: datetime | None = None,
    category: str = LotCategory.PROMOTIONAL,
    reason: str = "",
    priority: int = 50,
    by: Any = None,
) -> CreditLot:
    """Grant tokens by hand, with a reason in the ledger.

    ``by``: the user who granted them, recorded in the grant entry's metadata.
    """
    tokens = positive_int(tokens, "tokens")
    if category not in LotCategory.values:
        raise InvalidArgument(
            gettext("category must be one of %(categories)s.")
            % {"categories": ", ".join(LotCategory.values)},
            field="category",
        )
    now = timezone.now()
    if expires is not None and expires <= now:
        raise InvalidArgument(gettext("expires must be in the future."), field="expires")
    uid = holder_pk(holder)
    group = resolve_group(offer_group)
    with transaction.atomic():
        account = lock_account(uid, group)
        return add_lot(
            account,
            tokens=tokens,
            starts=now,
            expires=expires,
            category=category,
            now=now,
            reason=reason,
            priority=priority,
            metadata=acting_user(by),
        )
