"""Billing periods, local days and pro-rating (spec §3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.billing.periods import (
    BILLING_TIMES,
    INTERVALS,
    Period,
    first_period,
    first_period_billed_days,
    iso_utc,
    local_date,
    local_day_start,
    next_period,
    period_days,
    prorate_cents,
    termination_billed_days,
    to_datetime,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
AUCKLAND = ZoneInfo("Pacific/Auckland")
TOKYO = ZoneInfo("Asia/Tokyo")
HONOLULU = ZoneInfo("Pacific/Honolulu")
# Cuba moves its clocks at midnight: 2013-03-10 00:00 CST does not exist (00:00 → 01:00 CDT at
# 05:00 UTC) and 2013-11-03 00:00 happens twice (01:00 CDT → 00:00 CST at 05:00 UTC).
HAVANA = ZoneInfo("America/Havana")
# Samoa skipped 2011-12-30 entirely (Dec 29 24:00 −10:00 → Dec 31 00:00 +14:00 at 10:00 UTC).
APIA = ZoneInfo("Pacific/Apia")
UTC_ZONE = ZoneInfo("UTC")


def utc(text: str) -> datetime:
    """`"2025-01-15T10:00"` → that instant in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def periods(
    subscription_at: datetime, interval: str, billing_time: str, tz: ZoneInfo, count: int
) -> list[Period]:
    anchor = local_date(subscription_at, tz)
    result = [first_period(subscription_at, interval, billing_time, tz)]
    while len(result) < count:
        result.append(next_period(result[-1], anchor, interval, billing_time, tz))
    return result


# --- local days -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "tz", "expected"),
    [
        (date(2025, 1, 15), UTC_ZONE, "2025-01-15T00:00"),
        (date(2025, 1, 15), PARIS, "2025-01-14T23:00"),
        (date(2025, 7, 15), PARIS, "2025-07-14T22:00"),
        (date(2025, 1, 15), KOLKATA, "2025-01-14T18:30"),
        (date(2025, 1, 15), AUCKLAND, "2025-01-14T11:00"),
        (date(2025, 3, 9), NEW_YORK, "2025-03-09T05:00"),  # DST starts at 02:00 that day
        (date(2025, 3, 10), NEW_YORK, "2025-03-10T04:00"),
        # midnight gap: the day starts at the transition, 01:00 CDT
        (date(2013, 3, 10), HAVANA, "2013-03-10T05:00"),
        # midnight repeated: the first 00:00 (CDT), not the second (CST, 05:00 UTC)
        (date(2013, 11, 3), HAVANA, "2013-11-03T04:00"),
        # a skipped day starts where the next day starts
        (date(2011, 12, 30), APIA, "2011-12-30T10:00"),
        (date(2011, 12, 31), APIA, "2011-12-30T10:00"),
    ],
)
def test_local_day_start(day: date, tz: ZoneInfo, expected: str) -> None:
    start = local_day_start(day, tz)
    assert start == utc(expected)
    assert start.tzinfo is UTC


def test_midnight_transitions_are_what_the_tests_assume() -> None:
    before_gap = utc("2013-03-10T05:00") - timedelta(seconds=1)
    assert before_gap.astimezone(HAVANA).isoformat() == "2013-03-09T23:59:59-05:00"
    assert utc("2013-03-10T05:00").astimezone(HAVANA).isoformat() == "2013-03-10T01:00:00-04:00"
    assert utc("2013-11-03T04:00").astimezone(HAVANA).isoformat() == "2013-11-03T00:00:00-04:00"
    assert utc("2013-11-03T05:00").astimezone(HAVANA).isoformat() == "2013-11-03T00:00:00-05:00"


def test_local_date() -> None:
    assert local_date(utc("2025-01-31T23:30"), PARIS) == date(2025, 2, 1)
    assert local_date(utc("2025-02-01T03:00"), NEW_YORK) == date(2025, 1, 31)
    with pytest.raises(ValueError, match="timezone-aware"):
        local_date(datetime(2025, 1, 1), PARIS)  # noqa: DTZ001


