"""Charge models of spec §2: amounts, rounding half-up to cents, the clamp at 0, validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.billing.aggregation import Accumulator, OrderNotKept, new_accumulator
from pipeline.billing.money import ENGINE_CONTEXT, to_cents
from pipeline.billing.pricing import (
    CHARGE_MODELS,
    ChargeModel,
    Graduated,
    fee_cents,
    parse_charge_model,
)

D = Decimal


def usage(
    values: Sequence[object],
    aggregation_type: str = "sum_agg",
    timestamps: Sequence[int] | None = None,
    keep_order: bool = False,
) -> Accumulator:
    acc = new_accumulator(aggregation_type, keep_order=keep_order)
    stamps = list(timestamps) if timestamps is not None else list(range(len(values)))
    with localcontext(ENGINE_CONTEXT):
        for seq, (value, ts) in enumerate(zip(values, stamps, strict=True)):
            acc.add(None if aggregation_type == "count_agg" else D(str(value)), ts, seq)
    return acc


def units(amount: object) -> Accumulator:
    """Usage of exactly `amount` units (a single sum_agg event)."""
    return usage([amount])


def price(
    model: str,
    properties: Mapping[str, object],
    acc: Accumulator,
    aggregation_type: str = "sum_agg",
) -> tuple[Decimal, int]:
    """(unrounded amount, fee in cents), computed in the engine's context."""
    charge = parse_charge_model(model, properties, aggregation_type)
    with localcontext(ENGINE_CONTEXT):
        amount = charge.amount(acc.units(), acc)
        fee = fee_cents(charge, acc)
        assert fee == max(to_cents(amount), 0)  # the fee is always the rounded, clamped amount
    return amount, fee


def ranges(*rows: tuple[object, object, str, str]) -> list[dict[str, object]]:
    return [
        {"from_value": lo, "to_value": hi, "per_unit_amount": unit, "flat_amount": flat}
        for lo, hi, unit, flat in rows
    ]


# --- standard ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "quantity", "expected_amount", "cents"),
    [
        ("0.5", "10", D("5"), 500),
        ("0.0125", "3", D("0.0375"), 4),
        ("1", "0", D(0), 0),
        ("0.005", "1", D("0.005"), 1),  # half-up: 0.005 → 0.01
        ("0.0049", "1", D("0.0049"), 0),
        ("1.005", "1", D("1.005"), 101),
        ("2.675", "1", D("2.675"), 268),  # a binary float would give 267
        ("0.015", "1", D("0.015"), 2),  # half-up, not half-even
        ("0.025", "1", D("0.025"), 3),
        ("3", "-2", D(-6), 0),  # negative usage: clamped at 0
        ("1", "-0.004", D("-0.004"), 0),
        ("1", "-0.005", D("-0.005"), 0),
        ("0.000000000001", "999999999999999", D("999.999999999999"), 100000),
    ],
)
def test_standard(amount: str, quantity: str, expected_amount: Decimal, cents: int) -> None:
    assert price("standard", {"amount": amount}, units(quantity)) == (expected_amount, cents)


def test_standard_over_count() -> None:
    acc = usage([None] * 7, "count_agg")
    assert price("standard", {"amount": "0.25"}, acc, "count_agg") == (D("1.75"), 175)


# --- package -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free_units", "quantity", "expected"),
    [
        (None, "0", D(0)),
        (None, "1", D(5)),
        (None, "10", D(5)),
        (None, "10.5", D(10)),
        (None, "11", D(10)),
        (None, "-3", D(0)),
        (0, "20", D(10)),
        (5, "5", D(0)),
        (5, "4", D(0)),
        (5, "6", D(5)),
        (5, "15", D(5)),
        (5, "16", D(10)),
        ("2.5", "12.5", D(5)),
        ("2.5", "12.6", D(10)),
    ],
)
def test_package(free_units: object, quantity: str, expected: Decimal) -> None:
    properties: dict[str, object] = {"amount": "5", "package_size": 10}
    if free_units is not None:
        properties["free_units"] = free_units
    amount, fee = price("package", properties, units(quantity))
    assert amount == expected
    assert fee == int(expected * 100)


def test_package_size_one_and_string_size() -> None:
    assert price("package", {"amount": "1", "package_size": "1"}, units("3.2"))[1] == 400


# --- graduated ---------------------------------------------------------------------------

