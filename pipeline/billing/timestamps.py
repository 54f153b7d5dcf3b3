"""Instants from the wire: Unix seconds (int, float, digit string) or ISO-8601 (no offset = UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")
_MICRO = Decimal(1_000_000)


def parse_instant(value: object) -> datetime:
    """An aware UTC datetime, or `ValueError` saying why the value is not an instant."""
    if isinstance(value, bool):
        raise ValueError(f"expected Unix seconds or ISO-8601, got {value!r}")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int):
        return _from_seconds(Decimal(value), value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite timestamp, got {value!r}")
        return _from_seconds(Decimal(repr(value)), value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"expected a finite timestamp, got {value!r}")
        return _from_seconds(value, value)
    if isinstance(value, str):
        if _UNIX.match(value):
            return _from_seconds(Decimal(value.strip()), value)
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected Unix seconds or ISO-8601, got {_short(value)}") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-14:00 is in year 10000 in UTC
            raise ValueError(f"timestamp out of range: {_short(value)}") from None
    raise ValueError(f"expected Unix seconds or ISO-8601, got {type(value).__name__}")


def _from_seconds(seconds: Decimal, original: object) -> datetime:
    # Bounded before any arithmetic (a decimal context could trap on `1e999999999`): every
    # instant a datetime can hold is within ±10^12 s of the epoch.
    if seconds and seconds.adjusted() >= 12:
        raise ValueError(f"timestamp out of range: {_short(original)}")
    try:
        micros = int((seconds * _MICRO).to_integral_value())
        return EPOCH + timedelta(microseconds=micros)
    except (OverflowError, InvalidOperation):
        raise ValueError(f"timestamp out of range: {_short(original)}") from None


def _short(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(str(value)) if isinstance(value, Decimal) else repr(value)  # as written
    return text if len(text) <= 60 else text[:57] + "..."


_MICROSECOND = timedelta(microseconds=1)


def micros(instant: datetime) -> int:
    """Microseconds since the epoch: what the per-event path compares."""
    return (instant - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def iso(instant: datetime) -> str:
    """ISO-8601 UTC with a `Z`, seconds precision unless there are microseconds."""
    text = instant.astimezone(UTC).replace(tzinfo=None).isoformat()
    return text + "Z"
