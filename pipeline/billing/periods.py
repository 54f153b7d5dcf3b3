"""Billing periods and local time (spec §3).

A period is the half-open interval `[start, end)`; `end` is the next period's `start`. Every
boundary is the first instant of a local calendar day in the customer's timezone, so the grid is
computed on local *dates* and each date is turned into an instant by `local_day_start`.

- Calendar grid: the 1st of every month (monthly), every Monday (weekly), Jan/Apr/Jul/Oct 1
  (quarterly), Jan 1 (yearly).
- Anniversary grid: the anchor date (the local day of `subscription_at`) plus k intervals; months
  are always counted from the anchor and the day is clamped to the month's length (anchor Jan 31
  → Feb 29 → Mar 31 → Apr 30).

A period starts where the previous one ended and ends at the first grid boundary strictly after
its start, on the grid of the interval and timezone in force when it opens. Without changes this
walks the grid; after a change of interval or timezone the period may be shorter than a grid
period, and `full_start` is then the start of the grid period that contains its start.

All instants taken and returned are timezone-aware; returned instants are in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from pipeline.billing.money import ENGINE_CONTEXT, round_half_up

INTERVALS = frozenset({"weekly", "monthly", "quarterly", "yearly"})
BILLING_TIMES = frozenset({"calendar", "anniversary"})

_MONTHS_PER_STEP = {"monthly": 1, "quarterly": 3, "yearly": 12}
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Period:
    """A billing period `[start, end)`, as UTC-aware instants."""

    start: datetime  # inclusive
    end: datetime  # exclusive; == the next period's start
    full_start: datetime  # start of the whole grid period containing `start`

    def __post_init__(self) -> None:
        for name in ("start", "end", "full_start"):
            _require_aware(getattr(self, name), name)
        if not self.full_start <= self.start <= self.end:
            raise ValueError(
                f"a period needs full_start <= start <= end, got "
                f"{self.full_start.isoformat()}, {self.start.isoformat()}, {self.end.isoformat()}"
            )


# --- local time -----------------------------------------------------------------------------------


def _require_aware(instant: datetime, name: str = "instant") -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {instant.isoformat()}")


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    """The customer-local calendar date of an instant."""
    _require_aware(instant)
    return instant.astimezone(tz).date()


def local_day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of local day `day`, in UTC.

    Usually local 00:00. When 00:00 is repeated (clocks set back to midnight) it is the first
    00:00; when 00:00 does not exist (clocks jump forward over midnight) it is the transition
    instant, the first moment the local calendar shows `day`. A day skipped entirely (Pacific/Apia,
    2011-12-30) starts where the following day starts.
    """
    midnight = datetime.combine(day, time(0))
    candidates = [midnight.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)]
    existing = [
        instant for instant in candidates if instant.astimezone(tz).replace(tzinfo=None) == midnight
    ]
    if existing:
        return min(existing)
    # 00:00 falls in a gap. PEP 495 maps a gap time to one instant before and one after the
    # transition; the first instant showing a local time >= 00:00 lies between them (whole
    # seconds: tz transitions and offsets are whole seconds).
    low, high = min(candidates), max(candidates)
    while high - low > _ONE_SECOND:
        middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
        if middle.astimezone(tz).replace(tzinfo=None) >= midnight:
            high = middle
        else:
            low = middle
    return high


def _last_local_day(end: datetime, tz: ZoneInfo) -> date:
    """The local date of the last instant before `end`."""
    return local_date(end - _EPSILON, tz)


def _local_days(start: datetime, end: datetime, tz: ZoneInfo) -> int:
    """Calendar dates from `start`'s local date to the last local date before `end`, inclusive.

    Dates are counted, not days lived: a date skipped by a timezone change still counts.
    """
    if end <= start:
        return 0
    return (_last_local_day(end, tz) - local_date(start, tz)).days + 1


# --- grid arithmetic on local dates ---------------------------------------------------------------


def _check(interval: str, billing_time: str) -> None:
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r} (expected one of {sorted(INTERVALS)})")
    if billing_time not in BILLING_TIMES:
        raise ValueError(
            f"unknown billing_time {billing_time!r} (expected one of {sorted(BILLING_TIMES)})"
        )


def _month_length(year: int, month: int) -> int:
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return (following - _ONE_DAY).day


def _add_months(anchor: date, months: int) -> date:
    """`anchor` + `months` months, the day clamped to the target month's length."""
    years, month_index = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years, month_index + 1
    return date(year, month, min(anchor.day, _month_length(year, month)))


def _months_between(earlier: date, later: date) -> int:
    """Whole calendar months from `earlier`'s month to `later`'s month (days ignored)."""
    return (later.year - earlier.year) * 12 + (later.month - earlier.month)


def _calendar_floor(day: date, interval: str) -> date:
    """The calendar grid date on or before `day`."""
    if interval == "weekly":
        return day - timedelta(days=day.weekday())
    if interval == "monthly":
        return day.replace(day=1)
    if interval == "quarterly":
        return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    return date(day.year, 1, 1)


def _calendar_after(day: date, interval: str) -> date:
    """The calendar grid date strictly after `day`."""
    if interval == "weekly":
        return day + timedelta(days=7 - day.weekday())
    floor = _calendar_floor(day, interval)
    return _add_months(floor, _MONTHS_PER_STEP[interval])


