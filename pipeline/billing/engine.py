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
from decimal import Decimal, localcontext
from typing import Any

from pipeline.billing import catalog as defs
from pipeline.billing import webhooks
from pipeline.billing.access import overdue_at_us, report_changes
from pipeline.billing.alerting import apply_alert, evaluate_alerts
from pipeline.billing.catalog import Catalog, DefinitionError, applicable_thresholds
from pipeline.billing.context import EngineSettings, StepContext
from pipeline.billing.entitlements import PAYMENT_STATUSES, payment_status_problem
from pipeline.billing.events import (
    EventShapeError,
    UsageEvent,
    event_subscription_id,
    metric_value,
    read_event,
)
from pipeline.billing.ids import text_id
from pipeline.billing.invoices import with_payment_status
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
        "alert",
        "feature",
        "invoice_payment",
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
    """Clearly-owned mutable state; `step` is its only mutator.

    Containment: an unexpected exception while applying one record (a bug, not bad input) is
    caught, what the record changed is undone, and the record is reported with reason
    `internal_error` (a definition: `invalid_definition`); every other record is billed. The
    per-event path pays for this with a few local variables: it undoes its own changes (the
    accumulator's `mark`/`undo`). Rare steps (definitions, terminations, period closes) clone
    each subscription before changing it (`_Undo`, `_advance`).
    """

    def __init__(self, settings: EngineSettings | None = None, catalog: Catalog | None = None):
        self.settings = settings or EngineSettings()
        self.catalog = catalog or Catalog()
        self.clock: datetime | None = None
        self.subscriptions: dict[str, SubscriptionState] = {}
        self._due: list[tuple[datetime, str]] = []
        self._window_s = self.settings.dedupe_window.total_seconds()
        self._journal = self.settings.journal
        self._max_future_us = micros(EPOCH + self.settings.max_future)
        self._undo: _Undo | None = None  # while a definition applies: what it changed
        # Subscriptions whose start or close raised: left as they were, not retried by this
        # ledger (a restart, i.e. a new ledger, tries again).
        self.quarantined: set[str] = set()
        # Spec §12: when unpaid invoices become overdue, (µs, external id), a heap, and its keys.
        self._overdue: list[tuple[int, str]] = []
        self._overdue_keys: set[tuple[int, str]] = set()

    # -- the transition ------------------------------------------------------------------------

    def step(self, record: Record) -> Transition:
        return self.run((record,))

    def run(self, records: Iterable[Record]) -> Transition:
        """Apply `records` in order (a micro-batch); outputs are in emission order. Every record
        is applied and every event checked exactly as if stepped one at a time."""
        ctx = StepContext(self.clock or EPOCH, self.catalog, self.settings)
        with localcontext(ENGINE_CONTEXT):
            for record in records:
                watch = bool(self.catalog.features)  # access decisions to follow (spec §12)
                outer = ctx.touched
                if watch:
                    ctx.touched = set()
                try:
                    self._step(record, ctx)
                except Exception as error:  # a bug met before this record changed anything
                    self._contain(record, ctx, error)
                if watch:
                    mine = ctx.touched
                    ctx.touched = outer
                    outer |= mine
                    self._report_access(record, mine, ctx)
                elif record.kind == "feature" and self.catalog.features:
                    self._report_access(record, set(self.subscriptions), ctx)
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
        elif record.kind == "invoice_payment":
            self._apply_payment(record, ctx)
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
        self._schedule_overdue(sub, micros(self.clock or EPOCH))

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
        """Activate and close everything due by `ctx.now`, in (due time, external id) order.

        A close that raises is undone and that subscription is left as it was, unscheduled (its
        later events are held, not lost) and reported `internal_error`; the others go on. A
        restart schedules it again."""
        while self._due and self._due[0][0] <= ctx.now:
            due, external_id = heapq.heappop(self._due)
            sub = self.subscriptions.get(external_id)
            if sub is None or self._due_time(sub) != due or external_id in self.quarantined:
                continue  # superseded entry, or a subscription left as it was
            if sub.status != PENDING and held_back == (
                external_id,
                sub.period.end if sub.period else None,
            ):
                continue  # this boundary's close is the termination's invoice
            self._save(sub)
            before, mark = sub.clone(), _CtxMark(ctx)
            try:
                if sub.status == PENDING:
                    activate(sub, ctx)
                else:
                    close_period(sub, ctx)
            except Exception as error:
                mark.restore(ctx)
                self.subscriptions[external_id] = before
                self.quarantined.add(external_id)
                what = "starting" if before.status == PENDING else "closing the period of"
                ctx.rejections.append(
                    Rejection(
                        Reason.INTERNAL_ERROR,
                        f"{what} subscription {external_id!r}, due {due.isoformat()}: "
                        f"{describe_error(error)}; it stays as it was until the next start",
                        "",
                        {"external_subscription_id": external_id, "due": due.isoformat()},
                        external_id,
                    )
                )
                ctx.counts[f"rejected.{Reason.INTERNAL_ERROR.value}"] += 1
                continue
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
        """A definition or termination applies whole or not at all: what it changed is undone
        if it raises (refused, or a bug met on the way: both `invalid_definition`)."""
        undo = self._undo = _Undo(ctx)
        try:
            self._apply_definition(record, ctx)
        except Exception as error:
            self._rollback(undo, ctx)
            message = (
                str(error)
                if isinstance(error, DefinitionError)
                else f"internal error while applying this definition: {describe_error(error)}"
            )
            ctx.rejections.append(
                Rejection(Reason.INVALID_DEFINITION, brief(message), record.ref, record.payload)
            )
        finally:
            self._undo = None

    def _save(self, sub: SubscriptionState) -> None:
        """Keep `sub` as it is, for `_rollback`, before a definition first changes it."""
        undo = self._undo
        if undo is not None and sub.external_id not in undo.subscriptions:
            undo.subscriptions[sub.external_id] = sub.clone()
            if sub.external_id not in undo.ctx.touched:
                undo.untouched.append(sub.external_id)

    def _save_entry(self, kind: str, key: str, old: object) -> None:
        """Keep the catalogue entry (None: absent) a definition replaced, for `_rollback`."""
        undo = self._undo
        if undo is None:
            return
        undo.entries.append((kind, key, old))
        if (kind, key) not in undo.ctx.defined:
            undo.undefined.append((kind, key))

    def _rollback(self, undo: _Undo, ctx: StepContext) -> None:
        undo.mark.restore(ctx)
        for external_id in undo.untouched:
            ctx.touched.discard(external_id)
        for entry in undo.undefined:
            ctx.defined.discard(entry)
        catalog = self.catalog
        for kind, key, old in reversed(undo.entries):
            if kind == "billable_metric":
                _put(catalog.metrics, key, old)
            elif kind == "plan":
                _put(catalog.plans, key, old)
            elif kind == "feature":
                _put(catalog.features, key, old)
            else:
                _put(catalog.customers, key, old)
        for external_id, before in undo.subscriptions.items():
            if before is None:
                self.subscriptions.pop(external_id, None)
            else:
                self.subscriptions[external_id] = before
                self._schedule(before)

    def _apply_definition(self, record: Record, ctx: StepContext) -> None:
        if record.kind == "terminate_subscription":
            self._apply_termination(record.payload, ctx)
            return
        if record.kind == "alert":
            apply_alert(self.subscriptions, record.payload, ctx)
            return
        if record.kind == "feature":
            self._apply_feature(record.payload, ctx)
            return
        new, old = defs.apply_definition(self.catalog, record.kind, record.payload, ctx.now)
        if isinstance(new, defs.SubscriptionDefinition):
            self._apply_subscription(new, ctx)
            return
        key = new.external_id if isinstance(new, defs.Customer) else new.code
        self._save_entry(record.kind, key, old)
        if isinstance(new, defs.Plan):
            self._apply_plan(new, old if isinstance(old, defs.Plan) else None, ctx)
        elif isinstance(new, defs.BillableMetric):
            ctx.defined.add(("billable_metric", new.code))
        elif isinstance(new, defs.Customer):
            ctx.defined.add(("customer", new.external_id))

    def _apply_feature(self, payload: object, ctx: StepContext) -> None:
        """A feature defined, replaced or deleted (spec §12)."""
        key = text_id(payload.get("code")) if isinstance(payload, Mapping) else None
        prior = self.catalog.features.get(key or "")
        entitling = [p for p in self.catalog.plans.values() if defs.plan_entitles(p, key or "")]
        defs.apply_definition(self.catalog, "feature", payload, ctx.now)
        assert key is not None  # a feature without a code is refused above
        self._save_entry("feature", key, prior)
        for plan in entitling:
            if self.catalog.plans[plan.code] is not plan:  # the deleted feature taken out
                self._save_entry("plan", plan.code, plan)
                ctx.defined.add(("plan", plan.code))
        ctx.defined.add(("feature", key))  # a deletion too: stored as one (state.py)

    # -- payments and access (spec §12) ----------------------------------------------------------

    def _apply_payment(self, record: Record, ctx: StepContext) -> None:
        """An `invoice_payment`: a change of an unpaid invoice's payment status."""
        payload = record.payload
        if not isinstance(payload, Mapping):
            self._reject(ctx, Reason.INVALID, "the payment is not a JSON object", record, None)
            return
        external_id = text_id(payload.get("external_subscription_id"))
        invoice_id = text_id(payload.get("lago_invoice_id"))
        raw_status = payload.get("payment_status")
        status = raw_status if isinstance(raw_status, str) else ""
        sub = self.subscriptions.get(external_id or "")
        unpaid = sub.unpaid.get(invoice_id or "") if sub is not None else None
        if status not in PAYMENT_STATUSES:
            message = payment_status_problem(raw_status)
        elif sub is None or unpaid is None:
            message = f"no unpaid invoice {invoice_id!r} of subscription {external_id!r}"
        else:
            message = ""
        if sub is None or unpaid is None or message:
            self._reject(ctx, Reason.INVALID, message, record, external_id)
            return
        if status == unpaid.status:
            return  # the current status again: nothing to say
        changed = replace(unpaid, status=status, changes=unpaid.changes + 1)
        body = with_payment_status(unpaid.invoice, status)
        ctx.outputs.append(
            webhooks.webhook(
                "invoice.payment_status_updated",
                "invoice",
                body,
                body["lago_id"],
                changed.changes,
                external_subscription_id=sub.external_id,
                external_customer_id=body["customer"]["external_id"],
            )
        )
        if status == "succeeded":
            del sub.unpaid[body["lago_id"]]  # settled: no longer remembered
        else:
            sub.unpaid[body["lago_id"]] = changed
        ctx.counts["payments"] += 1
        ctx.touched.add(sub.external_id)

    def _schedule_overdue(self, sub: SubscriptionState, now_us: int) -> None:
        """Remember when each unpaid invoice of `sub` becomes overdue (once per instant)."""
        for unpaid in sub.unpaid.values():
            due = overdue_at_us(sub, unpaid)
            if due is not None and due > now_us:
                key = (due, sub.external_id)
                if key not in self._overdue_keys:
                    self._overdue_keys.add(key)
                    heapq.heappush(self._overdue, key)

    def _report_access(self, record: Record, touched: set[str], ctx: StepContext) -> None:
        """After a record: `subscription.access_changed` for the pairs whose decision changed,
        subscriptions in external id order (spec §12). A definition re-evaluates everyone."""
        if record.kind in ("feature", "plan"):
            touched = set(self.subscriptions)
        now_us = ctx.now_us
        overdue = self._overdue
        while overdue and overdue[0][0] <= now_us:
            key = heapq.heappop(overdue)
            self._overdue_keys.discard(key)
            touched.add(key[1])
        for external_id in sorted(touched):
            sub = self.subscriptions.get(external_id)
            if sub is None:
                continue
            n_outputs, access, changes = len(ctx.outputs), dict(sub.access), sub.access_changes
            try:
                report_changes(sub, ctx)
                self._schedule_overdue(sub, now_us)
            except Exception as failure:  # a bug: this subscription's decisions stay as they were
                del ctx.outputs[n_outputs:]
                sub.access, sub.access_changes = access, changes
                ctx.rejections.append(
                    Rejection(
                        Reason.INTERNAL_ERROR,
                        brief(f"access decisions of {external_id!r}: {describe_error(failure)}"),
                        record.ref,
                        None,
                        external_id,
                    )
                )
                ctx.counts[f"rejected.{Reason.INTERNAL_ERROR.value}"] += 1

    def _apply_plan(self, plan: defs.Plan, old: defs.Plan | None, ctx: StepContext) -> None:
        if old == plan:
            return
        ctx.defined.add(("plan", plan.code))
        if old is None:
            return
        charges_changed = old.charges != plan.charges
        for external_id in sorted(self.subscriptions):
            sub = self.subscriptions[external_id]
            if sub.status != ACTIVE or sub.definition is None:
                continue
            if sub.definition.plan_code != plan.code:
                continue
            checked = charges_changed or applicable_thresholds(
                sub.definition, old
            ) != applicable_thresholds(sub.definition, plan)
            if not (checked or sub.alerts):
                continue  # nothing that applies to this subscription changed (spec §3)
            self._save(sub)
            if charges_changed:
                reprice(sub, ctx)
            if checked:
                check_thresholds(sub, ctx)
            if sub.alerts:
                evaluate_alerts(sub, ctx)
            ctx.touched.add(external_id)

    def _apply_subscription(
        self, definition: defs.SubscriptionDefinition, ctx: StepContext
    ) -> None:
        sub = self.subscriptions.get(definition.external_id)
        if sub is not None:
            self._save(sub)
        elif self._undo is not None:
            self._undo.subscriptions[definition.external_id] = None  # absent before
            self._undo.untouched.append(definition.external_id)
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
        if sub.status == ACTIVE:
            if definition.plan_code != old.plan_code:
                reprice(sub, ctx)
            check_thresholds(sub, ctx)
        if sub.alerts:
            evaluate_alerts(sub, ctx)

    def _apply_termination(self, payload: object, ctx: StepContext) -> None:
        external_id = _text_id(payload)
        sub = self.subscriptions.get(external_id or "")
        if sub is None or sub.status not in (PENDING, ACTIVE):
            raise DefinitionError(f"no active subscription {external_id!r} to terminate")
        self._save(sub)
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
        # Accepted. What follows changes the state; if it raises, `_undo_event` takes it back
        # from these locals (no copy: this runs once per event).
        held = period is None or timestamp_us >= sub.end_us
        accumulator = None if held else sub.accumulators.get(code)
        mark = None if accumulator is None else accumulator.mark()
        seq = sub.seq
        current, trigger, fee = sub.current, sub.trigger, sub.fees.get(code)
        invoices, progressive, reached = sub.invoices, sub.progressive, sub.reached
        n_held, n_ids, n_unpaid = len(sub.held), len(sub.accepted_ids), len(sub.unpaid)
        n_outputs, ctx_counts = len(ctx.outputs), (ctx.invoices, ctx.thresholds, ctx.uncharged)
        try:
            sub.seen[transaction_id] = now_s
            if self._journal:
                sub.accepted_ids.append(transaction_id)
            sub.seq = seq + 1
            if held:
                timestamp = ctx.now if stamp is None else stamp
                sub.held.append(HeldEvent(timestamp, timestamp_us, seq + 1, code, value))
            else:
                add_usage(sub, ctx, code, value, timestamp_us, seq + 1)
        except Exception as failure:  # not `error`: mypyc types a name once per function
            if accumulator is not None:
                accumulator.undo(mark, value, timestamp_us, seq + 1)
            elif not held:
                sub.accumulators.pop(code, None)  # made for this event
            _put(sub.fees, code, fee)
            _put(sub.seen, transaction_id, first_seen)
            del sub.held[n_held:]
            del sub.accepted_ids[n_ids:]
            while len(sub.unpaid) > n_unpaid:
                sub.unpaid.popitem()  # issued by this event
            sub.seq, sub.current, sub.trigger = seq, current, trigger
            sub.invoices, sub.progressive, sub.reached = invoices, progressive, reached
            del ctx.outputs[n_outputs:]
            ctx.invoices, ctx.thresholds, ctx.uncharged = ctx_counts
            return Reason.INTERNAL_ERROR, internal_error_message(failure)
        ctx.touched.add(sub.external_id)
        ctx.accepted += 1
        return None, ""

    def _contain(self, record: Record, ctx: StepContext, error: Exception) -> None:
        """A record that raised before it changed anything (the per-event checks, or a step
        that undid its own changes): reported, and billing goes on."""
        message = internal_error_message(error)
        if record.kind != "event":
            ctx.rejections.append(
                Rejection(Reason.INTERNAL_ERROR, message, record.ref, record.payload)
            )
            ctx.counts[f"rejected.{Reason.INTERNAL_ERROR.value}"] += 1
            return
        payload = record.payload
        subscription = None
        if isinstance(payload, Mapping):
            try:
                subscription = event_subscription_id(payload)
            except Exception:
                subscription = None
        self._reject(ctx, Reason.INTERNAL_ERROR, message, record, subscription)

    def _reject(
        self,
        ctx: StepContext,
        reason: Reason,
        message: str,
        record: Record,
        subscription: str | None,
    ) -> None:
        rejection = Rejection(reason, brief(message), record.ref, record.payload, subscription)
        self._report_event_error(rejection, ctx)

    @staticmethod
    def _report_event_error(rejection: Rejection, ctx: StepContext) -> None:
        """The rejection (a dead letter) and its `event.error` body, both or neither."""
        args = (rejection.reason.value, rejection.message, rejection.ref)
        subscription = rejection.external_subscription_id
        try:
            output = webhooks.event_error(
                args[0], args[1], _plain(rejection.payload), args[2], subscription
            )
        except Exception:  # a payload the body cannot hold: the dead letter keeps the bytes
            output = webhooks.event_error(args[0], args[1], None, args[2], subscription)
        ctx.rejections.append(rejection)
        ctx.outputs.append(output)
        ctx.counts[f"rejected.{rejection.reason.value}"] += 1