ADJACENT = ranges((0, 10, "1", "2"), (10, 20, "0.5", "3"), (20, None, "0.1", "0"))
STEPPED_SPEC = ranges((0, 10, "1", "0"), (11, None, "0.5", "0"))
STEPPED = ranges((0, 10, "1", "1"), (11, 20, "0.5", "2"), (21, None, "0", "5"))


@pytest.mark.parametrize(
    ("graduated_ranges", "quantity", "expected"),
    [
        # spec §2 example: stepped 0–10 at 1, 11–∞ at 0.5, flats 0
        (STEPPED_SPEC, "10", D(10)),
        (STEPPED_SPEC, "10.5", D("10.25")),
        (STEPPED_SPEC, "12", D(11)),
        (STEPPED_SPEC, "11", D("10.5")),
        (STEPPED_SPEC, "0", D(0)),
        # adjacent form: the flat amount counts once a range holds units
        (ADJACENT, "0", D(0)),
        (ADJACENT, "1", D(3)),
        (ADJACENT, "10", D(12)),
        (ADJACENT, "10.5", D("15.25")),
        (ADJACENT, "20", D(20)),
        (ADJACENT, "25", D("20.5")),
        # stepped with flats: between two ranges, the next one holds top − from + 1 units
        (STEPPED, "10", D(11)),
        (STEPPED, "10.5", D("13.25")),
        (STEPPED, "11", D("13.5")),
        (STEPPED, "20", D(18)),
        (STEPPED, "20.5", D(23)),
        (STEPPED, "30", D(23)),
        # a single open range
        (ranges((0, None, "2", "1")), "3", D(7)),
        # negative usage follows the literal rule (first range, units ≠ 0 → flat) then clamps
        (ADJACENT, "-5", D(-3)),
        (ranges((0, 10, "1", "10"), (10, None, "1", "0")), "-4", D(6)),
    ],
)
def test_graduated(
    graduated_ranges: list[dict[str, object]], quantity: str, expected: Decimal
) -> None:
    amount, fee = price("graduated", {"graduated_ranges": graduated_ranges}, units(quantity))
    assert amount == expected
    assert fee == max(int(expected * 100), 0)


def test_graduated_detects_the_form() -> None:
    stepped = parse_charge_model("graduated", {"graduated_ranges": STEPPED}, "sum_agg")
    adjacent = parse_charge_model("graduated", {"graduated_ranges": ADJACENT}, "sum_agg")
    assert isinstance(stepped, Graduated) and stepped.stepped
    assert isinstance(adjacent, Graduated) and not adjacent.stepped


# --- volume ------------------------------------------------------------------------------

VOLUME = ranges((0, 100, "1", "10"), (100, 200, "0.5", "20"), (200, None, "0.1", "0"))
VOLUME_STEPPED = ranges((0, 100, "1", "10"), (101, 200, "0.5", "20"), (201, None, "0.1", "0"))


@pytest.mark.parametrize(
    ("volume_ranges", "quantity", "expected"),
    [
        (VOLUME, "0", D(10)),  # 0 units cost the first range's flat amount
        (VOLUME, "50", D(60)),
        (VOLUME, "100", D(110)),  # on a border: the first range that holds it
        (VOLUME, "100.5", D("70.25")),
        (VOLUME, "200", D(120)),
        (VOLUME, "201", D("20.1")),
        (VOLUME_STEPPED, "100", D(110)),
        (VOLUME_STEPPED, "100.5", D("70.25")),  # ceil(100.5) = 101 reaches 101–200
        (VOLUME_STEPPED, "101", D("70.5")),
        (VOLUME_STEPPED, "200.2", D("20.02")),
        (VOLUME, "-1", D(0)),  # no range holds negative usage
    ],
)
def test_volume(volume_ranges: list[dict[str, object]], quantity: str, expected: Decimal) -> None:
    amount, fee = price("volume", {"volume_ranges": volume_ranges}, units(quantity))
    assert amount == expected
    assert fee == int(expected * 100)


# --- percentage --------------------------------------------------------------------------

EVENTS = ["100", "200", "300"]  # running totals 100, 300, 600


