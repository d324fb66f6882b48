"""Money: each currency's decimals from CLDR (Babel), validation naming the field, and exact
conversions to and from Stripe's minor units."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from user_credits import money, services
from user_credits.exceptions import InvalidArgument, InvalidOrder, PaymentMismatch
from user_credits.models import OfferPrice, Order, OrderStatus

from .factories import make_holder, make_offer, make_user, person, table_snapshot


@pytest.mark.parametrize(
    "currency, decimals",
    [("jpy", 0), ("JPY", 0), ("usd", 2), ("eur", 2), ("kwd", 3), ("bhd", 3), ("isk", 0)],
)
def test_currency_decimals_come_from_the_table(currency, decimals):
    assert money.currency_decimals(currency) == decimals


@pytest.mark.parametrize("currency", ["zzz", "", "euro", "clf"])
def test_unknown_or_too_fine_currency_is_refused(currency):
    with pytest.raises(InvalidArgument) as caught:
        money.currency_decimals(currency)
    assert caught.value.field == "currency"


@pytest.mark.parametrize(
    "amount, currency, expected",
    [
        ("1.125", "kwd", Decimal("1.125")),
        ("1.1250", "kwd", Decimal("1.125")),
        ("12.5", "usd", Decimal("12.50")),
        ("100.00", "jpy", Decimal("100")),
        (7, "eur", Decimal("7.00")),
    ],
)
def test_valid_amounts_come_back_at_the_currency_decimals(amount, currency, expected):
    value = money.validate_amount(amount, currency, "price")
    assert value == expected and str(value) == str(expected)


@pytest.mark.parametrize(
    "amount, currency",
    [("100.5", "jpy"), ("12.345", "usd"), ("1.1255", "kwd"), ("5.5", "isk")],
)
def test_more_decimals_than_the_currency_has_are_refused(amount, currency):
    with pytest.raises(InvalidArgument) as caught:
        money.validate_amount(amount, currency, "price")
    assert caught.value.field == "price"
    assert currency.upper() in str(caught.value)


@pytest.mark.parametrize("amount", ["abc", "NaN", "Infinity", True, None, ""])
def test_what_is_not_an_amount_is_refused(amount):
    with pytest.raises(InvalidArgument) as caught:
        money.validate_amount(amount, "usd", "total")
    assert caught.value.field == "total"


def test_form_variant_names_each_field():
    with pytest.raises(ValidationError) as caught:
        money.clean_amounts({"price": Decimal("100.5"), "total": Decimal("3")}, "jpy")
    assert set(caught.value.message_dict) == {"price"}
    with pytest.raises(ValidationError) as caught:
        money.clean_amounts({"price": Decimal("1")}, "zzz")
    assert set(caught.value.message_dict) == {"currency"}
    money.clean_amounts({"price": Decimal("1.125")}, "kwd")  # accepted


def test_display_quantize_never_hides_money():
    assert str(money.quantize(Decimal("12.500"), "usd")) == "12.50"
    assert str(money.quantize(Decimal("100.000"), "jpy")) == "100"
    assert str(money.quantize(Decimal("100.500"), "jpy")) == "100.500"


def test_stripe_zero_decimal_currencies_have_no_decimals_in_cldr():
    """So an amount we accept always converts exactly, whatever Stripe's exponent."""
    for currency in money.STRIPE_ZERO_DECIMAL:
        assert money.currency_decimals(currency) == 0, currency


@pytest.mark.parametrize(
    "amount, currency",
    [
        (Decimal("0.01"), "usd"),
        (Decimal("999999999999.99"), "usd"),
        (Decimal("1"), "jpy"),
        (Decimal("9999999999999"), "krw"),
        (Decimal("0.001"), "kwd"),
        (Decimal("123456789012.345"), "bhd"),
        (Decimal("7"), "isk"),
        (Decimal("7"), "ugx"),
        (Decimal("7"), "huf"),
    ],
)
def test_minor_units_round_trip_exactly(amount, currency):
    minor = money.to_minor(amount, currency)
    assert isinstance(minor, int)
    assert money.from_minor(minor, currency) == amount


def test_from_minor_keeps_an_amount_the_currency_cannot_hold():
    assert money.from_minor(50050, "isk") == Decimal("500.50")  # the services refuse it


# --- JPY 100.5 is refused everywhere, with the field named; KWD 1.125 is a price -------------


@pytest.fixture
def jpy_offer(db):
    """An offer saved without ``full_clean`` (as a script or an old row could): 100.5 JPY."""
    return make_offer(price=Decimal("100.5"), currency="jpy")