class _CtxMark:
    """What a run had emitted and counted at one point, to return to it. O(1) but for the few
    named counters: `touched` and `defined` are put right by `_rollback` (a close adds nothing
    to them before it succeeds)."""

    def __init__(self, ctx: StepContext) -> None:
        self.outputs = len(ctx.outputs)
        self.rejections = len(ctx.rejections)
        self.counts = dict(ctx.counts)
        self.ints = (
            ctx.accepted,
            ctx.duplicates,
            ctx.uncharged,
            ctx.invoices,
            ctx.thresholds,
            ctx.credit_notes,
        )

    def restore(self, ctx: StepContext) -> None:
        del ctx.outputs[self.outputs :]
        del ctx.rejections[self.rejections :]
        ctx.counts.clear()
        ctx.counts.update(self.counts)
        (
            ctx.accepted,
            ctx.duplicates,
            ctx.uncharged,
            ctx.invoices,
            ctx.thresholds,
            ctx.credit_notes,
        ) = self.ints


class _Undo:
    """What one definition changed, as it was before: subscriptions (None: absent) and
    catalogue entries (kind, key, old value or None)."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.mark = _CtxMark(ctx)
        self.subscriptions: dict[str, SubscriptionState | None] = {}
        self.entries: list[tuple[str, str, Any]] = []
        self.untouched: list[str] = []  # saved ids the run had not touched before
        self.undefined: list[tuple[str, str]] = []  # saved entries it had not defined before


def _put(mapping: dict[str, Any], key: str, value: object) -> None:
    """`mapping[key] = value`, or remove the key when `value` is None."""
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def describe_error(error: BaseException) -> str:
    """`Type: message` of an unexpected exception, kept short."""
    try:
        text = str(error)
    except Exception:
        text = "(no message)"
    if len(text) > 500:
        text = text[:500] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def internal_error_message(error: BaseException) -> str:
    return f"internal error while applying this record: {describe_error(error)}"


def _text_id(value: object) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("external_id")
    return text_id(value)


def _plain(payload: object, depth: int = 0) -> object:
    """The input as far as it decoded, as strict JSON can carry it, for an `event.error` body:
    bytes as text, NaN and infinities as their text, nesting cut at `_BODY_DEPTH` levels (the
    body's own levels included, a reader refuses deeper JSON), any other value as its text."""
    if payload is None or isinstance(payload, (str, bool, int)):
        return payload
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    if isinstance(payload, Decimal):
        return payload if payload.is_finite() else str(payload)
    if isinstance(payload, float):
        return payload if payload == payload and abs(payload) != _INFINITY else repr(payload)
    if depth >= _BODY_DEPTH:
        return "…"
    if isinstance(payload, Mapping):
        return {str(key): _plain(value, depth + 1) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [_plain(value, depth + 1) for value in payload]
    return str(payload)


_BODY_DEPTH = 56
_INFINITY = float("inf")
_MESSAGE_CHARS = 1000


def brief(message: str) -> str:
    """A rejection's message, cut to a readable length (a hostile value may be huge)."""
    return message if len(message) <= _MESSAGE_CHARS else message[: _MESSAGE_CHARS - 1] + "…"