# --- calendar billing -----------------------------------------------------------------------------

CALENDAR_CASES = [
    pytest.param(
        UTC_ZONE,
        "monthly",
        "2025-01-15T10:00",
        "2025-01-01T00:00",
        ["2025-01-15T00:00", "2025-02-01T00:00", "2025-03-01T00:00", "2025-04-01T00:00"],
        id="monthly-utc",
    ),
    pytest.param(
        UTC_ZONE,
        "monthly",
        "2024-02-01T00:00",
        "2024-02-01T00:00",
        ["2024-02-01T00:00", "2024-03-01T00:00", "2024-04-01T00:00"],
        id="monthly-utc-on-the-1st-is-whole",
    ),
    pytest.param(
        PARIS,
        "monthly",
        "2025-03-15T12:00",
        "2025-02-28T23:00",
        # April starts at 00:00 CEST (DST since Mar 30): 22:00 UTC
        ["2025-03-14T23:00", "2025-03-31T22:00", "2025-04-30T22:00"],
        id="monthly-paris-across-dst",
    ),
    pytest.param(
        UTC_ZONE,
        "weekly",
        "2025-01-15T10:00",  # a Wednesday
        "2025-01-13T00:00",
        ["2025-01-15T00:00", "2025-01-20T00:00", "2025-01-27T00:00", "2025-02-03T00:00"],
        id="weekly-utc-from-wednesday",
    ),
    pytest.param(
        UTC_ZONE,
        "weekly",
        "2025-01-13T23:59",  # a Monday
        "2025-01-13T00:00",
        ["2025-01-13T00:00", "2025-01-20T00:00", "2025-01-27T00:00"],
        id="weekly-utc-from-monday",
    ),
    pytest.param(
        AUCKLAND,
        "weekly",
        "2025-04-02T00:00",  # Wednesday 13:00 NZDT; NZ leaves DST on Sunday Apr 6
        "2025-03-30T11:00",
        ["2025-04-01T11:00", "2025-04-06T12:00", "2025-04-13T12:00"],
        id="weekly-auckland-across-dst",
    ),
    pytest.param(
        NEW_YORK,
        "quarterly",
        "2025-02-10T12:00",
        "2025-01-01T05:00",
        [
            "2025-02-10T05:00",
            "2025-04-01T04:00",
            "2025-07-01T04:00",
            "2025-10-01T04:00",
            "2026-01-01T05:00",
        ],
        id="quarterly-new-york",
    ),
    pytest.param(
        KOLKATA,
        "yearly",
        "2024-06-01T03:00",
        "2023-12-31T18:30",
        ["2024-05-31T18:30", "2024-12-31T18:30", "2025-12-31T18:30"],
        id="yearly-kolkata",
    ),
    pytest.param(
        AUCKLAND,
        "monthly",
        "2025-01-31T12:00",  # already Feb 1, 01:00 in Auckland: a whole period
        "2025-01-31T11:00",
        ["2025-01-31T11:00", "2025-02-28T11:00", "2025-03-31T11:00", "2025-04-30T12:00"],
        id="monthly-auckland-local-day-differs-from-utc-day",
    ),
]


@pytest.mark.parametrize(
    ("tz", "interval", "subscription_at", "full_start", "boundaries"), CALENDAR_CASES
)
def test_calendar_periods(
    tz: ZoneInfo, interval: str, subscription_at: str, full_start: str, boundaries: list[str]
) -> None:
    got = periods(utc(subscription_at), interval, "calendar", tz, len(boundaries) - 1)
    assert [(p.start, p.end) for p in got] == [(utc(a), utc(b)) for a, b in pairwise(boundaries)]
    assert got[0].full_start == utc(full_start)
    assert all(p.full_start == p.start for p in got[1:])
    assert all(p.start.tzinfo is UTC and p.end.tzinfo is UTC for p in got)