@pytest.mark.django_db
def test_full_clean_refuses_and_names_the_field():
    offer = make_offer(price=Decimal("100"), currency="jpy")
    offer.price = Decimal("100.5")
    with pytest.raises(ValidationError) as caught:
        offer.full_clean()
    assert set(caught.value.message_dict) == {"price"}
    offer.currency, offer.price = "kwd", Decimal("1.125")
    offer.full_clean()  # three decimals: a price
    extra = OfferPrice(offer=offer, currency="jpy", price=Decimal("100.5"))
    with pytest.raises(ValidationError) as caught:
        extra.full_clean()
    assert set(caught.value.message_dict) == {"price"}
    order = Order(
        holder=make_holder(),
        offer=offer,
        name="x",
        offer_group=offer.offer_group,
        cycle=offer.cycle,
        unit_price=Decimal("100.5"),
        total=Decimal("201"),
        amount_refunded=Decimal("0.5"),
        currency="jpy",
    )
    with pytest.raises(ValidationError) as caught:
        order.full_clean()
    assert set(caught.value.message_dict) == {"unit_price", "amount_refunded"}


@pytest.mark.django_db
def test_full_clean_refuses_an_unknown_currency():
    offer = make_offer(price=Decimal("1"), currency="usd")
    offer.currency = "zzz"
    with pytest.raises(ValidationError) as caught:
        offer.full_clean()
    assert "not an ISO 4217 currency" in caught.value.message_dict["currency"][0]


def test_create_order_refuses_a_price_finer_than_its_currency(holder, jpy_offer):
    before = table_snapshot()
    with pytest.raises(InvalidOrder) as caught:
        services.create_order(holder, jpy_offer)
    assert caught.value.field == "price" and "JPY" in str(caught.value)
    assert table_snapshot() == before


def test_mark_paid_and_refund_refuse_an_amount_finer_than_the_order_currency(holder):
    order = services.create_order(holder, make_offer(price=Decimal("100"), currency="jpy"))
    before = table_snapshot()
    with pytest.raises(PaymentMismatch) as caught:
        services.mark_paid(order, amount="100.5", currency="jpy")
    assert caught.value.field == "amount"
    assert table_snapshot() == before
    services.mark_paid(order, amount="100", currency="jpy")
    before = table_snapshot()
    with pytest.raises(PaymentMismatch) as caught:
        services.refund(order, amount=Decimal("50.5"))
    assert caught.value.field == "amount"
    with pytest.raises(PaymentMismatch) as caught:
        services.refund(order, total_refunded=Decimal("50.5"))
    assert caught.value.field == "total_refunded"
    assert table_snapshot() == before
    order.refresh_from_db()
    assert order.amount_refunded == 0


def test_a_payment_in_another_currency_is_a_mismatch_not_an_error(holder):
    order = services.create_order(holder, make_offer(price=Decimal("100"), currency="jpy"))
    order = services.mark_paid(order, amount="0.93", currency="usd")
    assert order.status == OrderStatus.INCONSISTENT


def test_api_order_names_the_field(holder, jpy_offer):
    client = APIClient()
    client.force_authenticate(person(holder))
    before = table_snapshot()
    response = client.post("/api/credits/orders/", {"offer": jpy_offer.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_order"
    assert list(response.json()["fields"]) == ["price"]
    assert table_snapshot() == before


def _offer_form(offer, **changes):
    data = {
        "name": offer.name,
        "kind": offer.kind,
        "offer_group": offer.offer_group_id,
        "is_active": "on",
        "price": str(offer.price),
        "currency": offer.currency,
        "cycle": offer.cycle,
        "billing": offer.billing,
        "rollover": offer.rollover,
        "weight": "0",
        "prices-TOTAL_FORMS": "0",
        "prices-INITIAL_FORMS": "0",
        "bundle_items-TOTAL_FORMS": "0",
        "bundle_items-INITIAL_FORMS": "0",
    }
    return {**data, **changes}


def test_admin_form_refuses_it_and_accepts_three_decimals(client, jpy_offer):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    url = reverse("admin:user_credits_offer_change", args=[jpy_offer.pk])
    refused = client.post(url, _offer_form(jpy_offer, price="100.5"))
    assert refused.status_code == 200  # the form again, with its error
    errors = refused.context["adminform"].form.errors
    assert list(errors) == ["price"] and "JPY" in errors["price"][0]
    jpy_offer.refresh_from_db()
    assert jpy_offer.price == Decimal("100.5")  # unchanged
    saved = client.post(url, _offer_form(jpy_offer, price="1.125", currency="kwd"))
    assert saved.status_code == 302
    jpy_offer.refresh_from_db()
    assert (jpy_offer.price, jpy_offer.currency) == (Decimal("1.125"), "kwd")
