"""Usage alerts (spec §11): definitions, their validation, and which thresholds a move crosses.

An alert watches one value of a subscription (its open period's usage, one metric's fee or
units, lifetime usage) and is told, at each evaluation, the value then (`cur`) and the value at
its previous evaluation (`prev`). Everything here is pure arithmetic on those two numbers; where
the values come from and when they are evaluated is `alerting.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any

from pipeline.billing.catalog import DefinitionError, Plan
from pipeline.billing.ids import text_id
from pipeline.billing.money import ENGINE_CONTEXT, NotANumber, parse_amount, parse_number

CURRENT_USAGE_AMOUNT = "current_usage_amount"
METRIC_CURRENT_AMOUNT = "billable_metric_current_usage_amount"
METRIC_CURRENT_UNITS = "billable_metric_current_usage_units"
LIFETIME_USAGE_AMOUNT = "lifetime_usage_amount"
METRIC_LIFETIME_UNITS = "billable_metric_lifetime_usage_units"

ALERT_TYPES = frozenset(
    {
        CURRENT_USAGE_AMOUNT,
        METRIC_CURRENT_AMOUNT,
        METRIC_CURRENT_UNITS,
        LIFETIME_USAGE_AMOUNT,
        METRIC_LIFETIME_UNITS,
    }
)
_TYPE_NAMES = {name: name for name in ALERT_TYPES}  # the module's own strings (interned)
METRIC_TYPES = frozenset({METRIC_CURRENT_AMOUNT, METRIC_CURRENT_UNITS, METRIC_LIFETIME_UNITS})
"""Types that watch one billable metric (which the subscription's plan must charge)."""
AMOUNT_TYPES = frozenset({CURRENT_USAGE_AMOUNT, METRIC_CURRENT_AMOUNT, LIFETIME_USAGE_AMOUNT})
"""Types whose value is integer cents."""
CURRENT_PERIOD_TYPES = frozenset(
    {CURRENT_USAGE_AMOUNT, METRIC_CURRENT_AMOUNT, METRIC_CURRENT_UNITS}
)
"""Types whose value belongs to the open period: `prev` restarts at 0 when a period opens."""

MAX_THRESHOLDS = 20
MAX_RECURRING_STEPS = 1000  # at most the highest 1,000 recurring steps per evaluation
_ZERO = Decimal(0)
_NEVER = Decimal("1e30")  # above any value an alert can see (bounds of spec §2)
_NEVER_CENTS = 1 << 100

Value = int | Decimal
"""An alert's value: integer cents for the amount types, a `Decimal` for units."""


@dataclass(frozen=True, slots=True)
class AlertThreshold:
    code: str | None
    value: Decimal
    recurring: bool


@dataclass(frozen=True, slots=True)
class AlertDefinition:
    external_subscription_id: str
    code: str
    name: str | None
    alert_type: str
    billable_metric_code: str | None
    one_time: tuple[AlertThreshold, ...]  # ascending by value
    recurring: AlertThreshold | None

    @property
    def thresholds(self) -> tuple[AlertThreshold, ...]:
        """One-time ascending, then the recurring one."""
        return self.one_time + ((self.recurring,) if self.recurring else ())

    @property
    def base(self) -> Decimal:
        """Where the recurring steps are counted from: the largest one-time value, or 0."""
        return self.one_time[-1].value if self.one_time else _ZERO


@dataclass(frozen=True, slots=True)
class AlertDeletion:
    external_subscription_id: str
    code: str


class AlertState:
    """One alert of a subscription: its definition, `prev`, what it has emitted, and the
    instants (µs) Lago's alert object shows: its creation (None in a state stored before it was
    kept) and its latest evaluation (None: not evaluated yet)."""

    __slots__ = (
        "created_us",
        "definition",
        "lago_id",
        "next_value",
        "prev",
        "processed_us",
        "triggers",
    )

    def __init__(
        self,
        definition: AlertDefinition,
        lago_id: str,
        prev: Value = 0,
        triggers: int = 0,
        created_us: int | None = None,
        processed_us: int | None = None,
    ) -> None:
        self.definition = definition
        self.lago_id = lago_id
        self.triggers = triggers  # alert.triggered webhooks so far (part of their ids)
        self.created_us = created_us
        self.processed_us = processed_us
        self.prev: Value = prev
        # Derived, not stored: the smallest value above `prev` that crosses a threshold; for
        # values in cents its ceiling, an `int` (the per-event comparison is then int to int).
        self.next_value: Value = self._next(prev)

    def restart(self, prev: Value) -> None:
        self.prev = prev
        self.next_value = self._next(prev)

    def _next(self, prev: Value) -> Value:
        value = next_crossing(self.definition, prev)
        if self.definition.alert_type not in AMOUNT_TYPES:
            return value
        return _NEVER_CENTS if value >= _NEVER else int(value.to_integral_value(ROUND_CEILING))


# -- crossing (spec §11 rules 1-3) ---------------------------------------------------------------


def next_crossing(alert: AlertDefinition, prev: Value) -> Decimal:
    """The smallest value `cur` for which an evaluation from `prev` crosses something."""
    for threshold in alert.one_time:
        if threshold.value > prev:
            best = threshold.value
            break
    else:
        best = _NEVER
    step = alert.recurring.value if alert.recurring else None
    if step is not None:
        base = alert.base
        k = 1 if prev < base else int((prev - base) // step) + 1
        best = min(best, base + k * step)
    return best


def crossed(
    alert: AlertDefinition, prev: Value, cur: Value
) -> list[tuple[AlertThreshold, Decimal]]:
    """Rules 1-3: the thresholds crossed moving from `prev` to `cur`, ascending, each with the
    value it was crossed at (a recurring step's own value)."""
    if cur <= prev:
        return []
    one_time = alert.one_time
    if one_time and cur < one_time[0].value:
        return []
    hits = [(t, t.value) for t in one_time if prev < t.value <= cur]
    recurring = alert.recurring
    if recurring is not None:
        step, base = recurring.value, alert.base
        first = 1 if prev < base else int((prev - base) // step) + 1
        last = int((cur - base) // step) if cur >= base else 0
        first = max(first, last - MAX_RECURRING_STEPS + 1)
        hits.extend((recurring, base + k * step) for k in range(first, last + 1))
    return hits


# -- definitions ---------------------------------------------------------------------------------


def parse_alert(obj: object) -> AlertDefinition | AlertDeletion:
    """A timeline `alert` object (spec §11): a definition, or `{..., "deleted": true}`.

    Checks the rules that need nothing but the object; `check_alert` checks it against its
    subscription. `DefinitionError` for anything refused."""
    if not isinstance(obj, Mapping):
        raise DefinitionError(f"alert must be an object, got {type(obj).__name__}")
    subscription = _id(obj, "external_subscription_id", "alert")
    code = _id(obj, "code", f"alert on {subscription!r}")
    what = f"alert {code!r} of subscription {subscription!r}"
    deleted = obj.get("deleted", False)
    if deleted is True:
        return AlertDeletion(subscription, code)
    if deleted is not False and deleted is not None:
        raise DefinitionError(f"{what}: deleted must be true or false, got {deleted!r}")
    given = obj.get("alert_type")
    alert_type = _TYPE_NAMES.get(given) if isinstance(given, str) else None
    if alert_type is None:
        raise DefinitionError(
            f"{what}: alert_type must be one of {sorted(ALERT_TYPES)}, got {given!r}"
        )
    metric = obj.get("billable_metric_code")
    metric_code = text_id(metric) if metric is not None else None
    if metric is not None and metric_code is None:
        raise DefinitionError(f"{what}: billable_metric_code must be a non-empty string")
    if (alert_type in METRIC_TYPES) != (metric_code is not None):
        need = "needs" if alert_type in METRIC_TYPES else "must not name"
        raise DefinitionError(f"{what}: an alert of type {alert_type} {need} a billable metric")
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        raise DefinitionError(f"{what}: name must be a string, got {name!r}")
    one_time, recurring = _thresholds(obj.get("thresholds"), what)
    return AlertDefinition(subscription, code, name, alert_type, metric_code, one_time, recurring)


def check_alert(
    alert: AlertDefinition, plan: Plan | None, others: Mapping[str, AlertDefinition]
) -> None:
    """The rules that need the subscription: its plan charges the metric a metric type names
    (`plan` None: not known here), and at most one alert per (alert_type, metric) among
    `others` (the subscription's other alerts, by code)."""
    what = f"alert {alert.code!r} of subscription {alert.external_subscription_id!r}"
    metric = alert.billable_metric_code
    if plan is not None and metric is not None and metric not in plan.charges_by_metric:
        raise DefinitionError(f"{what}: plan {plan.code!r} does not charge {metric!r}")
    for other in others.values():
        if other.code == alert.code:
            continue
        if (other.alert_type, other.billable_metric_code) == (alert.alert_type, metric):
            raise DefinitionError(
                f"{what}: alert {other.code!r} already watches {alert.alert_type}"
                + (f" of {metric!r}" if metric else "")
            )


def _id(obj: Mapping[str, object], key: str, what: str) -> str:
    text = text_id(obj.get(key))
    if text is None:
        raise DefinitionError(f"{what}: {key} must be a non-empty string, got {obj.get(key)!r}")
    return text


def _thresholds(
    value: object, what: str
) -> tuple[tuple[AlertThreshold, ...], AlertThreshold | None]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_THRESHOLDS:
        raise DefinitionError(f"{what}: thresholds must be a list of 1 to {MAX_THRESHOLDS}")
    parsed = [_threshold(item, what) for item in value]
    values = [t.value for t in parsed]
    if len(set(values)) != len(values):
        raise DefinitionError(f"{what}: two thresholds with the same value")
    recurring = [t for t in parsed if t.recurring]
    if len(recurring) > 1:
        raise DefinitionError(f"{what}: at most one recurring threshold")
    one_time = sorted((t for t in parsed if not t.recurring), key=lambda t: t.value)
    return tuple(one_time), recurring[0] if recurring else None


def _threshold(item: object, what: str) -> AlertThreshold:
    if not isinstance(item, Mapping):
        raise DefinitionError(f"{what}: a threshold must be an object")
    try:
        raw = item.get("value")
        parse_amount(raw, "threshold value")  # a decimal string (or an integer), nothing else
        value = parse_number(raw)  # within the bounds of spec §2
    except (ValueError, NotANumber) as error:
        raise DefinitionError(f"{what}: {error}") from None
    if value <= 0:
        raise DefinitionError(f"{what}: threshold value must be > 0, got {item.get('value')!r}")
    code = item.get("code")
    if code is not None and not isinstance(code, str):
        raise DefinitionError(f"{what}: threshold code must be a string, got {code!r}")
    recurring = item.get("recurring", False)
    if recurring is None:
        recurring = False
    if not isinstance(recurring, bool):
        raise DefinitionError(f"{what}: recurring must be true or false, got {recurring!r}")
    return AlertThreshold(code, value, recurring)


# -- stored state (inside the subscription's, see state.py) -------------------------------------


def dump_alert(alert: AlertState) -> list[object]:
    definition = alert.definition
    return [
        alert.lago_id,
        definition.code,
        definition.name,
        definition.alert_type,
        definition.billable_metric_code,
        [[t.code, str(t.value), t.recurring] for t in definition.thresholds],
        str(alert.prev),
        alert.triggers,
        alert.created_us,
        alert.processed_us,
    ]


def load_alert(external_subscription_id: str, items: list[Any]) -> AlertState:
    """An alert as `dump_alert` stored it (one stored before the instants were kept has 8
    items: they load as None)."""
    lago_id, code, name, alert_type, metric, thresholds, prev, triggers = items[:8]
    created_us, processed_us = items[8:10] if len(items) >= 10 else (None, None)
    parsed = [AlertThreshold(c, Decimal(v), bool(r)) for c, v, r in thresholds]
    one_time = tuple(t for t in parsed if not t.recurring)
    recurring = next((t for t in parsed if t.recurring), None)
    definition = AlertDefinition(
        external_subscription_id,
        code,
        name,
        _TYPE_NAMES[alert_type],
        metric,
        one_time,
        recurring,
    )
    with localcontext(ENGINE_CONTEXT):  # loading runs outside a ledger's run
        return AlertState(definition, lago_id, _value(prev), triggers, created_us, processed_us)


def _value(text: str) -> Value:
    """A stored value: digits are cents (an `int`), anything else a `Decimal`."""
    return int(text) if text.lstrip("-").isdigit() else Decimal(text)