def test_partial_first_calendar_period_days() -> None:
    first = first_period(utc("2025-01-15T10:00"), "monthly", "calendar", UTC_ZONE)
    assert first.full_start == utc("2025-01-01T00:00") < first.start == utc("2025-01-15T00:00")
    assert period_days(first, UTC_ZONE) == 31
    assert first_period_billed_days(first, UTC_ZONE) == 17


# --- anniversary billing --------------------------------------------------------------------------

ANNIVERSARY_CASES = [
    pytest.param(
        UTC_ZONE,
        "monthly",
        "2024-01-31T15:00",
        ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30"],
        id="monthly-jan-31-through-leap-february",
    ),
    pytest.param(
        UTC_ZONE,
        "monthly",
        "2025-01-31T15:00",
        ["2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30"],
        id="monthly-jan-31-non-leap",
    ),
    pytest.param(
        UTC_ZONE,
        "yearly",
        "2024-02-29T08:00",
        ["2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29", "2029-02-28"],
        id="yearly-feb-29",
    ),
    pytest.param(
        UTC_ZONE,
        "quarterly",
        "2023-11-30T08:00",
        ["2023-11-30", "2024-02-29", "2024-05-30", "2024-08-30", "2024-11-30"],
        id="quarterly-nov-30",
    ),
    pytest.param(
        UTC_ZONE,
        "weekly",
        "2025-01-16T08:00",  # a Thursday
        ["2025-01-16", "2025-01-23", "2025-01-30", "2025-02-06"],
        id="weekly-thursday",
    ),
]


@pytest.mark.parametrize(("tz", "interval", "subscription_at", "days"), ANNIVERSARY_CASES)
def test_anniversary_periods(
    tz: ZoneInfo, interval: str, subscription_at: str, days: list[str]
) -> None:
    got = periods(utc(subscription_at), interval, "anniversary", tz, len(days) - 1)
    expected = [date.fromisoformat(day) for day in days]
    assert [local_date(p.start, tz) for p in got] == expected[:-1]
    assert [local_date(p.end, tz) for p in got] == expected[1:]
    assert all(p.full_start == p.start for p in got)
    assert all(p.start == local_day_start(local_date(p.start, tz), tz) for p in got)


def test_anniversary_in_a_zone_across_dst() -> None:
    first = first_period(utc("2025-03-10T12:00"), "monthly", "anniversary", PARIS)
    assert (first.start, first.end) == (utc("2025-03-09T23:00"), utc("2025-04-09T22:00"))
    assert period_days(first, PARIS) == 31


def test_anniversary_far_from_the_anchor_counts_from_the_anchor() -> None:
    # 2200 is not a leap year; the day is clamped for February, then back to the 31st.
    previous = Period(utc("2199-12-31T00:00"), utc("2200-01-31T00:00"), utc("2199-12-31T00:00"))
    anchor = date(2024, 1, 31)
    february = next_period(previous, anchor, "monthly", "anniversary", UTC_ZONE)
    march = next_period(february, anchor, "monthly", "anniversary", UTC_ZONE)
    assert (february.start, february.end, march.end) == (
        utc("2200-01-31T00:00"),
        utc("2200-02-28T00:00"),
        utc("2200-03-31T00:00"),
    )


# --- daylight saving at midnight ------------------------------------------------------------------


def test_period_ending_on_a_midnight_gap() -> None:
    first = first_period(utc("2013-02-10T17:00"), "monthly", "anniversary", HAVANA)
    assert first.start == utc("2013-02-10T05:00")
    assert first.end == utc("2013-03-10T05:00")  # 01:00 CDT, the first instant of Mar 10
    assert to_datetime(first.end).astimezone(HAVANA).isoformat() == "2013-03-09T23:59:59-05:00"
    assert period_days(first, HAVANA) == 28
    following = next_period(first, date(2013, 2, 10), "monthly", "anniversary", HAVANA)
    assert following.start == first.end
    assert following.end == utc("2013-04-10T04:00")


