"""Money: each currency's own number of decimals, and Stripe's minor units.

The decimals come from Babel's copy of the Unicode CLDR currency data
(``babel.numbers.get_currency_precision``): a maintained table, not one written here. JPY has
0, USD 2, KWD 3. Every money column stores 3 decimals (``STORED_DECIMALS``), the most any
currency we accept has; amounts are checked against their currency before they are saved, so
the database never rounds (SQLite and PostgreSQL round differently).

``to_minor`` / ``from_minor`` convert to and from the integer amounts of Stripe's API, whose
exponent is Stripe's rule rather than the currency's (https://docs.stripe.com/currencies):

- the zero-decimal currencies Stripe lists (``STRIPE_ZERO_DECIMAL``) are sent as is: 500 JPY
  is ``500``;
- three-decimal currencies (BHD, JOD, KWD, OMR, TND) are multiplied by 1000: 3.375 KWD is
  ``3375``. Stripe asks for a last digit of 0 for its payment partners; that is a pricing
  choice (price in multiples of 0.010) and is not rounded here: rounding would change the money;
- every other currency is sent with two decimals, including those Stripe lists as special
  cases although they have no minor unit today: ISK and UGX (5 ISK is ``500``, always a
  multiple of 100), HUF and TWD (two decimals in charges, whole units in payouts only).

No DRF or Stripe import here: models, services, the API and the Stripe modules all use it.
"""

from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision, list_currencies
from django.core.exceptions import ValidationError
from django.utils.translation import gettext

from .exceptions import InvalidArgument

#: Decimals of every money column: enough for three-decimal currencies (KWD 1.125).
STORED_DECIMALS = 3

#: Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal), without
#: UGX, which Stripe's special cases keep at two decimals in its API for compatibility.
#: Each has 0 decimals in CLDR too (a test checks it), so no amount of ours is finer.
STRIPE_ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf".split()
)


@lru_cache(maxsize=1)
def _known_currencies() -> frozenset[str]:
    return frozenset(code.lower() for code in list_currencies())


def _code(currency) -> str:
    return str(currency or "").strip().lower()


def currency_decimals(currency: str, *, field: str = "currency") -> int:
    """How many decimals ``currency`` has (``"jpy"`` → 0, ``"usd"`` → 2, ``"kwd"`` → 3).

    An unknown code, or a unit of account finer than what we store (CLF, UYW: 4 decimals),
    raises ``InvalidArgument`` naming ``field``.
    """
    code = _code(currency)
    if code not in _known_currencies():
        raise InvalidArgument(
            gettext("%(currency)r is not an ISO 4217 currency code.") % {"currency": currency},
            field=field,
        )
    decimals = get_currency_precision(code.upper())
    if decimals > STORED_DECIMALS:
        raise InvalidArgument(
            gettext("%(currency)s has %(decimals)s decimals; at most %(supported)s are supported.")
            % {"currency": code.upper(), "decimals": decimals, "supported": STORED_DECIMALS},
            field=field,
        )
    return decimals


def _unit(decimals: int) -> Decimal:
    return Decimal(1).scaleb(-decimals)


def parse_amount(amount, field: str = "amount") -> Decimal:
    """A finite ``Decimal`` from a ``Decimal``, an int or a string; ``InvalidArgument`` if not."""
    if isinstance(amount, bool):
        raise InvalidArgument(_not_an_amount(field, amount), field=field)
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise InvalidArgument(_not_an_amount(field, amount), field=field) from None
    if not value.is_finite():
        raise InvalidArgument(_not_an_amount(field, amount), field=field)
    return value


def _decimals_problem(value: Decimal, currency: str, field: str) -> str | None:
    decimals = currency_decimals(currency)
    if value != value.quantize(_unit(decimals)):
        if decimals == 0:
            allowed = gettext("no decimals")
        else:
            allowed = gettext("at most %(decimals)s decimal(s)") % {"decimals": decimals}
        return gettext(
            "%(field)s %(value)s has more decimals than %(currency)s allows (%(allowed)s)."
        ) % {
            "field": field,
            "value": value,
            "currency": currency.upper(),
            "allowed": allowed,
        }
    return None


