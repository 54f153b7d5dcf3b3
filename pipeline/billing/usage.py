"""Usage in the open period: accumulate, price (C), check thresholds, issue progressive invoices.

This is the per-event path: only the charge of the event's metric is re-priced, and C is kept
as the running sum of the per-charge fees.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from pipeline.billing import ids, webhooks
from pipeline.billing.aggregation import Accumulator, OrderNotKept, new_accumulator
from pipeline.billing.alerting import evaluate_alerts
from pipeline.billing.catalog import Plan, applicable_thresholds
from pipeline.billing.context import StepContext
from pipeline.billing.invoices import (
    PROGRESSIVE,
    BillingPeriod,
    FeeLine,
    Invoice,
    ProgressiveRef,
    invoice_object,
    taxes_on,
    threshold_object,
)
from pipeline.billing.lifetime import remember_reached
from pipeline.billing.periods import local_date, to_datetime
from pipeline.billing.pricing import ChargeModel, Percentage, fee_cents
from pipeline.billing.subscription import SubscriptionState
from pipeline.billing.thresholds import crossed_thresholds, crossing_distance
from pipeline.billing.timestamps import iso

_NEVER = 1 << 62  # above any reachable usage in cents


def add_usage(
    sub: SubscriptionState,
    ctx: StepContext,
    code: str,
    value: Decimal | str | None,
    timestamp_us: int,
    seq: int,
) -> None:
    """Apply one accepted event to the open period; check thresholds if the plan charges it,
    then evaluate the subscription's alerts (spec §11)."""
    accumulator = sub.accumulators.get(code)
    if accumulator is None:
        metric = ctx.catalog.metrics[code]
        keep_order = code in ordered_metrics(ctx)
        accumulator = new_accumulator(metric.aggregation_type, keep_order)
        sub.accumulators[code] = accumulator
    accumulator.add(value, timestamp_us, seq)
    assert sub.definition is not None
    charge = ctx.catalog.plans[sub.definition.plan_code].charges_by_metric.get(code)
    if charge is None:
        ctx.uncharged += 1
    else:
        try:
            fee = charge.model.fee_cents(accumulator)
        except OrderNotKept:
            fee = charge_fee(charge.model, accumulator)
        sub.current += fee - sub.fees[code]
        sub.fees[code] = fee
        trigger = sub.trigger
        if trigger is None or sub.current >= trigger:
            check_thresholds(sub, ctx)
    if sub.alerts:
        evaluate_alerts(sub, ctx)


def ordered_metrics(ctx: StepContext) -> frozenset[str]:
    """Metrics some plan prices with percentage free units: they keep per-event order."""
    return frozenset(
        charge.billable_metric_code
        for plan in ctx.catalog.plans.values()
        for charge in plan.charges
        if charge.model.needs_order
    )


def reprice(sub: SubscriptionState, ctx: StepContext) -> None:
    """Price every charge of the current plan over the whole open period (C from scratch)."""
    plan = ctx.plan_of(sub)
    fees = {}
    for charge in plan.charges:
        code = charge.billable_metric_code
        accumulator = sub.accumulators.get(code) or _empty(ctx, code)
        fees[code] = charge_fee(charge.model, accumulator)
    sub.fees = fees
    sub.current = sum(fees.values())


def charge_fee(model: ChargeModel, accumulator: Accumulator) -> int:
    """The charge's fee. A period whose events were accumulated before a plan change asked for
    per-event order (percentage free units) has no order to give: it is priced without the
    free-units allowance, deterministically, and the next period keeps the order."""
    try:
        return fee_cents(model, accumulator)
    except OrderNotKept:
        assert isinstance(model, Percentage)
        return fee_cents(
            replace(model, free_units_per_events=0, free_units_per_total_aggregation=Decimal(0)),
            accumulator,
        )


def _empty(ctx: StepContext, code: str) -> Accumulator:
    return new_accumulator(ctx.catalog.metrics[code].aggregation_type)


def charge_lines(sub: SubscriptionState, plan: Plan) -> list[FeeLine]:
    """One line per charge, zeros included, for the open period."""
    lines = []
    for charge in plan.charges:
        code = charge.billable_metric_code
        accumulator = sub.accumulators.get(code)
        units = accumulator.units() if accumulator else Decimal(0)
        count = accumulator.count if accumulator else 0
        lines.append(FeeLine("charge", code, units, sub.fees.get(code, 0), count))
    return lines


