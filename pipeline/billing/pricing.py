"""Charge models: a period's aggregated usage → the charge's fee in cents (spec §2).

`parse_charge_model` validates a charge's `properties` once and precomputes every `Decimal`, so
that pricing an event (`fee_cents`) is a few arithmetic operations. Amounts in properties are
decimal strings in currency units (ints accepted), read with `money.parse_amount`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from itertools import pairwise

from pipeline.billing.aggregation import Accumulator
from pipeline.billing.money import ENGINE_CONTEXT, ceil, parse_amount

CHARGE_MODELS = frozenset({"standard", "package", "graduated", "volume", "percentage"})
PERCENTAGE_AGGREGATIONS = frozenset({"sum_agg", "count_agg"})

_ZERO = Decimal(0)
_HALF = Decimal("0.5")
_HUNDRED = Decimal(100)
# Definition values stay in the range events are held to (spec §2), so that every product the
# engine forms stays exact within ENGINE_CONTEXT.
_BOUND = Decimal(10) ** 15
_MAX_DECIMALS = 12
_SMALLEST = Decimal(1).scaleb(-_MAX_DECIMALS)


class ChargeModel:
    """A validated charge model. `amount` is the unrounded currency amount (may be < 0)."""

    __slots__ = ()

    @property
    def needs_order(self) -> bool:
        """Whether the metric's accumulator must be created with `keep_order=True`."""
        return False

    def amount(self, units: Decimal, usage: Accumulator) -> Decimal:
        raise NotImplementedError

    def fee_cents(self, usage: Accumulator) -> int:
        return _cents(self.amount(usage.units(), usage))


def fee_cents(model: ChargeModel, usage: Accumulator) -> int:
    """The charge's fee: its amount rounded half-up to 2 decimals, in cents, clamped at 0."""
    return model.fee_cents(usage)


def _cents(amount: Decimal) -> int:
    """`max(money.to_cents(amount), 0)`, without the work for amounts that clamp anyway.

    Half-up of a positive number is floor(x + 0.5); a negative amount rounds to ≤ 0 cents.
    """
    scaled = amount * _HUNDRED
    return (scaled + _HALF).__floor__() if scaled > _ZERO else 0


@dataclass(frozen=True, slots=True)
class Standard(ChargeModel):
    """units × amount."""

    unit_amount: Decimal
    _cents_per_unit: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        with localcontext(ENGINE_CONTEXT):
            object.__setattr__(self, "_cents_per_unit", self.unit_amount * _HUNDRED)

    def amount(self, units: Decimal, usage: Accumulator) -> Decimal:
        return units * self.unit_amount

    def fee_cents(self, usage: Accumulator) -> int:
        scaled = usage.units() * self._cents_per_unit
        return (scaled + _HALF).__floor__() if scaled > _ZERO else 0


@dataclass(frozen=True, slots=True)
class Package(ChargeModel):
    """paid = units − free_units; 0 if paid ≤ 0, else ceil(paid / package_size) × amount."""

    package_amount: Decimal
    package_size: int
    free_units: Decimal

    def amount(self, units: Decimal, usage: Accumulator) -> Decimal:
        paid = units - self.free_units
        if paid <= _ZERO:
            return _ZERO
        # ceil(paid / package_size), exact in any context: integer quotient and remainder.
        packages, rest = divmod(paid, self.package_size)
        return (packages + 1 if rest else packages) * self.package_amount


@dataclass(frozen=True, slots=True)
class Range:
    """One graduated or volume range; `to_value` None is the open last range."""

    from_value: Decimal
    to_value: Decimal | None
    per_unit_amount: Decimal
    flat_amount: Decimal


