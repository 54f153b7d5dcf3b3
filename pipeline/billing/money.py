"""Money and numbers: integer cents, `Decimal` parsed from strings, one rounding rule.

Every currency is treated as having two decimals (spec §1). Floats never carry money: a float that
arrives in an event is converted through its shortest `repr`, which is the value the producer wrote.
"""

from __future__ import annotations

from decimal import (
    ROUND_CEILING,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)

# Sums of up to 10^15 with 12 decimals over millions of events need more than the default
# 28 digits; the engine runs every step inside this context (`decimal.localcontext`).
ENGINE_CONTEXT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])
CENT = Decimal("0.01")
ONE = Decimal(1)
_HUNDRED = Decimal(100)
_BOUND = Decimal(10) ** 15
_MAX_DECIMALS = 12


class NotANumber(ValueError):
    """A value that spec §2 does not accept as a number."""


def round_half_up(value: Decimal) -> int:
    """Round to the nearest integer, halves away from zero (Lago's `round`)."""
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def to_cents(amount: Decimal) -> int:
    """A currency amount (units, e.g. `12.345`) → integer cents, half-up at 2 decimals."""
    return round_half_up(amount * _HUNDRED)


def ceil(value: Decimal) -> Decimal:
    return value.to_integral_value(rounding=ROUND_CEILING)


def parse_amount(text: object, field: str) -> Decimal:
    """A price, rate or bound from a definition: a decimal string (or int), finite.

    Raises `ValueError` naming `field` so the definition can be refused with a clear message.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"{field} must be a decimal string, got {text!r}")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"{field} must be a decimal string, got {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{field} must be finite, got {text!r}")
    return value


def parse_number(value: object) -> Decimal:
    """An event property as a number (spec §2), or `NotANumber` with the reason.

    Accepts ints, floats and numeric strings (`"12.5"`, `"1e3"`); refuses booleans, other strings,
    NaN and infinities, magnitudes of 10^15 or more and more than 12 decimal places.
    """
    if isinstance(value, bool) or value is None:
        raise NotANumber(f"expected a number, got {value!r}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value)) if value == value else Decimal("NaN")
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise NotANumber(f"expected a number, got {value!r}") from None
    else:
        raise NotANumber(f"expected a number, got {type(value).__name__}")
    if not number.is_finite():
        raise NotANumber(f"expected a finite number, got {value!r}")
    if abs(number) >= _BOUND:
        raise NotANumber(f"{value!r} is out of range (|value| must be below 10^15)")
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        raise NotANumber(f"{value!r} has more than {_MAX_DECIMALS} decimal places")
    return number


def percent_of(cents: int, rate_percent: Decimal) -> int:
    """`round_half_up(cents × rate / 100)`: taxes on a subtotal."""
    return round_half_up(Decimal(cents) * rate_percent / _HUNDRED)