def test_period_ending_on_a_repeated_midnight() -> None:
    first = first_period(utc("2013-10-03T17:00"), "monthly", "anniversary", HAVANA)
    assert first.end == utc("2013-11-03T04:00")  # the first of the two 00:00s
    assert to_datetime(first.end).astimezone(HAVANA).isoformat() == "2013-11-02T23:59:59-04:00"
    assert period_days(first, HAVANA) == 31
    following = next_period(first, date(2013, 10, 3), "monthly", "anniversary", HAVANA)
    assert following.end == utc("2013-12-03T05:00")
    assert first_period_billed_days(following, HAVANA) == 30


def test_subscription_on_a_repeated_midnight_day_starts_at_the_first_midnight() -> None:
    # 00:30 CST, i.e. during the second pass through the 00:00–01:00 hour
    first = first_period(utc("2013-11-03T05:30"), "weekly", "calendar", HAVANA)
    assert first.start == utc("2013-11-03T04:00")
    assert first.end == utc("2013-11-04T05:00")  # Monday
    assert first_period_billed_days(first, HAVANA) == 1
    assert period_days(first, HAVANA) == 7


def test_period_over_a_skipped_day() -> None:
    first = first_period(utc("2011-12-15T00:00"), "monthly", "calendar", APIA)
    assert first.end == utc("2011-12-31T10:00")
    # calendar dates are counted, so Dec 30 counts although it never happened in Samoa
    assert period_days(first, APIA) == 31


# --- changes of interval or timezone --------------------------------------------------------------


def test_interval_change_ends_at_the_next_boundary_of_the_new_grid() -> None:
    february = Period(utc("2025-02-01T00:00"), utc("2025-03-01T00:00"), utc("2025-02-01T00:00"))
    week = next_period(february, date(2024, 11, 5), "weekly", "calendar", UTC_ZONE)
    # Mar 1 2025 is a Saturday: the period runs to Monday, inside the week of Feb 24
    assert (week.start, week.end, week.full_start) == (
        utc("2025-03-01T00:00"),
        utc("2025-03-03T00:00"),
        utc("2025-02-24T00:00"),
    )
    assert (first_period_billed_days(week, UTC_ZONE), period_days(week, UTC_ZONE)) == (2, 7)


def test_anniversary_interval_change_keeps_the_anchor() -> None:
    anchor = date(2024, 1, 31)
    first = first_period(utc("2024-01-31T09:00"), "monthly", "anniversary", UTC_ZONE)
    quarter = next_period(first, anchor, "quarterly", "anniversary", UTC_ZONE)
    assert (quarter.start, quarter.end, quarter.full_start) == (
        utc("2024-02-29T00:00"),
        utc("2024-04-30T00:00"),
        utc("2024-01-31T00:00"),
    )


@pytest.mark.parametrize(
    ("old", "new", "boundaries", "full_start"),
    [
        # Paris's Mar 1 is Feb 28 18:00 in New York: a short period up to New York's Mar 1
        (
            PARIS,
            NEW_YORK,
            ["2025-02-28T23:00", "2025-03-01T05:00", "2025-04-01T04:00"],
            "2025-02-01T05:00",
        ),
        # New York's Mar 1 is 06:00 in Paris: the period runs to Paris's Apr 1
        (
            NEW_YORK,
            PARIS,
            ["2025-03-01T05:00", "2025-03-31T22:00", "2025-04-30T22:00"],
            "2025-02-28T23:00",
        ),
    ],
)
def test_timezone_change_applies_from_the_next_period(
    old: ZoneInfo, new: ZoneInfo, boundaries: list[str], full_start: str
) -> None:
    first = first_period(utc("2025-02-01T12:00"), "monthly", "calendar", old)
    anchor = local_date(utc("2025-02-01T12:00"), old)
    second = next_period(first, anchor, "monthly", "calendar", new)
    third = next_period(second, anchor, "monthly", "calendar", new)
    assert [second.start, second.end, third.end] == [utc(b) for b in boundaries]
    assert second.full_start == utc(full_start)
    assert third.full_start == third.start


