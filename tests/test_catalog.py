import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from user_credits import services
from user_credits.exceptions import InvalidArgument
from user_credits.models import OfferPrice, OrderStatus

from .factories import buy, make_group, make_holder, make_offer

pytestmark = pytest.mark.django_db


def names(offers):
    return [o.name for o in offers]


def test_anonymous_sees_every_regular_offer(catalog):
    offers = names(services.load_offers(AnonymousUser()))
    assert "Startup Standard Monthly" in offers
    assert "EventTalk" in offers
    assert "VIP EventTalk" not in offers
    assert names(services.load_offers(None)) == offers


def test_env_tags_must_all_match(catalog, holder):
    monthly = names(services.load_offers(holder, ["subscription", "monthly"]))
    assert "Startup Standard Monthly" in monthly
    assert "Startup EarlyBird Monthly" in monthly
    assert "Free" in monthly
    assert not any("Yearly" in n for n in monthly)
    assert "1 Talk" not in monthly
    yearly_eb = names(services.load_offers(holder, ["subscription", "yearly", "EarlyBird"]))
    assert yearly_eb == [
        "Startup EarlyBird Yearly",
        "Business EarlyBird Yearly",
        "ScaleUp EarlyBird Yearly",
    ]
    assert "Free" in names(services.load_offers(holder, ["yearly"]))
    assert services.load_offers(holder, ["no-such-tag"]) == []


def test_vip_offer_unlocked_by_a_paid_early_bird_order_overrides_the_regular_one(catalog, holder):
    before = names(services.load_offers(holder))
    assert "EventTalk" in before and "VIP EventTalk" not in before
    buy(holder, catalog["Startup EarlyBird Monthly"])
    after = names(services.load_offers(holder))
    assert "VIP EventTalk" in after
    assert "EventTalk" not in after
    # The replacement takes the regular offer's place.
    assert after.index("VIP EventTalk") == before.index("EventTalk")
    assert len(after) == len(before)


@pytest.mark.parametrize("plan", ["ScaleUp Standard Yearly", "Business EarlyBird Monthly"])
def test_each_unlocking_group_unlocks(catalog, holder, plan):
    buy(holder, catalog[plan])
    assert "VIP EventTalk" in names(services.load_offers(holder))


def test_env_tags_select_unlocked_offers_too(catalog, holder):
    buy(holder, catalog["Startup EarlyBird Monthly"])
    assert "VIP EventTalk" not in names(services.load_offers(holder, ["subscription", "monthly"]))
    assert names(services.load_offers(holder, ["EventTalk"])) == ["VIP EventTalk"]


def test_standard_business_does_not_unlock(catalog, holder):
    buy(holder, catalog["Business Standard Monthly"])
    assert "VIP EventTalk" not in names(services.load_offers(holder))


def test_unpaid_expired_or_refunded_orders_do_not_unlock(catalog, holder, other_holder):
    services.create_order(holder, catalog["ScaleUp Standard Monthly"])  # pending
    assert "VIP EventTalk" not in names(services.load_offers(holder))
    buy(other_holder, catalog["ScaleUp Standard Monthly"])
    assert "VIP EventTalk" not in names(services.load_offers(holder))  # someone else's order
    order = buy(holder, catalog["ScaleUp Standard Monthly"])
    assert "VIP EventTalk" in names(services.load_offers(holder))
    services.refund(order)
    assert "VIP EventTalk" not in names(services.load_offers(holder))


def test_unlock_ends_with_the_period_even_before_the_sweep(catalog, holder):
    order = buy(holder, catalog["Startup EarlyBird Monthly"])
    assert order.status == OrderStatus.PAID
    order.expires = timezone.now() - timedelta(seconds=1)
    order.save(update_fields=["expires"])
    assert "VIP EventTalk" not in names(services.load_offers(holder))


def test_heaviest_unlocked_offer_wins_and_unmatched_ones_are_added(holder):
    gold = make_group("gold")
    regular = make_offer("Regular", overriding_key="talk")
    light = make_offer("Light", overriding_key="talk", weight=1, unlocked_by=[gold])
    heavy = make_offer("Heavy", overriding_key="talk", weight=5, unlocked_by=[gold])
    extra = make_offer("Extra", unlocked_by=[gold])
    make_offer("Other regular")
    buy(holder, make_offer("Gold pass", group=gold))
    offers = services.load_offers(holder)
    assert heavy in offers and extra in offers
    assert regular not in offers and light not in offers


