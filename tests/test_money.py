"""Money: each currency's decimals from CLDR (Babel), validation naming the field, and exact
conversions to and from Stripe's minor units."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from user_credits import money
from user_credits.exceptions import InvalidArgument


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