def test_timezone_change_on_anniversary_uses_the_anchor_in_the_new_zone() -> None:
    anchor = date(2025, 1, 15)
    first = first_period(utc("2025-01-15T03:00"), "monthly", "anniversary", TOKYO)
    assert first.end == utc("2025-02-14T15:00")  # Feb 15 00:00 JST = Feb 14 05:00 HST
    second = next_period(first, anchor, "monthly", "anniversary", HONOLULU)
    assert (second.start, second.end) == (utc("2025-02-14T15:00"), utc("2025-02-15T10:00"))
    third = next_period(second, anchor, "monthly", "anniversary", HONOLULU)
    assert third.end == utc("2025-03-15T10:00")


# --- pro-rating -----------------------------------------------------------------------------------


def test_prorate_first_calendar_period() -> None:
    first = first_period(utc("2025-01-15T10:00"), "monthly", "calendar", UTC_ZONE)
    billed, full = first_period_billed_days(first, UTC_ZONE), period_days(first, UTC_ZONE)
    assert (billed, full) == (17, 31)
    assert prorate_cents(3000, billed, full) == 1645


def test_prorate_uses_the_customer_local_day() -> None:
    # 23:30 UTC on Jan 15 is already Jan 16 in Paris
    first = first_period(utc("2025-01-15T23:30"), "monthly", "calendar", PARIS)
    assert first_period_billed_days(first, PARIS) == 16
    assert prorate_cents(3000, 16, period_days(first, PARIS)) == 1548


@pytest.mark.parametrize(
    ("terminated_at", "billed", "cents"),
    [
        ("2025-02-10T15:00", 10, 1071),  # 3000 × 10 / 28 = 1071.43
        ("2025-02-14T00:00", 14, 1500),  # the day of t counts even at its first instant
        ("2025-02-28T23:59", 28, 3000),
        ("2025-03-01T00:00", 28, 3000),  # at the end: the whole period
        ("2025-02-01T00:00", 0, 0),  # at the start: nothing
    ],
)
def test_termination_mid_period(terminated_at: str, billed: int, cents: int) -> None:
    february = Period(utc("2025-02-01T00:00"), utc("2025-03-01T00:00"), utc("2025-02-01T00:00"))
    days = termination_billed_days(february, utc(terminated_at), UTC_ZONE)
    assert days == billed
    assert prorate_cents(3000, days, period_days(february, UTC_ZONE)) == cents


def test_termination_in_a_partial_first_calendar_period() -> None:
    first = first_period(utc("2025-01-15T10:00"), "monthly", "calendar", UTC_ZONE)
    billed = termination_billed_days(first, utc("2025-01-20T08:00"), UTC_ZONE)
    assert billed == 6  # Jan 15 … Jan 20
    assert prorate_cents(3000, billed, period_days(first, UTC_ZONE)) == 581  # 580.65


def test_termination_uses_local_days() -> None:
    march = first_period(utc("2025-03-01T12:00"), "monthly", "calendar", NEW_YORK)
    # Mar 10 02:00 UTC is still Mar 9 in New York
    assert termination_billed_days(march, utc("2025-03-10T02:00"), NEW_YORK) == 9
    assert period_days(march, NEW_YORK) == 31  # 31 local days although one has 23 hours


@pytest.mark.parametrize(
    ("amount", "billed", "full", "expected"),
    [
        (3000, 17, 31, 1645),
        (1, 1, 2, 1),  # half rounds up
        (3, 1, 2, 2),
        (-1, 1, 2, -1),  # halves away from zero
        (5, 1, 3, 2),
        (1000, 0, 30, 0),
        (1000, 30, 30, 1000),
        (10**15, 1, 366, 2732240437158),
    ],
)
def test_prorate_cents(amount: int, billed: int, full: int, expected: int) -> None:
    assert prorate_cents(amount, billed, full) == expected


def test_prorate_cents_refuses_bad_day_counts() -> None:
    with pytest.raises(ValueError, match="full_days"):
        prorate_cents(100, 1, 0)
    with pytest.raises(ValueError, match="billed_days"):
        prorate_cents(100, -1, 30)


