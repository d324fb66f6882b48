"""Query budgets of the hot paths. PostgreSQL runs consume as one function call.

Tests run inside a transaction, so each service's ``atomic`` adds a SAVEPOINT and a RELEASE.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from user_credits import services
from user_credits.models import OfferPrice

from .factories import make_group, make_offer

pytestmark = pytest.mark.django_db
SAVEPOINT = 2


def on_postgres(postgres, portable):
    return postgres if connection.vendor == "postgresql" else portable


@pytest.fixture
def group(holder):
    group = make_group("g")
    soon = timezone.now() + timedelta(days=3)
    for i in range(5):
        services.grant(holder, group, 2, expires=soon + timedelta(hours=i))
    return group


def test_consume_one_lot(holder, group, django_assert_max_num_queries):
    # Portable: lock, replay check, lots, lot update, entries, account update, record.
    with django_assert_max_num_queries(SAVEPOINT + on_postgres(1, 7)):
        services.consume(holder, group, 1, idempotency_key="a")
    with django_assert_max_num_queries(SAVEPOINT + on_postgres(1, 5)):
        services.consume(holder, group, 1)


def test_consume_many_lots(holder, group, django_assert_max_num_queries):
    with django_assert_max_num_queries(SAVEPOINT + on_postgres(1, 7)):
        result = services.consume(holder, group, 9, idempotency_key="b")
    assert len(result.entries) == 5


def test_grant(holder, group, django_assert_max_num_queries):
    # lock, lot insert, entry insert, account update
    with django_assert_max_num_queries(SAVEPOINT + 4):
        services.grant(holder, group, 5)


def test_mark_paid(holder, django_assert_max_num_queries):
    order = services.create_order(holder, make_offer(token_count=3, append_date=True))
    services.grant(holder, order.offer_group, 1)  # the account exists, as for a returning buyer
    # order lock, account lock, chaining read, lot, entry, account, order save, event
    with django_assert_max_num_queries(SAVEPOINT + 8):
        services.mark_paid(order)


def test_reads(holder, group, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        services.get_balance(holder, group)
    with django_assert_max_num_queries(2):
        services.get_user_credits(holder)
    with django_assert_max_num_queries(4):
        services.load_offers(holder, ["x"])


@pytest.mark.parametrize("offers", [2, 30])
def test_offers_with_prices_in_several_currencies(holder, offers, django_assert_num_queries):
    """One query per prefetched relation, whatever the number of offers and prices."""
    for i in range(offers):
        offer = make_offer(tags=["shop"])
        OfferPrice.objects.create(offer=offer, currency="eur", price=Decimal(i))
        if i % 2:
            OfferPrice.objects.create(offer=offer, currency="kwd", price=Decimal("1.125"))
    # offers, tags, prices, bundle items
    with django_assert_num_queries(4):
        assert len(services.load_offers(holder, ["shop"], currency="kwd")) == offers // 2
    with django_assert_num_queries(4):
        loaded = services.load_offers(None, ["shop"])
        assert sum(len(o.prices.all()) for o in loaded) == offers + offers // 2
