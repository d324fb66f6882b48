"""The ledger's pages: a cursor, and a read per account, so that a page costs the same at any
depth of any history."""

from django.db import connections
from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination


class LedgerPagination(CursorPagination):
    """Newest first, in constant time at any depth: the cursor carries the position
    (``created_at``; entries of one instant are told apart by an offset), never a count."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor and cursor.position is not None:
            try:
                valid = parse_datetime(cursor.position) is not None
            except ValueError:  # well formed, out of range (month 13)
                valid = False
            if not valid:
                raise NotFound(self.invalid_cursor_message)  # a forged position is not a 500
        return cursor


class PerAccountQuerySet(QuerySet):
    """Entries of a few accounts in one order: a slice reads each account's first rows from
    its own index, ``(account, created_at, id)``, and merges them (``UNION ALL``).

    One query over all the accounts (``account_id IN (…) ORDER BY created_at``) makes
    PostgreSQL choose between walking the time index and filtering (slow when the user was
    quiet while others wrote) and sorting all of the user's entries (slow for a long history);
    per account, a page reads at most ``accounts × (offset + page size)`` rows, whatever the
    history and whoever else writes. Filters and ordering apply to every account's read.
    """

    accounts: tuple = ()

    def _clone(self):
        clone = super()._clone()
        clone.accounts = self.accounts
        return clone

    def __getitem__(self, k):
        features = connections[self.db].features
        if (
            not isinstance(k, slice)
            or k.stop is None
            or len(self.accounts) < 2
            or not features.supports_slicing_ordering_in_compound
        ):
            return super().__getitem__(k)
        plain = QuerySet(self.model, query=self.query.chain(), using=self._db)
        firsts = [plain.filter(account_id=account)[: k.stop] for account in self.accounts]
        merged = firsts[0].union(*firsts[1:], all=True).order_by(*self.query.order_by)
        return list(merged[k])


def per_account(queryset: QuerySet, accounts) -> PerAccountQuerySet:
    """``queryset`` restricted to ``accounts``, sliced per account."""
    accounts = tuple(accounts)
    restricted = queryset.filter(account_id__in=accounts)
    result = PerAccountQuerySet(restricted.model, query=restricted.query, using=restricted._db)
    result.accounts = accounts
    return result
