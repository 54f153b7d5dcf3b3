"""A subscription's life in periods (spec §3, §6): start, close, terminate.

Opening a period fixes its plan fee as the plan says at that moment; closing it issues the
period-close invoice, which deducts the period's latest progressive invoice (capped at the
invoice's charge fees, a credit note for the excess) and adds the charge fees to I.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.billing import ids, webhooks
from pipeline.billing.alerting import period_opened
from pipeline.billing.context import StepContext
from pipeline.billing.invoices import (
    SUBSCRIPTION,
    BillingPeriod,
    FeeLine,
    Invoice,
    ProgressiveRef,
    credit_note_object,
    invoice_object,
    taxes_on,
)
from pipeline.billing.money import ONE
from pipeline.billing.periods import (
    Period,
    first_period,
    first_period_billed_days,
    local_date,
    next_period,
    period_days,
    prorate_cents,
    termination_billed_days,
    to_datetime,
)
from pipeline.billing.rejections import Reason, Rejection
from pipeline.billing.subscription import ACTIVE, CANCELED, TERMINATED, SubscriptionState
from pipeline.billing.usage import add_usage, charge_lines, reprice

STARTING = "subscription_starting"
PERIODIC = "subscription_periodic"
TERMINATING = "subscription_terminating"


def activate(sub: SubscriptionState, ctx: StepContext) -> None:
    """The clock reached `subscription_at`: open the first period (its fee in advance, if so)."""
    assert sub.subscription_at is not None and sub.definition is not None
    plan = ctx.plan_of(sub)
    zone = ctx.customer_of(sub).zone
    sub.anchor = local_date(sub.subscription_at, zone)
    sub.status = ACTIVE
    period = first_period(sub.subscription_at, plan.interval, sub.definition.billing_time, zone)
    advance_fee = _open(sub, ctx, period)
    if advance_fee is not None:
        _emit_invoice(
            sub,
            ctx,
            fees=[advance_fee],
            charge_fees=0,
            reason=STARTING,
            charges=(period.start, to_datetime(period.end)),
            paid_for=(period.start, to_datetime(period.end)),
            issuing_at=sub.subscription_at,
        )
    _apply_held(sub, ctx, None)


def _open(sub: SubscriptionState, ctx: StepContext, period: Period) -> FeeLine | None:
    """Open `period`; returns its in-advance fee line, or keeps the in-arrears fee for its close."""
    plan = ctx.plan_of(sub)
    sub.reset_period(period)
    reprice(sub, ctx)
    if not plan.pay_in_advance:
        sub.period_fee_cents = plan.amount_cents  # pro-rated at the close, if it must be
        return None
    fee = plan.amount_cents
    if period.full_start != period.start:
        zone = ctx.customer_of(sub).zone
        fee = prorate_cents(fee, first_period_billed_days(period, zone), period_days(period, zone))
    return FeeLine("subscription", plan.code, ONE, fee)


def close_period(sub: SubscriptionState, ctx: StepContext) -> None:
    """The clock passed the open period's end (plus the allowed lateness): invoice it, open the
    next one, evaluate the alerts, and apply the events held for it."""
    assert sub.period is not None and sub.definition is not None and sub.anchor is not None
    closed = sub.period
    fees = _arrears_fee(sub, ctx, None)
    charges = charge_lines(sub, ctx.plan_of(sub))
    progressive, charge_fees = sub.progressive, sub.current
    closed_usage = sub.accumulators
    plan = ctx.plan_of(sub)
    zone = ctx.customer_of(sub).zone
    opened = next_period(closed, sub.anchor, plan.interval, sub.definition.billing_time, zone)
    sub.invoiced += charge_fees
    advance_fee = _open(sub, ctx, opened)
    paid_for = closed
    if advance_fee is not None:
        fees.append(advance_fee)
        paid_for = opened
    _emit_invoice(
        sub,
        ctx,
        fees=fees + charges,
        charge_fees=charge_fees,
        reason=PERIODIC,
        charges=(closed.start, to_datetime(closed.end)),
        paid_for=(paid_for.start, to_datetime(paid_for.end)),
        issuing_at=closed.end,
        progressive=progressive,
    )
    _prune_seen(sub, ctx)
    period_opened(sub, ctx, closed_usage)
    _apply_held(sub, ctx, None)


def terminate(sub: SubscriptionState, ctx: StepContext, at: datetime) -> None:
    """End the subscription at `at`: cancel it if it has not started, else invoice the open
    period up to `at` (spec §3)."""
    if sub.period is None:
        sub.status = CANCELED
        sub.terminated_at = at
        _reject_held(sub, ctx, None)
        return
    while sub.period.end < at:  # still open inside the allowed lateness
        close_period(sub, ctx)
    _reject_held(sub, ctx, at)
    period = sub.period
    fees = _arrears_fee(sub, ctx, at)
    charges = charge_lines(sub, ctx.plan_of(sub))
    progressive, charge_fees = sub.progressive, sub.current
    sub.invoiced += charge_fees
    sub.status = TERMINATED
    sub.terminated_at = at
    _emit_invoice(
        sub,
        ctx,
        fees=fees + charges,
        charge_fees=charge_fees,
        reason=TERMINATING,
        charges=(period.start, at),
        paid_for=(period.start, at),
        issuing_at=at,
        progressive=progressive,
    )
    sub.reset_period(None)


def _arrears_fee(sub: SubscriptionState, ctx: StepContext, at: datetime | None) -> list[FeeLine]:
    """The open period's in-arrears plan fee: pro-rated on a partial first period, and on a
    termination at `at` inside the period (nothing when `at` is the period's first instant)."""
    period, fee = sub.period, sub.period_fee_cents
    if fee is None or period is None:
        return []
    zone = ctx.customer_of(sub).zone
    if at is not None and at < period.end:
        if at <= period.start:
            return []
        fee = prorate_cents(
            fee, termination_billed_days(period, at, zone), period_days(period, zone)
        )
    elif period.full_start != period.start:
        fee = prorate_cents(fee, first_period_billed_days(period, zone), period_days(period, zone))
    return [FeeLine("subscription", ctx.plan_of(sub).code, ONE, fee)]


def _emit_invoice(
    sub: SubscriptionState,
    ctx: StepContext,
    *,
    fees: list[FeeLine],
    charge_fees: int,
    reason: str,
    charges: tuple[datetime, datetime],
    paid_for: tuple[datetime, datetime],
    issuing_at: datetime,
    progressive: ProgressiveRef | None = None,
) -> None:
    customer = ctx.customer_of(sub)
    credit = 0
    excess = 0
    if progressive is not None:
        credit = min(progressive.fees_cents, charge_fees)
        excess = progressive.fees_cents - credit
    sequential_id = sub.next_sequential_id()
    subtotal = sum(line.amount_cents for line in fees) - credit
    invoice = Invoice(
        lago_id=ids.invoice_id(sub.lago_id, sequential_id),
        sequential_id=sequential_id,
        invoice_type=SUBSCRIPTION,
        currency=ctx.plan_of(sub).amount_currency,
        issuing_date=local_date(issuing_at, customer.zone).isoformat(),
        fees=tuple(fees),
        credit_cents=credit,
        taxes_cents=taxes_on(subtotal, customer),
        billing_period=BillingPeriod(paid_for[0], paid_for[1], charges[0], charges[1], reason),
    )
    parties = ctx.parties(sub)
    customer_id = parties.customer.external_id
    obj = invoice_object(invoice, parties)
    ctx.outputs.append(webhooks.invoice_created(obj, sub.external_id, customer_id))
    sub.issued(obj, issuing_at)
    ctx.invoices += 1
    if excess > 0 and progressive is not None:
        note = credit_note_object(invoice, progressive, parties, excess, issuing_at)
        ctx.outputs.append(webhooks.credit_note_created(note, sub.external_id, customer_id))
        ctx.credit_notes += 1


def _apply_held(sub: SubscriptionState, ctx: StepContext, until: datetime | None) -> None:
    """Apply, in arrival order, the held events that fall in the open period."""
    period = sub.period
    if not sub.held or period is None:
        return
    due = [held for held in sub.held if held.timestamp < period.end]
    if not due:
        return
    sub.held = [held for held in sub.held if held.timestamp >= period.end]
    for held in due:
        add_usage(sub, ctx, held.code, held.value, held.timestamp_us, held.seq)


def _reject_held(sub: SubscriptionState, ctx: StepContext, at: datetime | None) -> None:
    """Held events after a termination can never be billed: each becomes an error."""
    keep = []
    for held in sub.held:
        if at is not None and held.timestamp <= at:
            keep.append(held)
            continue
        ctx.rejections.append(
            Rejection(
                Reason.UNKNOWN_SUBSCRIPTION,
                f"subscription {sub.external_id!r} ended before this event's period opened",
                f"held:{sub.lago_id}:{held.seq}",
                {"code": held.code, "timestamp": held.timestamp.isoformat()},
                sub.external_id,
            )
        )
    sub.held = keep


def _prune_seen(sub: SubscriptionState, ctx: StepContext) -> None:
    """Forget transaction ids older than the de-duplication window (on the pipeline clock)."""
    horizon = int((ctx.now - ctx.settings.dedupe_window).timestamp())
    if sub.seen and min(sub.seen.values()) < horizon:
        if ctx.settings.journal:
            sub.forgotten_ids.extend(tid for tid, at in sub.seen.items() if at < horizon)
        sub.seen = {tid: at for tid, at in sub.seen.items() if at >= horizon}
