"""The state of one subscription (one external id): its period, usage and what it has billed.

Mutable, and owned by exactly one ledger: the per-event path cannot afford to copy it. Shells
persist it through `state.py` after each batch; a state is never shared between ledgers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pipeline.billing.aggregation import Accumulator, accumulator_from_state
from pipeline.billing.alerts import AlertState
from pipeline.billing.catalog import SubscriptionDefinition
from pipeline.billing.ids import subscription_id
from pipeline.billing.invoices import ProgressiveRef
from pipeline.billing.lifetime import Reached
from pipeline.billing.periods import Period
from pipeline.billing.timestamps import micros

PENDING = "pending"
ACTIVE = "active"
TERMINATED = "terminated"
CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """An accepted event for a period that has not opened yet; applied when it opens."""

    timestamp: datetime
    timestamp_us: int
    seq: int
    code: str
    value: Decimal | str | None


@dataclass(frozen=True, slots=True)
class UnpaidInvoice:
    """An issued invoice with a total > 0 not paid yet (spec §12): the object as issued (for
    `invoice.payment_status_updated`), its issuing instant and its payment status."""

    invoice: Any  # the invoice object as issued; never changed
    issued_us: int
    total_cents: int
    status: str = "pending"
    changes: int = 0  # payment status changes so far (their webhook ids)


class SubscriptionState:
    __slots__ = (
        "_period",
        "_subscription_at",
        "accepted_ids",
        "access",
        "access_changes",
        "accumulators",
        "alert_serial",
        "alerts",
        "anchor",
        "closed_units",
        "created_at",
        "current",
        "definition",
        "end_us",
        "external_id",
        "fees",
        "forgotten_ids",
        "generation",
        "held",
        "invoiced",
        "invoices",
        "lago_id",
        "period_fee_cents",
        "progressive",
        "reached",
        "seen",
        "seq",
        "since_us",
        "start_us",
        "status",
        "terminated_at",
        "trigger",
        "unpaid",
    )

    def __init__(self, external_id: str) -> None:
        self.external_id = external_id
        self.generation = 0
        self.lago_id = ""
        self.definition: SubscriptionDefinition | None = None
        self.status = ""
        # Instants as microseconds too: the per-event checks compare integers.
        self.since_us = self.start_us = self.end_us = 0
        self._subscription_at: datetime | None = None
        self._period: Period | None = None
        self.created_at: datetime | None = None
        self.anchor: date | None = None
        self.terminated_at: datetime | None = None
        # The open period and its usage: C (`current`) is the sum of `fees`, one per charge.
        self.period = None
        self.period_fee_cents: int | None = None  # in-arrears plan fee due at its close
        self.accumulators: dict[str, Accumulator] = {}
        self.fees: dict[str, int] = {}
        self.current = 0
        self.progressive: ProgressiveRef | None = None  # P: latest progressive invoice
        # Derived, not stored: the C at which the next threshold check can cross (None: unknown).
        self.trigger: int | None = None
        self.held: list[HeldEvent] = []
        # Lifetime: I (`invoiced`), counters, and the de-duplication window.
        self.invoiced = 0
        self.invoices = 0
        # The thresholds progressive invoices applied, for the lifetime usage (lifetime.py).
        self.reached: tuple[Reached, ...] = ()
        self.seq = 0
        self.seen: dict[str, int] = {}
        self.accepted_ids: list[str] = []  # the journal (EngineSettings.journal)
        self.forgotten_ids: list[str] = []
        # Usage alerts (spec §11) by code, in creation order, and what their values need.
        self.alerts: dict[str, AlertState] = {}
        self.alert_serial = 0  # alerts created so far under this external id (their ids)
        self.closed_units: dict[str, Decimal] = {}  # per metric: units of the closed periods
        # Spec §12: unpaid invoices by lago id (settled ones leave), and per feature the last
        # access decision reason seen for it (reported or, for a first `allowed`, not).
        self.unpaid: dict[str, UnpaidInvoice] = {}
        self.access: dict[str, str] = {}
        self.access_changes = 0

    @property
    def subscription_at(self) -> datetime | None:
        return self._subscription_at

    @subscription_at.setter
    def subscription_at(self, instant: datetime | None) -> None:
        self._subscription_at = instant
        self.since_us = micros(instant) if instant is not None else 0

    @property
    def period(self) -> Period | None:
        return self._period

    @period.setter
    def period(self, period: Period | None) -> None:
        self._period = period
        if period is not None:
            self.start_us, self.end_us = micros(period.start), micros(period.end)

    @property
    def progressed(self) -> int:
        return self.progressive.fees_cents if self.progressive else 0

    def begin(self, definition: SubscriptionDefinition, at: datetime, created_at: datetime) -> None:
        """Start a new subscription under this external id (a new `lago_id` after an old one
        ended); the transaction ids already seen still count."""
        self.generation += 1
        self.lago_id = subscription_id(self.external_id, self.generation)
        self.definition = definition
        self.status = PENDING
        self.subscription_at = at
        self.created_at = created_at
        self.anchor = None
        self.terminated_at = None
        self.invoiced = 0
        self.reached = ()
        self.alerts = {}  # the alerts of an earlier subscription ended with it
        self.closed_units = {}
        self.reset_period(None)
        self.held = []

    def reset_period(self, period: Period | None) -> None:
        self.period = period
        self.period_fee_cents = None
        self.accumulators = {}
        self.fees = {}
        self.current = 0
        self.progressive = None
        self.trigger = None

    def clone(self) -> SubscriptionState:
        """An independent copy (containers and accumulators copied; frozen values shared): taken
        before a rare step changes this state, to put back if that step fails (engine.py)."""
        other = SubscriptionState(self.external_id)
        other.generation = self.generation
        other.lago_id = self.lago_id
        other.definition = self.definition
        other.status = self.status
        other.subscription_at = self.subscription_at
        other._period = self._period
        other.start_us, other.end_us = self.start_us, self.end_us
        other.created_at = self.created_at
        other.anchor = self.anchor
        other.terminated_at = self.terminated_at
        other.period_fee_cents = self.period_fee_cents
        other.accumulators = {
            code: accumulator_from_state(acc.aggregation_type, acc.to_state())
            for code, acc in self.accumulators.items()
        }
        other.fees = dict(self.fees)
        other.current = self.current
        other.progressive = self.progressive
        other.trigger = self.trigger
        other.held = list(self.held)
        other.invoiced = self.invoiced
        other.invoices = self.invoices
        other.reached = self.reached
        other.seq = self.seq
        other.seen = dict(self.seen)
        other.accepted_ids = list(self.accepted_ids)
        other.forgotten_ids = list(self.forgotten_ids)
        other.alerts = {
            code: AlertState(
                alert.definition,
                alert.lago_id,
                alert.prev,
                alert.triggers,
                alert.created_us,
                alert.processed_us,
            )
            for code, alert in self.alerts.items()
        }
        other.alert_serial = self.alert_serial
        other.closed_units = dict(self.closed_units)
        other.unpaid = dict(self.unpaid)
        other.access = dict(self.access)
        other.access_changes = self.access_changes
        return other

    def issued(self, invoice: dict[str, Any], issued_at: datetime) -> None:
        """Track an invoice just issued: unpaid while its total is > 0 (spec §12)."""
        total = invoice["total_amount_cents"]
        if total > 0:
            self.unpaid[invoice["lago_id"]] = UnpaidInvoice(invoice, micros(issued_at), total)

    def take_journal(self) -> tuple[list[str], list[str]]:
        """The transaction ids accepted and forgotten since the last call."""
        accepted, forgotten = self.accepted_ids, self.forgotten_ids
        self.accepted_ids, self.forgotten_ids = [], []
        return accepted, forgotten

    def next_sequential_id(self) -> int:
        self.invoices += 1
        return self.invoices
