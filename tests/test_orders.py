from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from user_credits import services
from user_credits.exceptions import InvalidOrder, UserCreditsError
from user_credits.models import Cycle, OfferPrice, Order, OrderStatus

from .factories import make_offer, table_snapshot

pytestmark = pytest.mark.django_db


def test_order_snapshots_the_offer(holder):
    offer = make_offer(
        "Pro",
        price=Decimal("12.50"),
        currency="eur",
        token_count=300,
        cycle=Cycle.CUSTOM,
        custom_cycle=3600,
        append_date=True,
    )
    order = services.create_order(holder, offer, quantity=3)
    assert order.status == OrderStatus.PENDING
    assert (order.name, order.offer_group, order.cycle, order.custom_cycle) == (
        "Pro",
        offer.offer_group,
        Cycle.CUSTOM,
        3600,
    )
    assert (order.token_count, order.unit_price, order.quantity, order.total, order.currency) == (
        300,
        Decimal("12.50"),
        3,
        Decimal("37.50"),
        "eur",
    )
    assert order.append_date is True
    assert order.starts is None and order.expires is None
    assert list(order.events.values_list("status", flat=True)) == ["pending"]
    # Later changes of the offer do not touch the order.
    offer.price = Decimal("99")
    offer.name = "Renamed"
    offer.save()
    order.refresh_from_db()
    assert (order.name, order.total) == ("Pro", Decimal("37.50"))


def test_bundle_items_are_snapshotted(catalog, holder):
    order = services.create_order(holder, catalog["Mobile Max"])
    items = {item["name"]: item for item in order.bundle_items}
    assert set(items) == {"Calls 120 min", "Data 20 GB", "Mobile TV"}
    assert items["Calls 120 min"]["token_count"] == 120
    assert items["Calls 120 min"]["offer_group_key"] == "calls"
    assert items["Calls 120 min"]["quantity"] == 1
    catalog["Calls 120 min"].token_count = 999
    catalog["Calls 120 min"].save()
    order.refresh_from_db()
    assert order.bundle_items[0]["token_count"] == 120


def test_bundle_item_overrides_group_and_cycle(holder):
    bundle = make_offer("Bundle", token_count=None)
    item_offer = make_offer("Item", cycle=Cycle.MONTHLY, token_count=5)
    other = make_offer("Other").offer_group
    bundle.bundle_items.create(offer=item_offer, quantity=4, offer_group=other, cycle=Cycle.WEEKLY)
    (item,) = services.create_order(holder, bundle).bundle_items
    assert (item["offer_group"], item["cycle"], item["quantity"]) == (other.pk, "weekly", 4)


@pytest.mark.parametrize("quantity", [0, -1, 1.5, "2", True, None])
def test_bad_quantity_is_refused(holder, quantity):
    offer = make_offer()
    before = table_snapshot()
    with pytest.raises(InvalidOrder) as exc:
        services.create_order(holder, offer, quantity=quantity)
    assert exc.value.field == "quantity"
    assert table_snapshot() == before


def test_quantity_limit(holder):
    offer = make_offer(quantity_limit=2)
    assert services.create_order(holder, offer, quantity=2).quantity == 2
    before = table_snapshot()
    with pytest.raises(InvalidOrder, match="over the limit of 2"):
        services.create_order(holder, offer, quantity=3)
    assert table_snapshot() == before


def test_currency_must_be_one_the_offer_has_a_price_in(holder):
    offer = make_offer(currency="eur")
    assert services.create_order(holder, offer, currency="EUR").currency == "eur"
    before = table_snapshot()
    with pytest.raises(InvalidOrder, match=r"no price in USD \(sold in EUR\)") as exc:
        services.create_order(holder, offer, currency="usd")
    assert exc.value.field == "currency"
    assert table_snapshot() == before


def test_start_in_the_past_is_refused_and_a_future_start_is_kept(holder):
    offer = make_offer()
    before = table_snapshot()
    with pytest.raises(InvalidOrder, match="past"):
        services.create_order(holder, offer, starts=timezone.now() - timedelta(minutes=1))
    assert table_snapshot() == before
    later = timezone.now() + timedelta(days=10)
    assert services.create_order(holder, offer, starts=later).starts == later


