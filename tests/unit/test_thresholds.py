"""Spec §5, literally: the vectors of the spec and the skip rule of the per-event path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.billing.catalog import Thresholds, UsageThreshold
from pipeline.billing.thresholds import crossed_thresholds, crossing_distance


def grid(fixed: list[int], recurring: int | None = None) -> Thresholds:
    return Thresholds(
        tuple(UsageThreshold(a, None, False) for a in sorted(fixed)),
        UsageThreshold(recurring, None, True) if recurring else None,
    )


def amounts(crossed: tuple[UsageThreshold, ...]) -> list[object]:
    return [("R" if t.recurring else t.amount_cents) for t in crossed]


@pytest.mark.parametrize(
    ("thresholds", "invoiced", "current", "expected"),
    [
        (grid([10]), 0, 10, [10]),
        (grid([10]), 9, 2, [10]),
        (grid([10]), 11, 1, []),
        (grid([], 10), 11, 9, ["R"]),
        (grid([], 10), 11, 20, ["R"]),  # once per check
        (grid([10], 5), 0, 15, [10, "R"]),
        (grid([10], 5), 0, 14, [10]),
        (grid([10, 20, 30]), 0, 25, [10, 20]),
        (grid([10, 20, 30]), 0, 9, []),
        (grid([]), 0, 1000, []),
    ],
)
def test_spec_vectors(thresholds: Thresholds, invoiced: int, current: int, expected: list[object]):
    assert amounts(crossed_thresholds(thresholds, 0, invoiced, current, 0)) == expected


def test_usage_below_the_last_progressive_invoice_crosses_nothing():
    assert crossed_thresholds(grid([10], 5), 0, 0, 40, 50) == ()


def test_step_four_and_five_use_different_recurring_grids():
    # Below L the recurring threshold is measured from L; at or above L, from multiples of R.
    assert amounts(crossed_thresholds(grid([100], 30), 0, 0, 129, 0)) == [100]
    assert amounts(crossed_thresholds(grid([100], 30), 0, 0, 130, 0)) == [100, "R"]
    assert amounts(crossed_thresholds(grid([100], 30), 0, 100, 19, 0)) == []
    assert amounts(crossed_thresholds(grid([100], 30), 0, 100, 20, 0)) == ["R"]


def test_historical_usage_counts_towards_lifetime():
    assert amounts(crossed_thresholds(grid([100]), 95, 0, 5, 0)) == [100]


grids = st.builds(
    grid,
    st.lists(st.integers(1, 500), max_size=4, unique=True),
    st.one_of(st.none(), st.integers(1, 200)),
)


@given(grids, st.integers(0, 2000), st.integers(0, 1000), st.integers(0, 3000))
def test_crossing_distance_is_exactly_where_checks_start_to_cross(
    thresholds: Thresholds, historical_and_invoiced: int, progressed: int, added: int
):
    billed = historical_and_invoiced + progressed
    distance = crossing_distance(thresholds, billed)
    crossed = crossed_thresholds(
        thresholds, historical_and_invoiced, 0, progressed + added, progressed
    )
    if distance is None:
        assert crossed == ()
    else:
        assert bool(crossed) == (added >= distance)
