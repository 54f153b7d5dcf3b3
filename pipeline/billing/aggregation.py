"""Per-metric accumulators for one billing period (spec §2).

One accumulator per (open period, billable metric), owned by one subscription's state. They are
small mutable objects with `__slots__` because `add` runs once per accepted event; the state
that outlives a step is the JSON-ready list of `to_state`, rebuilt with `accumulator_from_state`.

Values arrive already validated: a `Decimal` from `money.parse_number` for sum, max and latest, a
key from `unique_key` for unique_count, `None` for count. Ordering uses `(timestamp_us, seq)`,
`seq` being the strictly increasing arrival number within the subscription.

Percentage charges with free-units settings need the events in timestamp order: create their
accumulator with `keep_order=True` (count_agg and sum_agg only) to get `ordered_increments`,
`running_total_at` and `count_running_below`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, ClassVar

from pipeline.billing.money import ENGINE_CONTEXT, NotANumber, ceil

AGGREGATION_TYPES = frozenset({"count_agg", "sum_agg", "max_agg", "unique_count_agg", "latest_agg"})
ORDERED_AGGREGATION_TYPES = frozenset({"count_agg", "sum_agg"})

_ZERO = Decimal(0)
_ONE = Decimal(1)


class InvalidUniqueValue(NotANumber):
    """A unique_count value that is neither a string nor a number (spec §2: `invalid`)."""


class OrderNotKept(Exception):
    """Ordered values were asked of an accumulator created without `keep_order=True`."""


class Accumulator:
    """The aggregated usage of one metric in one period; `count` is the number of events added."""

    __slots__ = ("count",)
    aggregation_type: ClassVar[str] = ""
    keeps_order: ClassVar[bool] = False

    def __init__(self) -> None:
        self.count = 0

    def add(self, value: Decimal | str | None, timestamp_us: int, seq: int) -> None:
        raise NotImplementedError

    def units(self) -> Decimal:
        """The aggregated value; `Decimal(0)` when no event was added."""
        raise NotImplementedError

    def mark(self) -> Any:
        """What `undo` needs to take back the next `add` (O(1): the per-event path calls it)."""
        raise NotImplementedError

    def undo(self, mark: Any, value: Any, timestamp_us: int, seq: int) -> None:
        """Back to the state `mark` was taken in, whether the `add` that followed it (with these
        arguments) completed or not: containment of an unexpected error (engine.py)."""
        raise NotImplementedError

    def to_state(self) -> list[object]:
        """A compact JSON-ready form (Decimals as strings); the caller versions it."""
        raise NotImplementedError

    def ordered_increments(self) -> list[Decimal]:
        """Each event's contribution (1 for count, the value for sum), by (timestamp, arrival)."""
        raise self._order_not_kept()

    def running_total_at(self, k: int) -> Decimal:
        """r_k: the sum of the first `k` ordered increments (1 ≤ k ≤ count)."""
        raise self._order_not_kept()

    def count_running_below(self, limit: Decimal) -> int:
        """How many running totals r_1 … r_n are strictly below `limit`."""
        raise self._order_not_kept()

    def _order_not_kept(self) -> OrderNotKept:
        return OrderNotKept(
            f"{self.aggregation_type} accumulator was created without keep_order=True; "
            "ordered values are only kept for percentage charges with free units"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.to_state()!r}>"


class CountAccumulator(Accumulator):
    __slots__ = ("_units",)
    aggregation_type = "count_agg"

    def __init__(self) -> None:
        self.count = 0
        self._units = _ZERO  # the count as a Decimal: cheaper to keep than to convert per fee

    def add(self, value: Any, timestamp_us: int, seq: int) -> None:
        self.count += 1
        self._units += _ONE

    def units(self) -> Decimal:
        return self._units

    def mark(self) -> Any:
        return self._units  # count == int(_units)

    def undo(self, mark: Any, value: Any, timestamp_us: int, seq: int) -> None:
        self._units = mark
        self.count = int(mark)

    def to_state(self) -> list[object]:
        return [self.count]