@pytest.mark.parametrize(
    ("properties", "values", "expected"),
    [
        # without free settings: rate on everything, fixed amount per event
        ({"rate": "1"}, EVENTS, D(6)),
        ({"rate": "1", "fixed_amount": "0.5"}, EVENTS, D("7.5")),
        ({"rate": "2.5"}, ["0.2"], D("0.005")),
        # N = 2 < n: free = r_2 = 300, free events = 2
        ({"rate": "1", "fixed_amount": "0.5", "free_units_per_events": 2}, EVENTS, D("3.5")),
        # N ≥ n and X = 0: everything is free, no paid event
        ({"rate": "1", "fixed_amount": "0.5", "free_units_per_events": 5}, EVENTS, D(0)),
        ({"rate": "1", "fixed_amount": "0.5", "free_units_per_events": 3}, EVENTS, D(0)),
        # X = 250: free = min(600, 250); one running total (100) is below 250
        (
            {"rate": "1", "fixed_amount": "0.5", "free_units_per_total_aggregation": "250"},
            EVENTS,
            D("3.5") + D(1),
        ),
        # X over the total: all free; all 3 running totals are below X
        (
            {"rate": "1", "fixed_amount": "0.5", "free_units_per_total_aggregation": "1000"},
            EVENTS,
            D(0),
        ),
        # X equal to a running total: "below" is strict (100 only)
        (
            {"rate": "1", "fixed_amount": "0.5", "free_units_per_total_aggregation": "300"},
            EVENTS,
            D(3) + D(1),
        ),
        # both: free = r_2 = 300 (N < n); free events = min(2, 1) = 1
        (
            {
                "rate": "1",
                "fixed_amount": "0.5",
                "free_units_per_events": 2,
                "free_units_per_total_aggregation": "250",
            },
            EVENTS,
            D(3) + D(1),
        ),
        # both, N ≥ n: free = min(r_n, X) = 250; free events = min(5, 1) = 1
        (
            {
                "rate": "1",
                "fixed_amount": "0.5",
                "free_units_per_events": 5,
                "free_units_per_total_aggregation": "250",
            },
            EVENTS,
            D("3.5") + D(1),
        ),
        # both, no running total below X: free events = N (the smallest non-zero)
        (
            {
                "rate": "1",
                "fixed_amount": "0.5",
                "free_units_per_events": 2,
                "free_units_per_total_aggregation": "50",
            },
            EVENTS,
            D(3) + D("0.5"),
        ),
        # 0 units: no percentage, no paid event (even with events)
        ({"rate": "1", "fixed_amount": "0.5"}, ["5", "-5"], D(0)),
        # negative usage: no percentage, paid events still pay the fixed amount
        ({"rate": "1", "fixed_amount": "0.5"}, ["-5"], D("0.5")),
        # no event
        ({"rate": "1", "fixed_amount": "0.5", "free_units_per_events": 1}, [], D(0)),
        ({"rate": "1", "fixed_amount": "0.5"}, [], D(0)),
    ],
)
def test_percentage_sum(
    properties: dict[str, object], values: list[str], expected: Decimal
) -> None:
    charge = parse_charge_model("percentage", properties, "sum_agg")
    acc = usage(values, keep_order=charge.needs_order)
    amount, fee = price("percentage", properties, acc)
    assert amount == expected
    assert fee == to_cents(expected)


def test_percentage_takes_events_in_timestamp_order() -> None:
    properties = {"rate": "10", "fixed_amount": "1", "free_units_per_events": 1}
    # Arrival order 300, 100, 200 but timestamps put 100 first: free = r_1 = 100.
    acc = usage(["300", "100", "200"], timestamps=[30, 10, 20], keep_order=True)
    assert price("percentage", properties, acc) == (D(50) + D(2), 5200)
    # Same timestamp: the earlier arrival comes first.
    acc = usage(["300", "100", "200"], timestamps=[10, 10, 10], keep_order=True)
    assert price("percentage", properties, acc) == (D(30) + D(2), 3200)


@pytest.mark.parametrize(
    ("properties", "events", "expected"),
    [
        ({"rate": "10"}, 5, D("0.5")),
        ({"rate": "10", "fixed_amount": "1"}, 5, D("5.5")),
        ({"rate": "10", "fixed_amount": "1", "free_units_per_events": 2}, 5, D("3.3")),
        ({"rate": "10", "fixed_amount": "1", "free_units_per_total_aggregation": "3"}, 5, D("3.2")),
        (
            {"rate": "10", "fixed_amount": "1", "free_units_per_total_aggregation": "2.5"},
            5,
            D("3.25"),
        ),
        ({"rate": "10", "fixed_amount": "1", "free_units_per_events": 9}, 5, D(0)),
        ({"rate": "10", "fixed_amount": "1", "free_units_per_events": 2}, 0, D(0)),
    ],
)
def test_percentage_count(properties: dict[str, object], events: int, expected: Decimal) -> None:
    charge = parse_charge_model("percentage", properties, "count_agg")
    acc = usage([None] * events, "count_agg", keep_order=charge.needs_order)
    assert price("percentage", properties, acc, "count_agg")[0] == expected