def test_period_days_of_calendar_periods() -> None:
    year = first_period(utc("2024-01-01T00:00"), "yearly", "calendar", UTC_ZONE)
    assert period_days(year, UTC_ZONE) == 366
    quarter = first_period(utc("2025-01-20T00:00"), "quarterly", "calendar", UTC_ZONE)
    assert period_days(quarter, UTC_ZONE) == 90
    assert first_period_billed_days(quarter, UTC_ZONE) == 71


# --- display --------------------------------------------------------------------------------------


def test_to_datetime_is_23_59_59_local() -> None:
    march = first_period(utc("2025-03-01T12:00"), "monthly", "calendar", NEW_YORK)
    shown = to_datetime(march.end)
    assert shown == utc("2025-04-01T03:59:59")
    assert shown.astimezone(NEW_YORK).isoformat() == "2025-03-31T23:59:59-04:00"
    assert iso_utc(shown) == "2025-04-01T03:59:59Z"


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (utc("2025-01-31T23:59:59"), "2025-01-31T23:59:59Z"),
        (datetime(2025, 2, 1, 0, 59, 59, tzinfo=PARIS), "2025-01-31T23:59:59Z"),
        (utc("2025-01-31T23:59:59.250000"), "2025-01-31T23:59:59.250000Z"),
        (utc("2025-01-31T00:00"), "2025-01-31T00:00:00Z"),
    ],
)
def test_iso_utc(instant: datetime, expected: str) -> None:
    assert iso_utc(instant) == expected


# --- refusals -------------------------------------------------------------------------------------


def test_refuses_unknown_interval_billing_time_and_naive_instants() -> None:
    assert {"weekly", "monthly", "quarterly", "yearly"} == INTERVALS
    assert {"calendar", "anniversary"} == BILLING_TIMES
    at = utc("2025-01-15T00:00")
    with pytest.raises(ValueError, match="interval"):
        first_period(at, "daily", "calendar", UTC_ZONE)
    with pytest.raises(ValueError, match="billing_time"):
        first_period(at, "monthly", "birthday", UTC_ZONE)
    with pytest.raises(ValueError, match="timezone-aware"):
        first_period(datetime(2025, 1, 15), "monthly", "calendar", UTC_ZONE)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        iso_utc(datetime(2025, 1, 15))  # noqa: DTZ001
    with pytest.raises(ValueError, match="full_start <= start <= end"):
        Period(utc("2025-02-01T00:00"), utc("2025-01-01T00:00"), utc("2025-02-01T00:00"))


# --- properties -----------------------------------------------------------------------------------

