"""The one way billing state changes: `Ledger.step(record) -> Transition`.

A ledger holds the clock, the catalog and the subscriptions of one stream of records (the whole
timeline for `tollgate replay`, one partition in the live worker). Each record first moves the
clock, which closes due periods in (end, external id) order, and is then applied (spec §3).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import localcontext
from typing import Any

from pipeline.billing import catalog as defs
from pipeline.billing import webhooks
from pipeline.billing.catalog import Catalog, DefinitionError
from pipeline.billing.context import EngineSettings, StepContext
from pipeline.billing.events import (
    EventShapeError,
    UsageEvent,
    event_subscription_id,
    metric_value,
    read_event,
)
from pipeline.billing.ids import text_id
from pipeline.billing.lifecycle import activate, close_period, terminate
from pipeline.billing.money import ENGINE_CONTEXT, NotANumber
from pipeline.billing.rejections import Reason, Rejection
from pipeline.billing.subscription import (
    ACTIVE,
    CANCELED,
    PENDING,
    TERMINATED,
    HeldEvent,
    SubscriptionState,
)
from pipeline.billing.timestamps import EPOCH, micros
from pipeline.billing.usage import add_usage, check_thresholds, reprice

RECORD_KINDS = frozenset(
    {
        "billable_metric",
        "plan",
        "customer",
        "subscription",
        "terminate_subscription",
        "event",
        "tick",
    }
)


@dataclass(frozen=True, slots=True)
class Record:
    """One input. `payload`: the definition or event object; the external id for a termination;
    raw text for an event the shell could not decode (`error` says why)."""

    at: datetime
    kind: str
    payload: Any = None  # Any, not object: see rejections.Rejection
    ref: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    outputs: tuple[webhooks.Output, ...]
    rejections: tuple[Rejection, ...]
    counts: Mapping[str, int]
    touched: frozenset[str]  # external subscription ids whose state changed
    defined: frozenset[tuple[str, str]]  # (record kind, code or external id) of new definitions


class Ledger:
    """Clearly-owned mutable state; `step` is its only mutator."""

    def __init__(self, settings: EngineSettings | None = None, catalog: Catalog | None = None):
        self.settings = settings or EngineSettings()
        self.catalog = catalog or Catalog()
        self.clock: datetime | None = None
        self.subscriptions: dict[str, SubscriptionState] = {}
        self._due: list[tuple[datetime, str]] = []
        self._window_s = self.settings.dedupe_window.total_seconds()
        self._journal = self.settings.journal
        self._max_future_us = micros(EPOCH + self.settings.max_future)

    # -- the transition ------------------------------------------------------------------------

    def step(self, record: Record) -> Transition:
        return self.run((record,))

    def run(self, records: Iterable[Record]) -> Transition:
        """Apply `records` in order (a micro-batch); outputs are in emission order. Every record
        is applied and every event checked exactly as if stepped one at a time."""
        ctx = StepContext(self.clock or EPOCH, self.catalog, self.settings)
        with localcontext(ENGINE_CONTEXT):
            for record in records:
                self._step(record, ctx)
        return Transition(
            tuple(ctx.outputs),
            tuple(ctx.rejections),
            ctx.totals(),
            frozenset(ctx.touched),
            frozenset(ctx.defined),
        )

    def _step(self, record: Record, ctx: StepContext) -> None:
        at, clock = record.at, self.clock
        now = at if clock is None or at > clock else clock
        if now is not ctx.now:
            ctx.now = now
            ctx.now_us = micros(now)
        if self._due and self._due[0][0] <= now:
            self._advance(ctx, self._termination_boundary(record, now))
        self.clock = now
        if record.kind == "event":
            self._apply_event(record, ctx)
        elif record.kind != "tick":
            self._apply_change(record, ctx)

    @classmethod
    def restore(
        cls,
        settings: EngineSettings | None,
        clock: datetime | None,
        catalog: Catalog,
        subscriptions: Iterable[SubscriptionState],
    ) -> Ledger:
        """A ledger continuing from stored state (the live worker after a restart)."""
        ledger = cls(settings, catalog)
        ledger.clock = clock
        for sub in subscriptions:
            ledger.adopt(sub)
        return ledger

    def adopt(self, sub: SubscriptionState) -> None:
        """Take over a restored subscription state (the live worker after a restart)."""
        self.subscriptions[sub.external_id] = sub
        self._schedule(sub)

    # -- the clock -------------------------------------------------------------------------------

    def _due_time(self, sub: SubscriptionState) -> datetime | None:
        if sub.status == PENDING:
            return sub.subscription_at
        if sub.status == ACTIVE and sub.period is not None:
            return sub.period.end + self.settings.allowed_lateness
        return None

    def _schedule(self, sub: SubscriptionState) -> None:
        due = self._due_time(sub)
        if due is not None:
            heapq.heappush(self._due, (due, sub.external_id))

    def _advance(self, ctx: StepContext, held_back: tuple[str, datetime] | None) -> None:
        """Activate and close everything due by `ctx.now`, in (due time, external id) order."""
        while self._due and self._due[0][0] <= ctx.now:
            due, external_id = heapq.heappop(self._due)
            sub = self.subscriptions[external_id]
            if self._due_time(sub) != due:
                continue  # superseded entry
            if sub.status == PENDING:
                activate(sub, ctx)
            elif held_back and held_back == (external_id, sub.period.end if sub.period else None):
                continue  # this boundary's close is the termination's invoice
            else:
                close_period(sub, ctx)
            ctx.touched.add(external_id)
            self._schedule(sub)

    def _termination_boundary(self, record: Record, now: datetime) -> tuple[str, datetime] | None:
        """A termination exactly at a period's end turns that close into the terminating one."""
        if record.kind != "terminate_subscription":
            return None
        sub = self.subscriptions.get(_text_id(record.payload) or "")
        if sub is None or sub.status != ACTIVE or sub.period is None or sub.period.end != now:
            return None
        return (sub.external_id, now)

    # -- applying records ------------------------------------------------------------------------

    def _apply_change(self, record: Record, ctx: StepContext) -> None:
        try:
            self._apply_definition(record, ctx)
        except DefinitionError as error:
            ctx.rejections.append(
                Rejection(Reason.INVALID_DEFINITION, str(error), record.ref, record.payload)
            )

    def _apply_definition(self, record: Record, ctx: StepContext) -> None:
        if record.kind == "terminate_subscription":
            self._apply_termination(record.payload, ctx)
            return
        new, old = defs.apply_definition(self.catalog, record.kind, record.payload, ctx.now)
        if isinstance(new, defs.SubscriptionDefinition):
            self._apply_subscription(new, ctx)
        elif isinstance(new, defs.Plan):
            self._apply_plan(new, old if isinstance(old, defs.Plan) else None, ctx)
        elif isinstance(new, defs.BillableMetric):
            ctx.defined.add(("billable_metric", new.code))
        else:
            ctx.defined.add(("customer", new.external_id))

    def _apply_plan(self, plan: defs.Plan, old: defs.Plan | None, ctx: StepContext) -> None:
        if old == plan:
            return
        ctx.defined.add(("plan", plan.code))
        if old is None:
            return
        charges_changed = old.charges != plan.charges
        if not charges_changed and old.thresholds == plan.thresholds:
            return  # fee, interval or advance: from the next period on
        for external_id in sorted(self.subscriptions):
            sub = self.subscriptions[external_id]
            if sub.status != ACTIVE or sub.definition is None:
                continue
            if sub.definition.plan_code != plan.code:
                continue
            if charges_changed:
                reprice(sub, ctx)
            check_thresholds(sub, ctx)
            ctx.touched.add(external_id)

    def _apply_subscription(
        self, definition: defs.SubscriptionDefinition, ctx: StepContext
    ) -> None:
        sub = self.subscriptions.get(definition.external_id)
        if sub is not None and sub.status in (PENDING, ACTIVE):
            self._update_subscription(sub, definition, ctx)
            return
        if sub is None:
            sub = SubscriptionState(definition.external_id)
            self.subscriptions[sub.external_id] = sub
        sub.begin(definition, definition.subscription_at or ctx.now, ctx.now)
        ctx.touched.add(sub.external_id)
        self._schedule(sub)
        self._advance(ctx, None)  # a subscription that started in the past catches up at once

    def _update_subscription(
        self, sub: SubscriptionState, definition: defs.SubscriptionDefinition, ctx: StepContext
    ) -> None:
        old = sub.definition
        assert old is not None
        if definition.subscription_at is None or definition.subscription_at == sub.subscription_at:
            definition = replace(definition, subscription_at=old.subscription_at)
        for field in ("billing_time", "subscription_at", "external_customer_id"):
            if getattr(definition, field) != getattr(old, field):
                raise DefinitionError(f"subscription {sub.external_id!r}: {field} cannot change")
        if definition == old:
            return
        sub.definition = definition
        ctx.touched.add(sub.external_id)
        if sub.status != ACTIVE:
            return
        if definition.plan_code != old.plan_code:
            reprice(sub, ctx)
        check_thresholds(sub, ctx)

    def _apply_termination(self, payload: object, ctx: StepContext) -> None:
        external_id = _text_id(payload)
        sub = self.subscriptions.get(external_id or "")
        if sub is None or sub.status not in (PENDING, ACTIVE):
            raise DefinitionError(f"no active subscription {external_id!r} to terminate")
        earlier = len(ctx.rejections)
        terminate(sub, ctx, ctx.now)
        for rejection in ctx.rejections[earlier:]:  # held events that can never be billed
            self._report_event_error(rejection, ctx)
        ctx.touched.add(sub.external_id)

    # -- events ----------------------------------------------------------------------------------

    def _apply_event(self, record: Record, ctx: StepContext) -> None:
        payload = record.payload
        if record.error is not None or (
            type(payload) is not dict and not isinstance(payload, Mapping)
        ):
            message = record.error or "the event is not a JSON object"
            self._reject(ctx, Reason.MALFORMED, message, record, None)
            return
        try:
            event = read_event(payload)
        except EventShapeError as error:
            subscription = event_subscription_id(payload)
            self._reject(ctx, Reason.INVALID, str(error), record, subscription)
            return
        reason, message = self._place_event(event, ctx)
        if reason is not None:
            self._reject(ctx, reason, message, record, event[1])

    def _place_event(self, event: UsageEvent, ctx: StepContext) -> tuple[Reason | None, str]:
        """Spec §8's checks in order; accepts (applies or holds) the event when all pass.

        The per-event path: instants are compared as integer microseconds.
        """
        transaction_id, subscription_id, code, stamp, properties = event
        sub = self.subscriptions.get(subscription_id)
        if sub is None:
            return Reason.UNKNOWN_SUBSCRIPTION, "no such subscription"
        now_us = ctx.now_us
        timestamp_us = now_us if stamp is None else micros(stamp)
        now_s = now_us // 1_000_000
        first_seen = sub.seen.get(transaction_id)
        if first_seen is not None and now_s - first_seen < self._window_s:
            ctx.duplicates += 1
            return None, ""
        status = sub.status
        if status != ACTIVE and status != PENDING:
            ended = sub.terminated_at
            if status == CANCELED or (ended is not None and timestamp_us > micros(ended)):
                return Reason.UNKNOWN_SUBSCRIPTION, f"subscription is {status}"
        metric = self.catalog.metrics.get(code)
        if metric is None:
            return Reason.UNKNOWN_METRIC, f"no billable metric {code!r}"
        try:
            value = metric_value(metric, properties)
        except NotANumber as error:
            return Reason.INVALID, str(error)
        if timestamp_us > now_us + self._max_future_us:
            return Reason.INVALID, "timestamp is more than 24 hours ahead of the clock"
        if timestamp_us < sub.since_us:
            return Reason.BEFORE_SUBSCRIPTION_START, "timestamp before subscription_at"
        period = sub.period
        if status == TERMINATED or (period is not None and timestamp_us < sub.start_us):
            return Reason.LATE_EVENT, "the event's billing period is already closed"
        sub.seen[transaction_id] = now_s
        if self._journal:
            sub.accepted_ids.append(transaction_id)
        seq = sub.seq = sub.seq + 1
        ctx.touched.add(sub.external_id)
        ctx.accepted += 1
        if period is None or timestamp_us >= sub.end_us:
            timestamp = ctx.now if stamp is None else stamp
            sub.held.append(HeldEvent(timestamp, timestamp_us, seq, code, value))
        else:
            add_usage(sub, ctx, code, value, timestamp_us, seq)
        return None, ""

    def _reject(
        self,
        ctx: StepContext,
        reason: Reason,
        message: str,
        record: Record,
        subscription: str | None,
    ) -> None:
        rejection = Rejection(reason, message, record.ref, record.payload, subscription)
        ctx.rejections.append(rejection)
        self._report_event_error(rejection, ctx)

    @staticmethod
    def _report_event_error(rejection: Rejection, ctx: StepContext) -> None:
        ctx.counts[f"rejected.{rejection.reason.value}"] += 1
        ctx.outputs.append(
            webhooks.event_error(
                rejection.reason.value,
                rejection.message,
                _plain(rejection.payload),
                rejection.ref,
                rejection.external_subscription_id,
            )
        )


def _text_id(value: object) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("external_id")
    return text_id(value)


def _plain(payload: object) -> object:
    """The input as far as it decoded (bytes as text) for an `event.error` body."""
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    return payload