class OrderedCountAccumulator(CountAccumulator):
    """Every event is worth 1, so the order needs no storage: r_k = k."""

    __slots__ = ()
    keeps_order = True

    def to_state(self) -> list[object]:
        return [self.count, 1]

    def ordered_increments(self) -> list[Decimal]:
        return [_ONE] * self.count

    def running_total_at(self, k: int) -> Decimal:
        _check_rank(k, self.count)
        return Decimal(k)

    def count_running_below(self, limit: Decimal) -> int:
        # r_k = k for k in 1..n: those with k < limit are 1 … ceil(limit) − 1.
        if limit <= _ONE:
            return 0
        below = int(ceil(limit)) - 1
        return below if below < self.count else self.count


class SumAccumulator(Accumulator):
    __slots__ = ("total",)
    aggregation_type = "sum_agg"

    def __init__(self) -> None:
        self.count = 0
        self.total = _ZERO

    def add(self, value: Any, timestamp_us: int, seq: int) -> None:
        self.count += 1
        self.total += value

    def units(self) -> Decimal:
        return self.total

    def mark(self) -> Any:
        return (self.count, self.total)

    def undo(self, mark: Any, value: Any, timestamp_us: int, seq: int) -> None:
        self.count, self.total = mark

    def to_state(self) -> list[object]:
        return [self.count, str(self.total)]


class OrderedSumAccumulator(SumAccumulator):
    """Keeps every event's (timestamp, seq) key, value and running total, in key order.

    Events mostly arrive in order, so `add` appends; a late arrival is inserted and the running
    totals after it recomputed. `count_running_below` bisects while no value is negative (the
    running totals are then non-decreasing) and scans otherwise.
    """

    __slots__ = ("_keys", "_negatives", "_running", "_values")
    keeps_order = True

    def __init__(self) -> None:
        super().__init__()
        self._keys: list[tuple[int, int]] = []
        self._values: list[Decimal] = []
        self._running: list[Decimal] = []
        self._negatives = 0

    def add(self, value: Any, timestamp_us: int, seq: int) -> None:
        self.count += 1
        self.total += value
        if value < _ZERO:
            self._negatives += 1
        key = (timestamp_us, seq)
        keys = self._keys
        if not keys or key > keys[-1]:
            keys.append(key)
            self._values.append(value)
            running = self._running
            running.append(running[-1] + value if running else value)
            return
        at = bisect_right(keys, key)
        keys.insert(at, key)
        self._values.insert(at, value)
        self._running.insert(at, value)
        self._recompute_running(at)

    def mark(self) -> Any:
        return (self.count, self.total, self._negatives, len(self._keys))

    def undo(self, mark: Any, value: Any, timestamp_us: int, seq: int) -> None:
        self.count, self.total, self._negatives, length = mark
        keys, values, running = self._keys, self._values, self._running
        at = bisect_left(keys, (timestamp_us, seq))
        if len(keys) > length and at < len(keys) and keys[at] == (timestamp_us, seq):
            del keys[at]
        for items in (values, running):  # an add cut short may have reached either list
            if len(items) > len(keys):
                del items[at]
        self._recompute_running(min(at, len(values)))

    def _recompute_running(self, start: int) -> None:
        running, values = self._running, self._values
        total = running[start - 1] if start else _ZERO
        for i in range(start, len(values)):
            total += values[i]
            running[i] = total

    def to_state(self) -> list[object]:
        entries = [[ts, seq, str(v)] for (ts, seq), v in zip(self._keys, self._values, strict=True)]
        return [self.count, str(self.total), entries]

    def ordered_increments(self) -> list[Decimal]:
        return list(self._values)

    def running_total_at(self, k: int) -> Decimal:
        _check_rank(k, self.count)
        return self._running[k - 1]

    def count_running_below(self, limit: Decimal) -> int:
        if not self._negatives:
            return bisect_left(self._running, limit)
        return sum(1 for total in self._running if total < limit)


