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
_BOUND_DIGITS = 15  # |value| < 10^15 ⇔ adjusted exponent < 15
_INT_BOUND = 10**15
_MAX_DECIMALS = 12
_SMALLEST = Decimal(1).scaleb(-_MAX_DECIMALS)
# For the few steps on bounded numbers that are exact anyway: no trap can fire.
_QUIET = Context(prec=60, traps=[])
_INF = float("inf")
_NEG_INF = float("-inf")


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


def check_bounds(number: Decimal, shown: object) -> str | None:
    """Why `number` is outside spec §2's bounds (|value| < 10^15, at most 12 decimal places), or
    None. Reads only the digits and the exponent: no arithmetic, so no context can trap, however
    large or small the exponent (`1e999999999`, `1e-400`). NaN and infinities are refused too."""
    if not number.is_finite():
        return f"{shown!r} is not a finite number"
    if not number:
        return None  # every zero (0E-400, -0) is 0
    if number.adjusted() >= _BOUND_DIGITS:
        return f"{shown!r} is out of range (|value| must be below 10^15)"
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        # trailing zeros do not count: 1.50000000000000 has 2 decimal places
        digits = number.as_tuple().digits
        trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if exponent + trailing < -_MAX_DECIMALS:
            return f"{shown!r} has more than {_MAX_DECIMALS} decimal places"
    return None


def _plain(number: Decimal) -> Decimal:
    """A bounded number as the engine keeps it: as written, except that -0 is 0 and that
    trailing zeros beyond 12 decimal places are dropped (`0E-400` is `0E-12`)."""
    if not number:
        number = number.copy_abs()
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        return number.quantize(_SMALLEST, context=_QUIET)  # exact: only zeros are dropped
    return number


def parse_amount(text: object, field: str) -> Decimal:
    """A price, rate or bound from a definition: a decimal string (or int), finite and within
    spec §2's bounds (checked before any arithmetic).

    Raises `ValueError` naming `field` so the definition can be refused with a clear message.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        shown = repr(text)  # `Decimal('0.5')`: catalog_file hints at quoting it
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ValueError(f"{field} must be a decimal string, got {shown}")
    if isinstance(text, int):
        if -_INT_BOUND < text < _INT_BOUND:
            return Decimal(text)
        raise ValueError(f"{field}: {_short(text)} is out of range (must be below 10^15)")
    else:
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise ValueError(f"{field} must be a decimal string, got {_short(text)}") from None
    problem = check_bounds(value, _Shown(text))
    if problem is not None:
        raise ValueError(f"{field}: {problem}")
    return _plain(value)


def parse_number(value: object) -> Decimal:
    """An event property as a number (spec §2), or `NotANumber` with the reason.

    Accepts ints, floats and numeric strings (`"12.5"`, `"1e3"`); refuses booleans, other strings,
    NaN and infinities (any spelling), magnitudes of 10^15 or more and more than 12 decimal
    places. The bounds are checked on the digits and exponent before any arithmetic, so no
    value can make the decimal context trap (`"1e999999999"`); -0 is 0.
    """
    if isinstance(value, bool) or value is None:
        raise NotANumber(f"expected a number, got {_short(value)}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        if -_INT_BOUND < value < _INT_BOUND:
            return Decimal(value)
        raise NotANumber(f"{_short(value)} is out of range (|value| must be below 10^15)")
    elif isinstance(value, float):
        if value != value or value in (_INF, _NEG_INF):
            raise NotANumber(f"expected a finite number, got {value!r}")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise NotANumber(f"expected a number, got {_short(value)}") from None
    else:
        raise NotANumber(f"expected a number, got {type(value).__name__}")
    problem = check_bounds(number, _Shown(value))
    if problem is not None:
        raise NotANumber(problem)
    return _plain(number)


class _Shown:
    """A value as a message shows it: its repr, cut short (a hostile value may be huge)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return _short(self.value)


def _short(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT_BOUND:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(str(value)) if isinstance(value, Decimal) else repr(value)  # as written
    return text if len(text) <= 60 else text[:57] + "..."


def percent_of(cents: int, rate_percent: Decimal) -> int:
    """`round_half_up(cents × rate / 100)`: taxes on a subtotal."""
    return round_half_up(Decimal(cents) * rate_percent / _HUNDRED)