@dataclass(frozen=True, slots=True)
class Graduated(ChargeModel):
    """Walk the ranges; each adds its units × per_unit_amount, plus its flat amount if units ≠ 0.

    A range's units are `top − from_value`, or `top − from_value + 1` for the later ranges of the
    stepped form, with `top = min(units, to_value)`; the walk stops after the first range whose
    `to_value` is open or ≥ units.
    """

    ranges: tuple[Range, ...]
    stepped: bool
    # `fee_cents` finds the last range reached by bisecting the bounded `to_value`s, then adds the
    # total of the whole ranges before it, precomputed in cents with the rounding half folded in:
    # per range, (base, per_unit, total before + ½, total before + flat + ½), where `base` is
    # `from_value` (adjacent form, first range) or `from_value − 1` (stepped form).
    _uppers: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)
    _cent_steps: tuple[tuple[Decimal, Decimal, Decimal, Decimal], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        steps = []
        before = _HALF
        with localcontext(ENGINE_CONTEXT):
            for index, r in enumerate(self.ranges):
                base = r.from_value - 1 if self.stepped and index else r.from_value
                per_unit, flat = r.per_unit_amount * _HUNDRED, r.flat_amount * _HUNDRED
                steps.append((base, per_unit, before, before + flat))
                if r.to_value is not None:  # validated: to_value > base, a whole range is ≠ 0
                    before += (r.to_value - base) * per_unit + flat
        uppers = tuple(r.to_value for r in self.ranges if r.to_value is not None)
        object.__setattr__(self, "_uppers", uppers)
        object.__setattr__(self, "_cent_steps", tuple(steps))

    def amount(self, units: Decimal, usage: Accumulator) -> Decimal:
        total = _ZERO
        for index, r in enumerate(self.ranges):
            if r.to_value is None or r.to_value >= units:
                top, last = units, True
            else:
                top, last = r.to_value, False
            in_range = top - r.from_value + (1 if self.stepped and index else 0)
            total += in_range * r.per_unit_amount
            if in_range:
                total += r.flat_amount
            if last:
                break
        return total

    def fee_cents(self, usage: Accumulator) -> int:
        units = usage.units()
        base, per_unit, before, before_and_flat = self._cent_steps[bisect_left(self._uppers, units)]
        # Only the first range can hold 0 units (the walk reaches a later one when units exceed
        # the previous to_value, which is its base); its total before is 0 (+ ½).
        scaled = before if units == base else before_and_flat + (units - base) * per_unit
        return scaled.__floor__() if scaled > _HALF else 0


@dataclass(frozen=True, slots=True)
class Volume(ChargeModel):
    """The first range with from_value ≤ ceil(units) and (open or units ≤ to_value) prices
    every unit: units × per_unit_amount + flat_amount. No range matches negative usage: 0."""

    ranges: tuple[Range, ...]

    def amount(self, units: Decimal, usage: Accumulator) -> Decimal:
        rounded_up = ceil(units)
        for r in self.ranges:
            if r.from_value <= rounded_up and (r.to_value is None or units <= r.to_value):
                return units * r.per_unit_amount + r.flat_amount
        return _ZERO


@dataclass(frozen=True, slots=True)
class Percentage(ChargeModel):
    """max(units − free, 0) × rate / 100 + paid_events × fixed_amount (spec §2).

    With free-units settings (N = free_units_per_events, X = free_units_per_total_aggregation)
    the events are taken in timestamp order with running totals r_1 … r_n (r_n = units).
    """

    rate: Decimal
    fixed_amount: Decimal
    free_units_per_events: int
    free_units_per_total_aggregation: Decimal
    _fraction: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        with localcontext(ENGINE_CONTEXT):
            object.__setattr__(self, "_fraction", self.rate.scaleb(-2))

    @property
    def needs_order(self) -> bool:
        return self.free_units_per_events > 0 or self.free_units_per_total_aggregation > 0

    def amount(self, units: Decimal, usage: Accumulator) -> Decimal:
        events = usage.count
        if not events:  # no running totals: 0 units, no paid event
            return _ZERO
        free, free_events = self._free(units, usage) if self.needs_order else (_ZERO, 0)
        paid_units = units - free
        amount = paid_units * self._fraction if paid_units > _ZERO else _ZERO
        if units and self.fixed_amount:
            paid_events = events - free_events
            if paid_events > 0:
                amount += paid_events * self.fixed_amount
        return amount

    def _free(self, units: Decimal, usage: Accumulator) -> tuple[Decimal, int]:
        """(free units, free events). The count of running totals below X only counts when X is
        set (> 0): X = 0 means "no total-aggregation allowance", as in the free-units rule."""
        per_events, per_total = self.free_units_per_events, self.free_units_per_total_aggregation
        if 0 < per_events < usage.count:
            free = usage.running_total_at(per_events)
        elif not per_total:
            free = units
        else:
            free = min(units, per_total)
        below = usage.count_running_below(per_total) if per_total else 0
        candidates = [n for n in (per_events, below) if n]
        return free, min(candidates) if candidates else 0


def parse_charge_model(
    charge_model: str, properties: Mapping[str, object], aggregation_type: str
) -> ChargeModel:
    """Validate a charge's model and properties; `ValueError` naming the faulty property.

    Keys a model does not use are ignored (as Lago's property filter does).
    """
    if not isinstance(properties, Mapping):
        raise ValueError(f"properties must be an object, got {type(properties).__name__}")
    if charge_model == "standard":
        return Standard(_non_negative(properties, "amount"))
    if charge_model == "package":
        return Package(
            _non_negative(properties, "amount"),
            _package_size(properties),
            _non_negative(properties, "free_units", default=True),
        )
    if charge_model == "graduated":
        ranges, stepped = _ranges(properties, "graduated_ranges")
        return Graduated(ranges, stepped)
    if charge_model == "volume":
        return Volume(_ranges(properties, "volume_ranges")[0])
    if charge_model == "percentage":
        if aggregation_type not in PERCENTAGE_AGGREGATIONS:
            raise ValueError(
                "charge_model percentage needs a sum_agg or count_agg metric, "
                f"not {aggregation_type}"
            )
        per_events = _non_negative(properties, "free_units_per_events", default=True)
        if per_events != per_events.to_integral_value():
            raise ValueError(f"free_units_per_events must be an integer, got {per_events}")
        return Percentage(
            _non_negative(properties, "rate"),
            _non_negative(properties, "fixed_amount", default=True),
            int(per_events),
            _non_negative(properties, "free_units_per_total_aggregation", default=True),
        )
    raise ValueError(
        f"unknown charge_model {charge_model!r} (expected one of {sorted(CHARGE_MODELS)})"
    )


def _non_negative(
    properties: Mapping[str, object], name: str, *, default: bool = False, where: str = ""
) -> Decimal:
    """A required (or, with `default`, optional: missing or null is 0) amount ≥ 0."""
    label = f"{where}{name}"
    value = properties.get(name)
    if value is None:
        if default:
            return _ZERO
        raise ValueError(f"{label} is required")
    number = parse_amount(value, label)
    if number < 0:
        raise ValueError(f"{label} must be ≥ 0, got {value!r}")
    if number >= _BOUND or number != number.quantize(_SMALLEST, context=ENGINE_CONTEXT):
        raise ValueError(
            f"{label} must be below 10^15 with at most {_MAX_DECIMALS} decimal places, "
            f"got {value!r}"
        )
    return number


def _package_size(properties: Mapping[str, object]) -> int:
    size = _non_negative(properties, "package_size")
    if size < 1 or size != size.to_integral_value():
        raise ValueError(f"package_size must be an integer ≥ 1, got {properties['package_size']!r}")
    return int(size)


def _ranges(properties: Mapping[str, object], name: str) -> tuple[tuple[Range, ...], bool]:
    """Ranges in order from 0, the last open, in the adjacent or the stepped form.

    Returns the ranges and whether the form is stepped (`from_value` = previous `to_value` + 1).
    Bounds are integers ≥ 0 and every bounded range has `to_value` > `from_value`.
    """
    raw = properties.get(name)
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"{name} must be a non-empty list of ranges")
    ranges = tuple(_range(item, f"{name}[{i}].") for i, item in enumerate(raw))
    if ranges[0].from_value != 0:
        raise ValueError(f"{name}[0].from_value must be 0, got {ranges[0].from_value}")
    stepped = False
    for i, (previous, current) in enumerate(pairwise(ranges), start=1):
        if previous.to_value is None:
            raise ValueError(f"{name}[{i - 1}].to_value: only the last range may be open")
        if current.from_value == previous.to_value and (i == 1 or not stepped):
            continue
        if current.from_value == previous.to_value + 1 and (i == 1 or stepped):
            stepped = True
            continue
        form = "stepped" if stepped else "adjacent"
        expected = previous.to_value + 1 if stepped else previous.to_value
        hint = f"{expected} ({form} form)" if i > 1 else f"{expected} or {expected + 1}"
        raise ValueError(
            f"{name}[{i}].from_value must be {hint}, got {current.from_value}: ranges must be in "
            "order and either adjacent (from = previous to) or stepped (from = previous to + 1)"
        )
    if ranges[-1].to_value is not None:
        raise ValueError(
            f"{name}[{len(ranges) - 1}].to_value must be null (the last range is open)"
        )
    return ranges, stepped


def _range(item: object, where: str) -> Range:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where[:-1]} must be an object")
    from_value = _bound(item, "from_value", where)
    to_value = None if item.get("to_value") is None else _bound(item, "to_value", where)
    if to_value is not None and to_value <= from_value:
        raise ValueError(f"{where}to_value must be greater than from_value, got {to_value}")
    return Range(
        from_value,
        to_value,
        _non_negative(item, "per_unit_amount", where=where),
        _non_negative(item, "flat_amount", where=where),
    )


def _bound(item: Mapping[str, object], name: str, where: str) -> Decimal:
    value = _non_negative(item, name, where=where)
    if value != value.to_integral_value():
        raise ValueError(f"{where}{name} must be an integer, got {item[name]!r}")
    return value