class MaxAccumulator(Accumulator):
    __slots__ = ("maximum",)
    aggregation_type = "max_agg"

    def __init__(self) -> None:
        self.count = 0
        self.maximum: Decimal | None = None

    def add(self, value: Any, timestamp_us: int, seq: int) -> None:
        self.count += 1
        maximum = self.maximum
        if maximum is None or value > maximum:
            self.maximum = value

    def units(self) -> Decimal:
        return _ZERO if self.maximum is None else self.maximum

    def mark(self) -> Any:
        return (self.count, self.maximum)

    def undo(self, mark: Any, value: Any, timestamp_us: int, seq: int) -> None:
        self.count, self.maximum = mark

    def to_state(self) -> list[object]:
        return [self.count, None if self.maximum is None else str(self.maximum)]


class LatestAccumulator(Accumulator):
    """The value of the event with the greatest (timestamp, seq): ties go to the later arrival."""

    __slots__ = ("seq", "timestamp_us", "value")
    aggregation_type = "latest_agg"

    def __init__(self) -> None:
        self.count = 0
        self.value: Decimal | None = None
        self.timestamp_us = 0
        self.seq = 0

    def add(self, value: Any, timestamp_us: int, seq: int) -> None:
        self.count += 1
        if (
            self.value is None
            or timestamp_us > self.timestamp_us
            or (timestamp_us == self.timestamp_us and seq > self.seq)
        ):
            self.value = value
            self.timestamp_us = timestamp_us
            self.seq = seq

    def units(self) -> Decimal:
        return _ZERO if self.value is None else self.value

    def mark(self) -> Any:
        return (self.count, self.value, self.timestamp_us, self.seq)

    def undo(self, mark: Any, value: Any, timestamp_us: int, seq: int) -> None:
        self.count, self.value, self.timestamp_us, self.seq = mark

    def to_state(self) -> list[object]:
        value = None if self.value is None else str(self.value)
        return [self.count, value, self.timestamp_us, self.seq]


class UniqueCountAccumulator(Accumulator):
    __slots__ = ("keys",)
    aggregation_type = "unique_count_agg"

    def __init__(self) -> None:
        self.count = 0
        self.keys: set[str] = set()

    def add(self, value: Any, timestamp_us: int, seq: int) -> None:
        self.count += 1
        self.keys.add(value)

    def units(self) -> Decimal:
        return Decimal(len(self.keys))

    def mark(self) -> Any:
        return (self.count, len(self.keys))

    def undo(self, mark: Any, value: Any, timestamp_us: int, seq: int) -> None:
        self.count, size = mark
        if len(self.keys) > size:
            self.keys.discard(value)

    def to_state(self) -> list[object]:
        return [self.count, sorted(self.keys)]


_PLAIN: dict[str, type[Accumulator]] = {
    "count_agg": CountAccumulator,
    "sum_agg": SumAccumulator,
    "max_agg": MaxAccumulator,
    "unique_count_agg": UniqueCountAccumulator,
    "latest_agg": LatestAccumulator,
}
_ORDERED: dict[str, type[Accumulator]] = {
    "count_agg": OrderedCountAccumulator,
    "sum_agg": OrderedSumAccumulator,
}


def new_accumulator(aggregation_type: str, keep_order: bool = False) -> Accumulator:
    """An empty accumulator; `keep_order` (count_agg and sum_agg only) keeps ordered values."""
    if aggregation_type not in _PLAIN:
        raise ValueError(f"unknown aggregation_type {aggregation_type!r}")
    if not keep_order:
        return _PLAIN[aggregation_type]()
    if aggregation_type not in _ORDERED:
        raise ValueError(f"keep_order applies to count_agg and sum_agg, not {aggregation_type}")
    return _ORDERED[aggregation_type]()


def accumulator_from_state(aggregation_type: str, state: list[object]) -> Accumulator:
    """The accumulator that `to_state` described; `ValueError` if `state` is not such a list."""
    try:
        return _from_state(aggregation_type, state)
    except (TypeError, ValueError, InvalidOperation, IndexError) as exc:
        raise ValueError(f"corrupt {aggregation_type} accumulator state {state!r}: {exc}") from exc


