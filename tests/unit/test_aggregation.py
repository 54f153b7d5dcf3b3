"""Accumulators of spec §2: count, sum, max, unique_count, latest; ordered values; state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.billing.aggregation import (
    AGGREGATION_TYPES,
    Accumulator,
    InvalidUniqueValue,
    OrderNotKept,
    accumulator_from_state,
    new_accumulator,
    unique_key,
)
from pipeline.billing.money import ENGINE_CONTEXT, NotANumber

D = Decimal


def filled(
    aggregation_type: str,
    values: Sequence[object],
    timestamps: Sequence[int] | None = None,
    keep_order: bool = False,
) -> Accumulator:
    """An accumulator fed `values` in arrival order (seq = position), at `timestamps`."""
    acc = new_accumulator(aggregation_type, keep_order=keep_order)
    stamps = list(timestamps) if timestamps is not None else list(range(len(values)))
    with localcontext(ENGINE_CONTEXT):
        for seq, (value, ts) in enumerate(zip(values, stamps, strict=True)):
            if aggregation_type == "count_agg":
                acc.add(None, ts, seq)
            elif aggregation_type == "unique_count_agg":
                acc.add(unique_key(value), ts, seq)
            else:
                acc.add(D(str(value)), ts, seq)
    return acc


def roundtrip(acc: Accumulator) -> Accumulator:
    state = json.loads(json.dumps(acc.to_state()))
    return accumulator_from_state(acc.aggregation_type, state)


@pytest.mark.parametrize("aggregation_type", sorted(AGGREGATION_TYPES))
def test_no_event_is_zero_units(aggregation_type: str) -> None:
    acc = new_accumulator(aggregation_type)
    assert acc.count == 0
    assert acc.units() == 0
    assert isinstance(acc.units(), Decimal)
    assert roundtrip(acc).units() == 0


@pytest.mark.parametrize(
    ("aggregation_type", "values", "timestamps", "units"),
    [
        ("count_agg", [None, None, None], None, D(3)),
        ("sum_agg", ["1.5", "2.25", "-0.75"], None, D("3.00")),
        ("sum_agg", ["0.1", "0.2"], None, D("0.3")),
        ("sum_agg", ["-1", "-2"], None, D(-3)),
        ("max_agg", ["3", "7.5", "-1"], None, D("7.5")),
        ("max_agg", ["-5", "-3", "-9"], None, D(-3)),
        ("max_agg", ["0"], None, D(0)),
        ("latest_agg", ["1", "2", "3"], [10, 30, 20], D(2)),
        ("latest_agg", ["1", "2"], [10, 10], D(2)),  # tie: the later arrival
        ("latest_agg", ["-4"], [5], D(-4)),
        ("unique_count_agg", [1, 1.0, "1", "1e0", "a", "A", "a"], None, D(3)),
        ("unique_count_agg", ["x"], None, D(1)),
    ],
)
def test_units(
    aggregation_type: str, values: list[object], timestamps: list[int] | None, units: Decimal
) -> None:
    acc = filled(aggregation_type, values, timestamps)
    assert acc.units() == units
    assert acc.count == len(values)
    assert roundtrip(acc).units() == units


def test_sum_is_exact_with_large_values_in_the_engine_context() -> None:
    big = D("999999999999999.999999999999")
    acc = filled("sum_agg", [big] * 1000)
    with localcontext(ENGINE_CONTEXT):
        expected = big * 1000
    assert str(expected) == "999999999999999999.999999999000"
    assert acc.units() == expected
    assert str(roundtrip(acc).units()) == str(expected)


def test_latest_ignores_an_older_event_arriving_later() -> None:
    acc = filled("latest_agg", ["5", "1"], [100, 50])
    assert acc.units() == 5
    acc.add(D(9), 100, 7)  # same timestamp as the current latest, later arrival
    assert acc.units() == 9


@pytest.mark.parametrize(
    "values",
    [
        [1, 1.0, "1", "1e0", "1.00", " 1 ", D("1.0"), "0.1e1", 1.0e0],
        [0, -0, 0.0, -0.0, "0", "-0", "0.000", "0e5", D("-0.0")],
        [10, 10.0, "1E+1", "1e1", "10.0", D("1E1")],
        [-2.5, "-2.50", "-25e-1", D("-2.5")],
        [10**30, "1e30", "1000000000000000000000000000000"],
        [0.1, "0.1", D("0.1")],
    ],
)
def test_unique_key_numbers_compare_by_value(values: list[object]) -> None:
    keys = {unique_key(value) for value in values}
    assert len(keys) == 1, keys


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a", "A"),
        ("a", "a "),
        ("1", "1.5"),
        ("1", "-1"),
        ("1", "n:1"),
        ("NaN", "nan"),
        (10, 100),
        ("", " "),
        (2**70, 2**70 + 1),
        ("0.1", "0.10000000000000000000000000000000001"),
    ],
)
def test_unique_key_distinct_values(first: object, second: object) -> None:
    assert unique_key(first) != unique_key(second)


def test_unique_key_non_numeric_strings_compare_exactly() -> None:
    assert unique_key("Infinity") == "s:Infinity"
    assert unique_key("user-42") == "s:user-42"
    assert unique_key("") == "s:"


@pytest.mark.parametrize(
    "value", [True, False, None, [], [1], {}, {"a": 1}, float("nan"), float("inf"), D("NaN")]
)
def test_unique_key_refuses_what_is_neither_a_string_nor_a_number(value: object) -> None:
    with pytest.raises(InvalidUniqueValue) as caught:
        unique_key(value)
    assert isinstance(caught.value, NotANumber)  # the engine's `invalid`
    assert str(caught.value)


def test_unique_count_counts_events_and_distinct_values() -> None:
    acc = filled("unique_count_agg", ["a", "b", "a", 2, "2.0"])
    assert (acc.count, acc.units()) == (5, D(3))


def test_ordered_increments_follow_timestamp_then_arrival() -> None:
    acc = filled("sum_agg", ["1", "2", "3", "4"], [30, 10, 30, 20], keep_order=True)
    assert acc.ordered_increments() == [D(2), D(4), D(1), D(3)]
    assert [acc.running_total_at(k) for k in (1, 2, 3, 4)] == [D(2), D(6), D(7), D(10)]
    assert acc.units() == 10


def test_ordered_count_increments_are_ones() -> None:
    acc = filled("count_agg", [None] * 4, [4, 3, 2, 1], keep_order=True)
    assert acc.ordered_increments() == [D(1)] * 4
    assert acc.running_total_at(3) == 3
    assert [acc.count_running_below(D(x)) for x in ("0", "1", "1.5", "3", "3.01", "99")] == [
        0,
        0,
        1,
        2,
        3,
        4,
    ]


def test_running_totals_out_of_range() -> None:
    acc = filled("sum_agg", ["1"], keep_order=True)
    with pytest.raises(IndexError):
        acc.running_total_at(2)
    with pytest.raises(IndexError):
        acc.running_total_at(0)


@pytest.mark.parametrize("aggregation_type", ["count_agg", "sum_agg"])
def test_ordered_values_need_keep_order(aggregation_type: str) -> None:
    acc = filled(aggregation_type, ["1"])
    with pytest.raises(OrderNotKept, match="keep_order=True"):
        acc.ordered_increments()
    with pytest.raises(OrderNotKept):
        acc.running_total_at(1)
    with pytest.raises(OrderNotKept):
        acc.count_running_below(D(1))


@pytest.mark.parametrize("aggregation_type", ["max_agg", "latest_agg", "unique_count_agg"])
def test_keep_order_only_for_count_and_sum(aggregation_type: str) -> None:
    with pytest.raises(ValueError, match="keep_order"):
        new_accumulator(aggregation_type, keep_order=True)


def test_unknown_aggregation_type() -> None:
    with pytest.raises(ValueError, match="weighted_sum_agg"):
        new_accumulator("weighted_sum_agg")


@pytest.mark.parametrize(
    ("aggregation_type", "state"),
    [
        ("count_agg", []),
        ("count_agg", ["3"]),
        ("count_agg", [3, 2]),
        ("count_agg", [True]),
        ("sum_agg", [1]),
        ("sum_agg", [1, 1.5]),
        ("sum_agg", [1, "abc"]),
        ("sum_agg", [1, "Infinity"]),
        ("sum_agg", [2, "3", [[1, 1, "1"]]]),
        ("sum_agg", [1, "1", [[1, "1"]]]),
        ("max_agg", [1, 2]),
        ("latest_agg", [1, "2", 3]),
        ("unique_count_agg", [1, [1]]),
        ("unique_count_agg", [1, "s:a"]),
        ("bogus_agg", [0]),
    ],
)
def test_corrupt_state_is_refused(aggregation_type: str, state: list[object]) -> None:
    with pytest.raises(ValueError):
        accumulator_from_state(aggregation_type, state)


def test_state_is_compact() -> None:
    assert filled("count_agg", [None] * 3).to_state() == [3]
    assert filled("sum_agg", ["1.5", "2"]).to_state() == [2, "3.5"]
    assert filled("max_agg", ["1.5", "2"]).to_state() == [2, "2"]
    assert filled("latest_agg", ["7"], [12]).to_state() == [1, "7", 12, 0]
    assert filled("unique_count_agg", ["b", "a", "b"]).to_state() == [3, ["s:a", "s:b"]]
    assert filled("sum_agg", ["1", "2"], [5, 4], keep_order=True).to_state() == [
        2,
        "3",
        [[4, 1, "2"], [5, 0, "1"]],
    ]


# --- properties --------------------------------------------------------------------------

values_st = st.decimals(
    min_value=D("-999999999999999"), max_value=D("999999999999999"), places=3, allow_nan=False
)
events_st = st.lists(st.tuples(values_st, st.integers(0, 20)), max_size=25)


@settings(max_examples=40, deadline=None)
@given(
    aggregation_type=st.sampled_from(sorted(AGGREGATION_TYPES)),
    events=events_st,
    keep_order=st.booleans(),
)
def test_state_roundtrip_keeps_units_and_order(
    aggregation_type: str, events: list[tuple[Decimal, int]], keep_order: bool
) -> None:
    keep_order = keep_order and aggregation_type in ("count_agg", "sum_agg")
    values = [v for v, _ in events]
    acc = filled(aggregation_type, values, [ts for _, ts in events], keep_order=keep_order)
    again = roundtrip(acc)
    assert type(again) is type(acc)
    assert again.units() == acc.units()
    assert again.count == acc.count
    assert again.to_state() == acc.to_state()
    if keep_order:
        assert again.ordered_increments() == acc.ordered_increments()
    # It keeps accumulating the same way after a restore.
    with localcontext(ENGINE_CONTEXT):
        for target in (acc, again):
            target.add(None if aggregation_type == "count_agg" else D(1), 10, 10_000)
    assert again.units() == acc.units()


@settings(max_examples=40, deadline=None)
@given(events=events_st, limit=values_st)
def test_ordered_sum_matches_sorting(events: list[tuple[Decimal, int]], limit: Decimal) -> None:
    acc = filled("sum_agg", [v for v, _ in events], [ts for _, ts in events], keep_order=True)
    expected = [v for _, _, v in sorted((ts, seq, v) for seq, (v, ts) in enumerate(events))]
    assert acc.ordered_increments() == expected
    running = [sum(expected[: k + 1], D(0)) for k in range(len(expected))]
    assert [acc.running_total_at(k + 1) for k in range(len(expected))] == running
    assert acc.count_running_below(limit) == sum(1 for r in running if r < limit)
    assert acc.units() == sum(expected, D(0))


@settings(max_examples=40, deadline=None)
@given(events=events_st)
def test_max_and_latest_match_their_definition(events: list[tuple[Decimal, int]]) -> None:
    values, stamps = [v for v, _ in events], [ts for _, ts in events]
    assert filled("max_agg", values, stamps).units() == max(values, default=D(0))
    latest = max(((ts, seq, v) for seq, (v, ts) in enumerate(events)), default=(0, 0, D(0)))
    assert filled("latest_agg", values, stamps).units() == latest[2]


@settings(max_examples=40, deadline=None)
@given(number=st.decimals(allow_nan=False, allow_infinity=False), zeros=st.integers(0, 5))
def test_unique_key_is_by_value(number: Decimal, zeros: int) -> None:
    # The same value written with trailing zeros (another exponent) is the same key.
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    padded = Decimal((sign, (*digits, *([0] * zeros)), exponent - zeros))
    assert padded == number
    assert unique_key(str(number)) == unique_key(str(padded)) == unique_key(number)
    assert unique_key(str(number)) != unique_key(str(number + 1))