def _anniversary_floor(day: date, anchor: date, interval: str) -> date:
    """The anniversary grid date on or before `day` (k may be negative)."""
    if interval == "weekly":
        return anchor + timedelta(days=(day - anchor).days // 7 * 7)
    step = _MONTHS_PER_STEP[interval]
    k = _months_between(anchor, day) // step
    candidate = _add_months(anchor, k * step)
    return candidate if candidate <= day else _add_months(anchor, (k - 1) * step)


def _anniversary_after(day: date, anchor: date, interval: str) -> date:
    """The anniversary grid date strictly after `day`."""
    if interval == "weekly":
        return anchor + timedelta(days=((day - anchor).days // 7 + 1) * 7)
    step = _MONTHS_PER_STEP[interval]
    k = _months_between(anchor, day) // step
    candidate = _add_months(anchor, k * step)
    return candidate if candidate > day else _add_months(anchor, (k + 1) * step)


def _grid_floor(day: date, anchor: date, interval: str, billing_time: str) -> date:
    if billing_time == "calendar":
        return _calendar_floor(day, interval)
    return _anniversary_floor(day, anchor, interval)


def _grid_after(day: date, anchor: date, interval: str, billing_time: str) -> date:
    if billing_time == "calendar":
        return _calendar_after(day, interval)
    return _anniversary_after(day, anchor, interval)


def _period_from(
    start: datetime, anchor: date, interval: str, billing_time: str, tz: ZoneInfo
) -> Period:
    """The period starting at `start` and ending at the first grid boundary strictly after it."""
    _check(interval, billing_time)
    _require_aware(start, "start")
    start = start.astimezone(UTC)
    day = local_date(start, tz)
    boundary = _grid_after(day, anchor, interval, billing_time)
    end = local_day_start(boundary, tz)
    # Only reached where local dates run backwards (a fall-back across midnight) or where a
    # skipped day collapses two dates onto one instant; normally the loop body never runs.
    while end <= start:
        boundary = _grid_after(boundary, anchor, interval, billing_time)
        end = local_day_start(boundary, tz)
    full_start = min(local_day_start(_grid_floor(day, anchor, interval, billing_time), tz), start)
    return Period(start=start, end=end, full_start=full_start)


# --- periods --------------------------------------------------------------------------------------


def first_period(
    subscription_at: datetime, interval: str, billing_time: str, tz: ZoneInfo
) -> Period:
    """The first period: from the first instant of `subscription_at`'s local day.

    With anniversary billing that day is the anchor and the period is whole; with calendar
    billing it is partial unless the day is itself a calendar boundary, and `full_start` is the
    start of the calendar period containing it.
    """
    _require_aware(subscription_at, "subscription_at")
    anchor = local_date(subscription_at, tz)
    return _period_from(local_day_start(anchor, tz), anchor, interval, billing_time, tz)


def next_period(
    previous: Period, anchor: date, interval: str, billing_time: str, tz: ZoneInfo
) -> Period:
    """The period after `previous`, under the interval and timezone in force now.

    `anchor` is the local date of `subscription_at` in the timezone at subscription time. The
    period starts at `previous.end` (which need not be local midnight if the timezone changed)
    and ends at the first grid boundary strictly after it.
    """
    return _period_from(previous.end, anchor, interval, billing_time, tz)


# --- days and pro-rating --------------------------------------------------------------------------


def period_days(period: Period, tz: ZoneInfo) -> int:
    """`full_days` for pro-rating: local calendar days of the grid period `[full_start, end)`."""
    return _local_days(period.full_start, period.end, tz)


def first_period_billed_days(period: Period, tz: ZoneInfo) -> int:
    """Local days from `start`'s day to the period's last day inclusive (days in `[start, end)`)."""
    return _local_days(period.start, period.end, tz)


def termination_billed_days(period: Period, terminated_at: datetime, tz: ZoneInfo) -> int:
    """Local days from the period's first day to `terminated_at`'s day inclusive.

    A termination at (or before) the period's start bills 0 days; one at (or after) its end bills
    every day of `[start, end)`.
    """
    _require_aware(terminated_at, "terminated_at")
    if terminated_at <= period.start:
        return 0
    if terminated_at >= period.end:
        return first_period_billed_days(period, tz)
    return (local_date(terminated_at, tz) - local_date(period.start, tz)).days + 1


def prorate_cents(amount_cents: int, billed_days: int, full_days: int) -> int:
    """`round_half_up(amount_cents × billed_days / full_days)`."""
    if full_days <= 0:
        raise ValueError(f"full_days must be positive, got {full_days}")
    if billed_days < 0:
        raise ValueError(f"billed_days must not be negative, got {billed_days}")
    with localcontext(ENGINE_CONTEXT):
        return round_half_up(Decimal(amount_cents) * Decimal(billed_days) / Decimal(full_days))


# --- display --------------------------------------------------------------------------------------


def to_datetime(period_end: datetime) -> datetime:
    """The `…_to_datetime` shown for a period: its end − 1 s (Lago's 23:59:59)."""
    _require_aware(period_end, "period_end")
    return period_end - _ONE_SECOND


def iso_utc(instant: datetime) -> str:
    """ISO-8601 in UTC with a `Z`: `2025-01-31T23:59:59Z` (microseconds only when non-zero)."""
    _require_aware(instant)
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"