def test_equal_weight_tie_warns_and_picks_the_lower_id(holder, caplog):
    gold = make_group("gold")
    make_offer("Regular", overriding_key="talk")
    first = make_offer("First", overriding_key="talk", weight=3, unlocked_by=[gold])
    second = make_offer("Second", overriding_key="talk", weight=3, unlocked_by=[gold])
    buy(holder, make_offer("Gold pass", group=gold))
    with caplog.at_level(logging.WARNING, logger="user_credits"):
        offers = services.load_offers(holder)
    assert first in offers and second not in offers
    assert "First" in caplog.text and "Second" in caplog.text


def test_inactive_offers_are_hidden(holder):
    make_offer("Old", is_active=False)
    assert services.load_offers(holder) == []


def test_query_count_does_not_grow_with_offers(django_assert_max_num_queries, holder):
    gold = make_group("gold")
    buy(holder, make_offer("Gold pass", group=gold, tags=["t"]))
    for i in range(30):
        item = make_offer(f"Item {i}", tags=["t", f"x{i}"])
        bundle = make_offer(f"Bundle {i}", tags=["t"], token_count=None)
        bundle.bundle_items.create(offer=item, quantity=2)
        make_offer(f"Unlocked {i}", tags=["t"], unlocked_by=[gold], overriding_key=f"k{i}")
    user_obj = make_holder("counter")
    with django_assert_max_num_queries(4):
        offers = services.load_offers(holder, ["t"])
        shown = {
            offer.name: (
                offer.offer_group.key,
                [t.name for t in offer.tags.all()],
                [(i.offer.name, i.quantity) for i in offer.bundle_items.all()],
            )
            for offer in offers
        }
    assert len(offers) == 91
    assert shown["Bundle 0"][2] == [("Item 0", 2)]
    assert shown["Item 0"][1] == ["t", "x0"]
    with django_assert_max_num_queries(4):
        services.load_offers(user_obj)


def test_is_user_subscribed(catalog, holder):
    offer = catalog["Business Standard Monthly"]
    assert services.is_user_subscribed(holder, offer) is None
    order = services.create_order(holder, offer)
    assert services.is_user_subscribed(holder, offer) is None
    services.mark_paid(order)
    assert services.is_user_subscribed(holder.pk, offer.pk) == order
    assert services.is_user_subscribed(holder, catalog["Business Standard Yearly"]) is None


# --- prices in other currencies -----------------------------------------------------------


def test_currency_keeps_only_offers_priced_in_it(holder):
    euro_native = make_offer("Euro native", currency="eur", price=Decimal("9"))
    dollars = make_offer("Dollars", currency="usd", price=Decimal("10"))
    both = make_offer("Both", currency="usd", price=Decimal("10"))
    OfferPrice.objects.create(offer=both, currency="eur", price=Decimal("9.50"))
    assert names(services.load_offers(holder)) == ["Euro native", "Dollars", "Both"]
    eur = services.load_offers(holder, currency="EUR")
    assert names(eur) == ["Euro native", "Both"]
    assert [o.price_in("eur") for o in eur] == [Decimal("9"), Decimal("9.50")]
    assert names(services.load_offers(holder, currency="usd")) == ["Dollars", "Both"]
    assert names(services.load_offers(holder, currency="jpy")) == []
    assert dollars.price_in("eur") is None and euro_native.price_in("usd") is None


def test_unknown_currency_is_refused_with_its_field(holder):
    make_offer()
    with pytest.raises(InvalidArgument) as caught:
        services.load_offers(holder, currency="zzz")
    assert caught.value.field == "currency"


def test_currency_filter_applies_after_the_unlocked_offer_replaced_its_twin(holder):
    """The VIP offer replaces the regular one whatever the currency: a buyer who unlocked it
    never sees the regular offer again, even when only the regular offer is priced in EUR."""
    regular = make_offer("Regular", overriding_key="talk", tags=["t"])
    OfferPrice.objects.create(offer=regular, currency="eur", price=Decimal("9"))
    make_offer("VIP", overriding_key="talk", weight=5, tags=["t"], unlocked_by=["vipgroup"])
    buy(holder, make_offer(group="vipgroup"))
    assert names(services.load_offers(holder, ["t"])) == ["VIP"]
    assert names(services.load_offers(holder, ["t"], currency="eur")) == []
    assert names(services.load_offers(None, ["t"], currency="eur")) == ["Regular"]