ZONES = [
    UTC_ZONE,
    PARIS,
    NEW_YORK,
    KOLKATA,
    AUCKLAND,
    HAVANA,
    ZoneInfo("America/Santiago"),
    ZoneInfo("Asia/Beirut"),
    ZoneInfo("Australia/Lord_Howe"),  # 30-minute DST shift
    ZoneInfo("Asia/Kathmandu"),
]
zones = st.sampled_from(ZONES)
intervals = st.sampled_from(sorted(INTERVALS))
billing_times = st.sampled_from(sorted(BILLING_TIMES))
instants = st.datetimes(
    min_value=datetime(1995, 1, 1),  # noqa: DTZ001 (hypothesis bounds are naive)
    max_value=datetime(2035, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
days = st.dates(min_value=date(1995, 1, 1), max_value=date(2035, 12, 31))


@settings(max_examples=80, deadline=None)
@given(
    subscription_at=instants,
    billing_time=billing_times,
    first_zone=zones,
    steps=st.lists(st.tuples(intervals, zones), min_size=1, max_size=6),
)
def test_periods_tile_time_across_changes(
    subscription_at: datetime,
    billing_time: str,
    first_zone: ZoneInfo,
    steps: list[tuple[str, ZoneInfo]],
) -> None:
    anchor = local_date(subscription_at, first_zone)
    period = first_period(subscription_at, steps[0][0], billing_time, first_zone)
    assert period.start <= subscription_at < period.end
    for interval, tz in steps[1:]:
        following = next_period(period, anchor, interval, billing_time, tz)
        assert following.start == period.end
        assert following.full_start <= following.start < following.end
        assert following.end == local_day_start(local_date(following.end, tz), tz)
        assert following.start.tzinfo is UTC and following.end.tzinfo is UTC
        billed = first_period_billed_days(following, tz)
        assert 1 <= billed <= period_days(following, tz)
        period = following


@settings(max_examples=80, deadline=None)
@given(
    subscription_at=instants,
    interval=intervals,
    billing_time=billing_times,
    tz=zones,
    terminated_offset=st.floats(min_value=0, max_value=1),
)
def test_day_counts_are_consistent(
    subscription_at: datetime,
    interval: str,
    billing_time: str,
    tz: ZoneInfo,
    terminated_offset: float,
) -> None:
    anchor = local_date(subscription_at, tz)
    first = first_period(subscription_at, interval, billing_time, tz)
    second = next_period(first, anchor, interval, billing_time, tz)
    for period in (first, second):
        full, billed = period_days(period, tz), first_period_billed_days(period, tz)
        assert 1 <= billed <= full
        if period is second or billing_time == "anniversary":
            assert billed == full and period.full_start == period.start
        terminated_at = period.start + (period.end - period.start) * terminated_offset
        assert 0 <= termination_billed_days(period, terminated_at, tz) <= billed
        assert 0 <= prorate_cents(3000, billed, full) <= 3000


@settings(max_examples=80, deadline=None)
@given(
    subscription_at=instants,
    interval=st.sampled_from(["monthly", "quarterly", "yearly"]),
    tz=zones,
    count=st.integers(min_value=2, max_value=8),
)
def test_anniversary_starts_on_the_clamped_anchor_day(
    subscription_at: datetime, interval: str, tz: ZoneInfo, count: int
) -> None:
    anchor = local_date(subscription_at, tz)
    step = {"monthly": 1, "quarterly": 3, "yearly": 12}[interval]
    for k, period in enumerate(periods(subscription_at, interval, "anniversary", tz, count)):
        day = local_date(period.start, tz)
        months = anchor.month - 1 + k * step
        assert (day.year, day.month) == (anchor.year + months // 12, months % 12 + 1)
        following_month = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        month_length = (following_month - timedelta(days=1)).day
        assert day.day == min(anchor.day, month_length)
        assert period.start == local_day_start(day, tz)


@settings(max_examples=100, deadline=None)
@given(subscription_at=instants, interval=intervals, tz=zones)
def test_calendar_boundaries_are_on_the_calendar_grid(
    subscription_at: datetime, interval: str, tz: ZoneInfo
) -> None:
    for period in periods(subscription_at, interval, "calendar", tz, 4):
        full_start_day, end_day = local_date(period.full_start, tz), local_date(period.end, tz)
        for day in (full_start_day, end_day):
            if interval == "weekly":
                assert day.weekday() == 0
            else:
                assert day.day == 1
                assert interval != "quarterly" or day.month in (1, 4, 7, 10)
                assert interval != "yearly" or day.month == 1


@settings(max_examples=100, deadline=None)
@given(day=days, tz=zones)
def test_local_day_start_is_the_first_instant_of_the_day(day: date, tz: ZoneInfo) -> None:
    start = local_day_start(day, tz)
    assert local_date(start, tz) == day
    assert local_date(start - timedelta(microseconds=1), tz) < day


@settings(max_examples=100, deadline=None)
@given(
    amount=st.integers(min_value=0, max_value=10**12),
    full=st.integers(min_value=1, max_value=366),
    data=st.data(),
)
def test_prorate_matches_integer_half_up(amount: int, full: int, data: st.DataObject) -> None:
    billed = data.draw(st.integers(min_value=0, max_value=full))
    assert prorate_cents(amount, billed, full) == (2 * amount * billed + full) // (2 * full)