def _from_state(aggregation_type: str, state: list[object]) -> Accumulator:
    if not isinstance(state, list) or not state:
        raise ValueError("expected a non-empty list")
    count = _int(state[0])
    if aggregation_type == "count_agg":
        ordered = len(state) == 2 and state[1] == 1
    else:
        ordered = aggregation_type == "sum_agg" and len(state) == 3
    acc = new_accumulator(aggregation_type, keep_order=ordered)
    if isinstance(acc, OrderedSumAccumulator):
        _restore_ordered_sum(acc, state)
    elif isinstance(acc, SumAccumulator):
        _expect_length(state, 2)
        acc.total = _decimal(state[1])
    elif isinstance(acc, MaxAccumulator):
        _expect_length(state, 2)
        acc.maximum = None if state[1] is None else _decimal(state[1])
    elif isinstance(acc, LatestAccumulator):
        _expect_length(state, 4)
        acc.value = None if state[1] is None else _decimal(state[1])
        acc.timestamp_us, acc.seq = _int(state[2]), _int(state[3])
    elif isinstance(acc, UniqueCountAccumulator):
        _expect_length(state, 2)
        keys = state[1]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("unique keys must be a list of strings")
        acc.keys = set(keys)
    elif isinstance(acc, CountAccumulator):
        _expect_length(state, 2 if ordered else 1)
        acc._units = Decimal(count)
    acc.count = count
    return acc


def _restore_ordered_sum(acc: OrderedSumAccumulator, state: list[object]) -> None:
    _expect_length(state, 3)
    entries = state[2]
    if not isinstance(entries, list):
        raise ValueError("ordered entries must be a list")
    with localcontext(ENGINE_CONTEXT):
        for entry in entries:
            if not isinstance(entry, list) or len(entry) != 3:
                raise ValueError(f"bad ordered entry {entry!r}")
            acc.add(_decimal(entry[2]), _int(entry[0]), _int(entry[1]))
    if acc.count != state[0]:
        raise ValueError(f"count {state[0]!r} but {acc.count} ordered entries")
    acc.total = _decimal(state[1])


def _expect_length(state: list[object], length: int) -> None:
    if len(state) != length:
        raise ValueError(f"expected {length} items, got {len(state)}")


def _int(item: object) -> int:
    if isinstance(item, bool) or not isinstance(item, int):
        raise ValueError(f"expected an integer, got {item!r}")
    return item


def _decimal(item: object) -> Decimal:
    if not isinstance(item, str):
        raise ValueError(f"expected a decimal string, got {item!r}")
    value = Decimal(item)
    if not value.is_finite():
        raise ValueError(f"expected a finite decimal, got {item!r}")
    return value


def _check_rank(k: int, count: int) -> None:
    if not 1 <= k <= count:
        raise IndexError(f"running total r_{k} does not exist with {count} events")


def unique_key(value: object) -> str:
    """The normalized key of a unique_count value (spec §2).

    Numbers and numeric strings compare by value (`1`, `1.0`, `"1"`, `"1e0"` give one key, and
    so do `0` and `-0`, `10` and `"1E+1"`); any other string compares exactly. Booleans, null,
    lists, objects, NaN and infinite floats raise `InvalidUniqueValue`.
    """
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return "s:" + value
        return "n:" + _canonical(number) if number.is_finite() else "s:" + value
    if isinstance(value, bool) or value is None:
        raise InvalidUniqueValue(f"expected a string or a number, got {value!r}")
    if isinstance(value, int):
        return "n:" + _canonical(Decimal(value))
    if isinstance(value, (float, Decimal)):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        if not number.is_finite():
            raise InvalidUniqueValue(f"expected a finite number, got {value!r}")
        return "n:" + _canonical(number)
    raise InvalidUniqueValue(f"expected a string or a number, got {type(value).__name__}")


def _canonical(number: Decimal) -> str:
    """An exact, context-free canonical form: the significant digits without trailing zeros,
    `e` and the exponent (`1.50` → `15e-1`, both `1E+1` and `10` → `1e1`, every zero → `0`)."""
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite numbers only
    text = "".join(map(str, digits))
    significant = text.rstrip("0")
    if not significant:
        return "0"
    exponent += len(text) - len(significant)
    return ("-" if sign else "") + significant.lstrip("0") + "e" + str(exponent)