def _not_an_amount(field: str, amount) -> str:
    return gettext("%(field)s %(amount)r is not an amount.") % {"field": field, "amount": amount}


def validate_amount(amount, currency: str, field: str = "amount") -> Decimal:
    """``amount`` as a ``Decimal`` with exactly ``currency``'s decimals.

    ``Decimal("100.5")`` JPY raises ``InvalidArgument(field=field)``; ``"1.1250"`` KWD gives
    ``Decimal("1.125")``, ``"12.5"`` USD ``Decimal("12.50")``. Never rounds.
    """
    value = parse_amount(amount, field)
    problem = _decimals_problem(value, _code(currency), field)
    if problem:
        raise InvalidArgument(problem, field=field)
    return value.quantize(_unit(currency_decimals(currency)))


def validation_errors(amounts: dict, currency: str, *, currency_field: str = "currency") -> dict:
    """Form errors for ``{field: amount}`` in ``currency``: ``{field: [message]}`` (empty if fine).

    For ``Model.clean()``: an unknown currency is reported on ``currency_field``; a missing one
    is left to the field's own validation.
    """
    if not _code(currency):
        return {}
    try:
        currency_decimals(currency, field=currency_field)
    except InvalidArgument as exc:
        return {currency_field: [str(exc)]}
    errors = {}
    for field, amount in amounts.items():
        if amount is None:
            continue
        try:
            validate_amount(amount, currency, field)
        except InvalidArgument as exc:
            errors[field] = [str(exc)]
    return errors


def clean_amounts(amounts: dict, currency: str, *, currency_field: str = "currency") -> None:
    """``validation_errors`` raised as a Django ``ValidationError`` (forms, ``full_clean``)."""
    errors = validation_errors(amounts, currency, currency_field=currency_field)
    if errors:
        raise ValidationError(errors)


def quantize(amount, currency: str) -> Decimal:
    """For display: ``amount`` at ``currency``'s decimals (``12.500`` USD → ``12.50``).

    An amount finer than its currency (saved before amounts were checked) is returned as it
    is: showing it rounded would hide money.
    """
    value = Decimal(amount)
    try:
        exact = value.quantize(_unit(currency_decimals(currency)))
    except (InvalidArgument, InvalidOperation):
        return value
    return exact if exact == value else value


# --- Stripe's minor units -------------------------------------------------------------------


def stripe_exponent(currency: str) -> int:
    """The power of ten between a major unit and Stripe's integer amount (see module doc)."""
    code = _code(currency)
    decimals = currency_decimals(code)
    if decimals == 0 and code not in STRIPE_ZERO_DECIMAL:
        return 2
    return decimals


def to_minor(amount, currency: str, *, field: str = "amount") -> int:
    """Major units → Stripe's integer amount: 12.34 USD → ``1234``, 500 JPY → ``500``,
    3.375 KWD → ``3375``, 5 ISK → ``500``.

    Exact: an amount with more decimals than the currency has raises ``InvalidArgument``.
    """
    value = validate_amount(amount, currency, field)
    return int(value.scaleb(stripe_exponent(currency)))


def from_minor(amount: int, currency: str) -> Decimal:
    """Stripe's integer amount → major units, at the currency's decimals when exact.

    ``2125`` KWD → ``Decimal("2.125")``; ``50000`` ISK → ``Decimal("500")``. An amount the
    currency cannot hold (``50050`` ISK) comes back exact (``500.50``): the services refuse it.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        try:
            amount = int(amount)
        except (TypeError, ValueError):
            raise InvalidArgument(
                gettext("%(amount)r is not an integer amount.") % {"amount": amount}, field="amount"
            ) from None
    value = Decimal(amount).scaleb(-stripe_exponent(currency))
    return quantize(value, currency)