def test_percentage_with_negative_values_counts_every_running_total_below() -> None:
    # Running totals 5, -5, 20: two are below 10, not only the leading one.
    properties = {"rate": "10", "fixed_amount": "1", "free_units_per_total_aggregation": "10"}
    acc = usage(["5", "-10", "25"], keep_order=True)
    assert price("percentage", properties, acc) == (D(1) + D(1), 200)


def test_percentage_needs_order_only_with_free_settings() -> None:
    def needs(properties: dict[str, object]) -> bool:
        return parse_charge_model("percentage", properties, "sum_agg").needs_order

    assert not needs({"rate": "1"})
    assert not needs({"rate": "1", "free_units_per_events": 0, "fixed_amount": "1"})
    assert needs({"rate": "1", "free_units_per_events": 1})
    assert needs({"rate": "1", "free_units_per_total_aggregation": "0.5"})
    assert not parse_charge_model("standard", {"amount": "1"}, "sum_agg").needs_order


def test_percentage_with_free_settings_refuses_unordered_usage() -> None:
    charge = parse_charge_model("percentage", {"rate": "1", "free_units_per_events": 1}, "sum_agg")
    with pytest.raises(OrderNotKept):
        fee_cents(charge, usage(["1", "2"]))
    assert fee_cents(charge, usage([])) == 0  # nothing to order yet