def test_inactive_unknown_and_locked_offers_are_refused(holder, catalog):
    with pytest.raises(InvalidOrder, match="not for sale"):
        services.create_order(holder, make_offer(is_active=False))
    with pytest.raises(InvalidOrder, match="Unknown offer"):
        services.create_order(holder, 999_999)
    with pytest.raises(InvalidOrder, match="not unlocked"):
        services.create_order(holder, catalog["VIP EventTalk"])
    assert Order.objects.count() == 0


def test_errors_share_one_root():
    assert issubclass(InvalidOrder, UserCreditsError) and issubclass(InvalidOrder, ValueError)


def test_free_order_is_paid_at_once(catalog, holder):
    order = services.create_order(holder, catalog["Free"])
    assert order.status == OrderStatus.PAID
    assert services.get_balance(holder, "Free") == 100
    assert list(order.events.values_list("status", flat=True)) == ["pending", "paid"]


def test_user_may_be_given_by_primary_key(holder):
    order = services.create_order(holder.pk, make_offer())
    assert order.holder == holder


# --- prices in several currencies ------------------------------------------------------------


@pytest.fixture
def priced(db):
    """20 USD, also sold at 18.50 EUR and 3000 JPY."""
    offer = make_offer("Multi", price=Decimal("20"), currency="usd", token_count=10)
    OfferPrice.objects.create(offer=offer, currency="eur", price=Decimal("18.50"))
    OfferPrice.objects.create(offer=offer, currency="jpy", price=Decimal("3000"))
    return offer


@pytest.mark.parametrize(
    "currency, unit_price, total",
    [
        (None, Decimal("20.00"), Decimal("40.00")),
        ("usd", Decimal("20.00"), Decimal("40.00")),
        ("EUR", Decimal("18.50"), Decimal("37.00")),
        ("jpy", Decimal("3000"), Decimal("6000")),
    ],
)
def test_order_takes_the_price_of_its_currency_without_conversion(
    holder, priced, currency, unit_price, total
):
    order = services.create_order(holder, priced, quantity=2, currency=currency)
    order.refresh_from_db()
    assert (order.currency, order.unit_price, order.total) == (
        (currency or "usd").lower(),
        unit_price,
        total,
    )


def test_order_in_a_currency_without_a_price_is_refused(holder, priced):
    before = table_snapshot()
    with pytest.raises(InvalidOrder, match=r"no price in GBP \(sold in USD, EUR, JPY\)") as exc:
        services.create_order(holder, priced, currency="gbp")
    assert exc.value.field == "currency"
    with pytest.raises(InvalidOrder) as exc:
        services.create_order(holder, priced, currency="euro")
    assert exc.value.field == "currency"
    assert table_snapshot() == before


def test_the_snapshot_keeps_the_price_when_the_offer_price_changes(holder, priced):
    order = services.create_order(holder, priced, currency="eur")
    OfferPrice.objects.filter(offer=priced, currency="eur").update(price=Decimal("99"))
    order = services.mark_paid(order, amount="18.50", currency="eur")
    assert order.status == OrderStatus.PAID and order.total == Decimal("18.50")


def test_one_price_per_currency_never_the_offer_own(priced):
    with pytest.raises(ValidationError) as caught:
        OfferPrice(offer=priced, currency="usd", price=Decimal("1")).full_clean()
    assert "own currency" in caught.value.message_dict["currency"][0]
    with pytest.raises(ValidationError) as caught:
        OfferPrice(offer=priced, currency="eur", price=Decimal("1")).full_clean()
    assert "Offer and Currency already exists" in str(caught.value)  # one per currency
    with transaction.atomic(), pytest.raises(IntegrityError):
        OfferPrice.objects.create(offer=priced, currency="eur", price=Decimal("1"))
    priced.currency = "eur"  # the offer cannot take a currency it already has a price in
    with pytest.raises(ValidationError) as caught:
        priced.full_clean()
    assert "also has a price in EUR" in caught.value.message_dict["currency"][0]


def test_a_free_price_in_another_currency_is_paid_at_once(holder, priced):
    OfferPrice.objects.create(offer=priced, currency="chf", price=Decimal("0"))
    order = services.create_order(holder, priced, currency="chf")
    assert order.status == OrderStatus.PAID