def check_thresholds(sub: SubscriptionState, ctx: StepContext) -> None:
    """Spec §5 after an event or a change; one progressive invoice per check that crosses.

    Afterwards `sub.trigger` holds the C below which the next check cannot cross anything.
    """
    assert sub.definition is not None
    plan = ctx.plan_of(sub)
    thresholds = applicable_thresholds(sub.definition, plan)
    historical = sub.definition.historical_usage_amount_cents
    crossed = crossed_thresholds(thresholds, historical, sub.invoiced, sub.current, sub.progressed)
    if crossed:
        _issue_progressive(sub, ctx, plan, crossed, thresholds.applicable())
    distance = crossing_distance(thresholds, historical + sub.invoiced + sub.progressed)
    sub.trigger = _NEVER if distance is None else sub.progressed + distance


def _issue_progressive(
    sub: SubscriptionState,
    ctx: StepContext,
    plan: Plan,
    crossed: tuple[Any, ...],
    applicable: tuple[Any, ...],
) -> None:
    assert sub.period is not None and sub.definition is not None
    customer = ctx.customer_of(sub)
    sequential_id = sub.next_sequential_id()
    lago_id = ids.invoice_id(sub.lago_id, sequential_id)
    period = sub.period
    shown_end = to_datetime(period.end)
    subtotal = sub.current - sub.progressed
    lifetime = sub.definition.historical_usage_amount_cents + sub.invoiced + sub.current
    invoice = Invoice(
        lago_id=lago_id,
        sequential_id=sequential_id,
        invoice_type=PROGRESSIVE,
        currency=plan.amount_currency,
        issuing_date=local_date(ctx.now, customer.zone).isoformat(),
        fees=tuple(charge_lines(sub, plan)),
        credit_cents=sub.progressed,
        taxes_cents=taxes_on(subtotal, customer),
        billing_period=BillingPeriod(period.start, shown_end, period.start, shown_end, PROGRESSIVE),
        applied_thresholds=crossed,
        lifetime_usage_cents=lifetime,
    )
    sub.progressive = ProgressiveRef(lago_id, sequential_id, sub.current)
    parties = ctx.parties(sub)
    customer_id = parties.customer.external_id
    issued = invoice_object(invoice, parties)
    ctx.outputs.append(webhooks.invoice_created(issued, sub.external_id, customer_id))
    sub.issued(issued, ctx.now)
    sub.reached = remember_reached(sub.reached, crossed, lifetime, ctx.now_us)
    for index, threshold in enumerate(crossed):
        obj = subscription_object(sub, ctx)
        obj["usage_threshold"] = threshold_object(threshold)
        obj["applicable_usage_thresholds"] = [threshold_object(t) for t in applicable]
        ctx.outputs.append(webhooks.usage_threshold_reached(obj, lago_id, index))
    ctx.invoices += 1
    ctx.thresholds += len(crossed)


def subscription_object(sub: SubscriptionState, ctx: StepContext) -> dict[str, Any]:
    """Lago's subscription object (spec §7, §10) as of now."""
    assert sub.definition is not None and sub.subscription_at is not None
    plan = ctx.plan_of(sub)
    period = sub.period
    return {
        "lago_id": sub.lago_id,
        "external_id": sub.external_id,
        "lago_customer_id": ids.customer_id(sub.definition.external_customer_id),
        "external_customer_id": sub.definition.external_customer_id,
        "plan_code": plan.code,
        "plan_amount_cents": plan.amount_cents,
        "plan_amount_currency": plan.amount_currency,
        "name": plan.name,
        "status": sub.status,
        "billing_time": sub.definition.billing_time,
        "subscription_at": iso(sub.subscription_at),
        "started_at": iso(sub.subscription_at),
        "created_at": iso(sub.created_at or sub.subscription_at),
        "terminated_at": iso(sub.terminated_at) if sub.terminated_at else None,
        "canceled_at": None,
        "current_billing_period_started_at": iso(period.start) if period else None,
        "current_billing_period_ending_at": iso(to_datetime(period.end)) if period else None,
    }