def test_optional_properties_may_be_null() -> None:
    properties = {
        "rate": "1",
        "fixed_amount": None,
        "free_units_per_events": None,
        "free_units_per_total_aggregation": None,
    }
    assert price("percentage", properties, units("100")) == (D(1), 100)
    package = {"amount": "1", "package_size": 1, "free_units": None}
    assert price("package", package, units("2"))[1] == 200


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "properties", "aggregation_type", "message"),
    [
        ("tiered", {"amount": "1"}, "sum_agg", "charge_model"),
        ("standard", {}, "sum_agg", "amount"),
        ("standard", {"amount": None}, "sum_agg", "amount"),
        ("standard", {"amount": "abc"}, "sum_agg", "amount"),
        ("standard", {"amount": 0.5}, "sum_agg", "amount"),
        ("standard", {"amount": True}, "sum_agg", "amount"),
        ("standard", {"amount": "-1"}, "sum_agg", "amount"),
        ("standard", {"amount": "NaN"}, "sum_agg", "amount"),
        ("standard", {"amount": "1e15"}, "sum_agg", "amount"),
        ("standard", {"amount": "0.0000000000001"}, "sum_agg", "amount"),
        ("standard", {"amount": "1e999999"}, "sum_agg", "amount"),
        ("standard", ["amount"], "sum_agg", "properties"),
        ("package", {"amount": "1"}, "sum_agg", "package_size"),
        ("package", {"amount": "1", "package_size": 0}, "sum_agg", "package_size"),
        ("package", {"amount": "1", "package_size": "1.5"}, "sum_agg", "package_size"),
        ("package", {"amount": "1", "package_size": -2}, "sum_agg", "package_size"),
        ("package", {"amount": "1", "package_size": 1, "free_units": -1}, "sum_agg", "free_units"),
        ("package", {"package_size": 1}, "sum_agg", "amount"),
        ("graduated", {}, "sum_agg", "graduated_ranges"),
        ("graduated", {"graduated_ranges": []}, "sum_agg", "graduated_ranges"),
        ("graduated", {"graduated_ranges": "0-10"}, "sum_agg", "graduated_ranges"),
        ("graduated", {"graduated_ranges": [1]}, "sum_agg", r"graduated_ranges\[0\] must be"),
        (
            "graduated",
            {"graduated_ranges": ranges((1, None, "1", "0"))},
            "sum_agg",
            r"graduated_ranges\[0\].from_value must be 0",
        ),
        (
            "graduated",
            {"graduated_ranges": ranges((0, 10, "1", "0"))},
            "sum_agg",
            r"graduated_ranges\[0\].to_value must be null",
        ),
        (
            "graduated",
            {"graduated_ranges": ranges((0, None, "1", "0"), (10, None, "1", "0"))},
            "sum_agg",
            "only the last range may be open",
        ),
        (
            "graduated",
            {"graduated_ranges": ranges((0, 10, "1", "0"), (12, None, "1", "0"))},
            "sum_agg",
            r"graduated_ranges\[1\].from_value must be 10 or 11",
        ),
        (
            "graduated",
            {"graduated_ranges": ranges((0, 10, "1", "0"), (5, None, "1", "0"))},
            "sum_agg",
            r"graduated_ranges\[1\].from_value",
        ),
        (  # mixed forms
            "graduated",
            {
                "graduated_ranges": ranges(
                    (0, 10, "1", "0"), (10, 20, "1", "0"), (21, None, "1", "0")
                )
            },
            "sum_agg",
            r"graduated_ranges\[2\].from_value must be 20 \(adjacent form\)",
        ),
        (
            "graduated",
            {
                "graduated_ranges": ranges(
                    (0, 10, "1", "0"), (11, 20, "1", "0"), (20, None, "1", "0")
                )
            },
            "sum_agg",
            r"graduated_ranges\[2\].from_value must be 21 \(stepped form\)",
        ),
        (
            "graduated",
            {"graduated_ranges": ranges((0, 0, "1", "0"), (0, None, "1", "0"))},
            "sum_agg",
            r"graduated_ranges\[0\].to_value must be greater than from_value",
        ),
        (
            "graduated",
            {"graduated_ranges": ranges((0, "10.5", "1", "0"), ("10.5", None, "1", "0"))},
            "sum_agg",
            r"graduated_ranges\[0\].to_value must be an integer",
        ),
        (
            "graduated",
            {"graduated_ranges": ranges((0, None, "-1", "0"))},
            "sum_agg",
            r"graduated_ranges\[0\].per_unit_amount",
        ),
        (
            "graduated",
            {"graduated_ranges": [{"from_value": 0, "to_value": None, "per_unit_amount": "1"}]},
            "sum_agg",
            r"graduated_ranges\[0\].flat_amount is required",
        ),
        (
            "volume",
            {"volume_ranges": ranges((0, 10, "1", "0"), (12, None, "1", "0"))},
            "sum_agg",
            r"volume_ranges\[1\].from_value",
        ),
        ("volume", {"graduated_ranges": ranges((0, None, "1", "0"))}, "sum_agg", "volume_ranges"),
        ("percentage", {"rate": "1"}, "max_agg", "sum_agg or count_agg"),
        ("percentage", {"rate": "1"}, "unique_count_agg", "sum_agg or count_agg"),
        ("percentage", {}, "sum_agg", "rate"),
        ("percentage", {"rate": "-1"}, "sum_agg", "rate"),
        ("percentage", {"rate": "1", "fixed_amount": "-1"}, "sum_agg", "fixed_amount"),
        (
            "percentage",
            {"rate": "1", "free_units_per_events": "1.5"},
            "sum_agg",
            "free_units_per_events must be an integer",
        ),
        ("percentage", {"rate": "1", "free_units_per_events": -1}, "sum_agg", "free_units_per"),
        (
            "percentage",
            {"rate": "1", "free_units_per_total_aggregation": "-0.5"},
            "sum_agg",
            "free_units_per_total_aggregation",
        ),
    ],
)
def test_invalid_properties_are_refused(
    model: str, properties: object, aggregation_type: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_charge_model(model, properties, aggregation_type)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", sorted(CHARGE_MODELS))
def test_every_model_prices_no_usage(model: str) -> None:
    properties: dict[str, dict[str, object]] = {
        "standard": {"amount": "1"},
        "package": {"amount": "1", "package_size": 10},
        "graduated": {"graduated_ranges": ADJACENT},
        "volume": {"volume_ranges": VOLUME},
        "percentage": {"rate": "1", "fixed_amount": "1"},
    }
    expected = 1000 if model == "volume" else 0  # volume: the first range's flat amount
    assert price(model, properties[model], usage([]))[1] == expected


def test_unknown_keys_are_ignored() -> None:
    assert price("standard", {"amount": "1", "grouped_by": []}, units("2"))[1] == 200


# --- properties --------------------------------------------------------------------------

quantities = st.decimals(
    min_value=D("-1000"), max_value=D("999999999999999"), places=4, allow_nan=False
)
amounts = st.decimals(min_value=D(0), max_value=D("1000"), places=6, allow_nan=False)


Row = tuple[int, int | None, str, str]


@st.composite
def graduated_rows(draw: st.DrawFn, flat: bool = True) -> list[Row]:
    """Ranges from 0, the last open, in the adjacent or (randomly) the stepped form."""
    widths = draw(st.lists(st.integers(1, 50), max_size=5))
    gap = 1 if draw(st.booleans()) else 0
    rows: list[Row] = []
    low = 0
    for width in widths:
        rows.append((low, low + width, str(draw(amounts)), str(draw(amounts)) if flat else "0"))
        low += width + gap
    rows.append((low, None, str(draw(amounts)), str(draw(amounts)) if flat else "0"))
    return rows


def literal_graduated(rows: list[Row], quantity: Decimal) -> Decimal:
    """Spec §2's walk, written independently of the module."""
    stepped = len(rows) > 1 and rows[1][0] == (rows[0][1] or 0) + 1
    total = D(0)
    for index, (low, high, per_unit, flat) in enumerate(rows):
        top = quantity if high is None else min(quantity, D(high))
        in_range = top - low + (1 if stepped and index else 0)
        total += in_range * D(per_unit)
        if in_range != 0:
            total += D(flat)
        if high is None or high >= quantity:
            break
    return total


@settings(max_examples=50, deadline=None)
@given(rows=graduated_rows(), quantity=quantities)
def test_graduated_matches_the_literal_walk(rows: list[Row], quantity: Decimal) -> None:
    with localcontext(ENGINE_CONTEXT):
        expected = literal_graduated(rows, quantity)
    amount, fee = price("graduated", {"graduated_ranges": ranges(*rows)}, units(quantity))
    assert amount == expected
    assert fee == max(to_cents(expected), 0)


@settings(max_examples=40, deadline=None)
@given(
    rows=graduated_rows(flat=False),
    quantities=st.lists(
        st.decimals(min_value=D(0), max_value=D(400), places=2, allow_nan=False),
        min_size=2,
        max_size=6,
    ),
)
def test_graduated_without_flats_is_monotone(rows: list[Row], quantities: list[Decimal]) -> None:
    table = {"graduated_ranges": ranges(*rows)}
    fees = [price("graduated", table, units(q))[1] for q in sorted(quantities)]
    assert fees == sorted(fees)


@settings(max_examples=50, deadline=None)
@given(amount=amounts, quantity=quantities)
def test_standard_is_units_times_amount_clamped(amount: Decimal, quantity: Decimal) -> None:
    _, fee = price("standard", {"amount": str(amount)}, units(quantity))
    with localcontext(ENGINE_CONTEXT):
        assert fee == max(to_cents(quantity * amount), 0)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.decimals(min_value=D(0), max_value=D(100), places=2), max_size=12),
    rate=amounts,
    fixed=amounts,
    per_events=st.integers(0, 6),
    per_total=st.decimals(min_value=D(0), max_value=D(300), places=1),
)
def test_percentage_matches_the_rule(
    values: list[Decimal], rate: Decimal, fixed: Decimal, per_events: int, per_total: Decimal
) -> None:
    properties = {
        "rate": str(rate),
        "fixed_amount": str(fixed),
        "free_units_per_events": per_events,
        "free_units_per_total_aggregation": str(per_total),
    }
    acc = usage(values, keep_order=True)
    with localcontext(ENGINE_CONTEXT):
        running = [sum(values[: k + 1], D(0)) for k in range(len(values))]
        n, total = len(values), sum(values, D(0))
        if per_events == 0 and per_total == 0:
            free, free_events = D(0), 0
        else:
            if 0 < per_events < n:
                free = running[per_events - 1]
            elif per_total == 0:
                free = total
            else:
                free = min(total, per_total)
            below = sum(1 for r in running if r < per_total) if per_total else 0
            free_events = min([x for x in (per_events, below) if x], default=0)
        paid_events = max(n - free_events, 0) if total != 0 else 0
        expected = max(total - free, D(0)) * rate / 100 + paid_events * fixed
    assert price("percentage", properties, acc)[0] == expected


@settings(max_examples=40, deadline=None)
@given(quantity=quantities, size=st.integers(1, 30), free=st.integers(0, 40), amount=amounts)
def test_package_matches_the_rule(quantity: Decimal, size: int, free: int, amount: Decimal) -> None:
    properties = {"amount": str(amount), "package_size": size, "free_units": free}
    with localcontext(ENGINE_CONTEXT):
        paid = quantity - free
        expected = D(0) if paid <= 0 else (paid / size).to_integral_value("ROUND_CEILING") * amount
    assert price("package", properties, units(quantity))[0] == expected


def test_fee_cents_is_a_method_of_every_model() -> None:
    charge: ChargeModel = parse_charge_model("volume", {"volume_ranges": VOLUME}, "sum_agg")
    assert fee_cents(charge, units("1")) == charge.fee_cents(units("1")) == 1100
