"""Usage alerts on a subscription (spec §11): define them, evaluate them, emit `alert.triggered`.

Evaluation reads values the engine already keeps (C, the per-charge fees, I, the accumulators)
and costs one truth test per event for a subscription without alerts (`if sub.alerts`, at the
call sites). With alerts, each evaluation is a value read and a comparison with the alert's
`next_value` (the smallest value that crosses something): the crossing arithmetic of
`alerts.crossed` runs only when something is crossed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pipeline.billing import ids, webhooks
from pipeline.billing.aggregation import Accumulator
from pipeline.billing.alerts import (
    CURRENT_PERIOD_TYPES,
    CURRENT_USAGE_AMOUNT,
    LIFETIME_USAGE_AMOUNT,
    METRIC_CURRENT_AMOUNT,
    METRIC_CURRENT_UNITS,
    AlertDefinition,
    AlertDeletion,
    AlertState,
    Value,
    check_alert,
    crossed,
    parse_alert,
)
from pipeline.billing.catalog import DefinitionError
from pipeline.billing.context import StepContext
from pipeline.billing.invoices import format_units
from pipeline.billing.subscription import ACTIVE, PENDING, SubscriptionState
from pipeline.billing.timestamps import iso

_ZERO = Decimal(0)


def alert_value(alert: AlertDefinition, sub: SubscriptionState) -> Value:
    """The value `alert` compares, as the subscription stands now."""
    kind = alert.alert_type
    if kind == CURRENT_USAGE_AMOUNT:
        return sub.current
    if kind == LIFETIME_USAGE_AMOUNT:
        assert sub.definition is not None
        return sub.definition.historical_usage_amount_cents + sub.invoiced + sub.current
    metric = alert.billable_metric_code or ""
    if kind == METRIC_CURRENT_AMOUNT:
        return sub.fees.get(metric, 0)
    accumulator = sub.accumulators.get(metric)
    units = accumulator.units() if accumulator is not None else _ZERO
    if kind == METRIC_CURRENT_UNITS:
        return units
    return sub.closed_units.get(metric, _ZERO) + units


def evaluate_alerts(sub: SubscriptionState, ctx: StepContext) -> None:
    """One evaluation of every alert of `sub`, in creation order (rules 1-4, then prev := cur);
    the evaluation's instant is the alert's `last_processed_at` (Lago sets it at each one)."""
    now_us = ctx.now_us
    for alert in sub.alerts.values():
        alert.processed_us = now_us
        cur = alert_value(alert.definition, sub)
        if cur >= alert.next_value:
            _trigger(sub, ctx, alert, cur)
            alert.restart(cur)
        elif cur < alert.prev:
            alert.restart(cur)
        else:
            alert.prev = cur


def period_opened(
    sub: SubscriptionState, ctx: StepContext, closed: Mapping[str, Accumulator]
) -> None:
    """A period closed and the next opened: bank the closed period's units for the lifetime
    types, restart the current-period types at 0, evaluate."""
    banked = sub.closed_units
    for code, accumulator in closed.items():
        banked[code] = banked.get(code, _ZERO) + accumulator.units()
    if not sub.alerts:
        return
    for alert in sub.alerts.values():
        if alert.definition.alert_type in CURRENT_PERIOD_TYPES:
            alert.restart(0)
    evaluate_alerts(sub, ctx)


def _trigger(sub: SubscriptionState, ctx: StepContext, alert: AlertState, cur: Value) -> None:
    definition, prev = alert.definition, alert.prev
    assert sub.definition is not None
    alert.triggers += 1
    triggered: dict[str, Any] = {
        "lago_alert_id": alert.lago_id,
        "alert_code": definition.code,
        "alert_name": definition.name,
        "alert_type": definition.alert_type,
        "external_subscription_id": sub.external_id,
        "external_customer_id": sub.definition.external_customer_id,
        "billable_metric_code": definition.billable_metric_code,
        "previous_value": format_value(prev),
        "current_value": format_value(cur),
        "crossed_thresholds": [
            {"code": threshold.code, "value": format_units(value), "recurring": threshold.recurring}
            for threshold, value in crossed(definition, prev, cur)
        ],
        "triggered_at": iso(ctx.now),
    }
    ctx.outputs.append(webhooks.alert_triggered(triggered, alert.lago_id, alert.triggers))
    ctx.counts["alerts_triggered"] += 1


def format_value(value: Value) -> str:
    """A value as a decimal string: cents as digits, units without exponent or trailing zeros."""
    return str(value) if isinstance(value, int) else format_units(value)


# -- alert records -------------------------------------------------------------------------------


def apply_alert(
    subscriptions: Mapping[str, SubscriptionState], payload: object, ctx: StepContext
) -> None:
    """An `alert` record: create, update (keeps `prev`) or delete one alert of a pending or
    active subscription. `DefinitionError` (nothing changes) when it is refused."""
    parsed = parse_alert(payload)
    sub = alerted_subscription(subscriptions, parsed)
    if isinstance(parsed, AlertDeletion):
        if sub.alerts.pop(parsed.code, None) is None:
            raise DefinitionError(
                f"alert {parsed.code!r}: subscription {sub.external_id!r} has no such alert"
            )
        ctx.touched.add(sub.external_id)
        return
    assert sub.definition is not None
    plan = ctx.catalog.plans.get(sub.definition.plan_code)
    check_alert(parsed, plan, {code: alert.definition for code, alert in sub.alerts.items()})
    known = sub.alerts.get(parsed.code)
    if known is not None:
        if known.definition == parsed:
            return
        sub.alerts[parsed.code] = AlertState(
            parsed, known.lago_id, known.prev, known.triggers, known.created_us, known.processed_us
        )
    else:
        sub.alert_serial += 1
        lago_id = ids.alert_id(sub.lago_id, parsed.code, sub.alert_serial)
        sub.alerts[parsed.code] = AlertState(parsed, lago_id, created_us=ctx.now_us)
    ctx.touched.add(sub.external_id)


def alerted_subscription(
    subscriptions: Mapping[str, SubscriptionState], parsed: AlertDefinition | AlertDeletion
) -> SubscriptionState:
    """The pending or active subscription an alert record names; `DefinitionError` if none."""
    sub = subscriptions.get(parsed.external_subscription_id)
    if sub is None or sub.status not in (PENDING, ACTIVE) or sub.definition is None:
        raise DefinitionError(
            f"alert {parsed.code!r}: no active subscription {parsed.external_subscription_id!r}"
        )
    return sub
