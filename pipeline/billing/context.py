"""What one step works with (catalog, clock, settings) and what it produces (outputs)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.billing.catalog import Catalog, Customer, Plan
from pipeline.billing.invoices import Parties
from pipeline.billing.rejections import Rejection
from pipeline.billing.subscription import SubscriptionState
from pipeline.billing.timestamps import micros
from pipeline.billing.webhooks import Output


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Knobs of the billing semantics; the defaults are spec §3 and §8."""

    allowed_lateness: timedelta = timedelta(0)
    dedupe_window: timedelta = timedelta(days=35)
    max_future: timedelta = timedelta(hours=24)
    # Keep, per subscription, the transaction ids accepted and forgotten since the shell last
    # took them (`SubscriptionState.take_journal`): for shells that store the window
    # incrementally instead of rewriting it with every state.
    journal: bool = False

    @classmethod
    def of(
        cls, allowed_lateness_s: float, dedupe_window_days: int, *, journal: bool = False
    ) -> EngineSettings:
        """From the shells' settings (TOLLGATE_ALLOWED_LATENESS, TOLLGATE_DEDUPE_WINDOW_DAYS):
        the worker and `tollgate replay` bill with the same semantics."""
        return cls(
            allowed_lateness=timedelta(seconds=allowed_lateness_s),
            dedupe_window=timedelta(days=dedupe_window_days),
            journal=journal,
        )


class StepContext:
    """One run of records: the world as it is for the current record, and what the run emits."""

    __slots__ = (
        "accepted",
        "catalog",
        "counts",
        "credit_notes",
        "defined",
        "duplicates",
        "invoices",
        "now",
        "now_us",
        "outputs",
        "rejections",
        "settings",
        "thresholds",
        "touched",
        "uncharged",
    )

    def __init__(self, now: datetime, catalog: Catalog, settings: EngineSettings) -> None:
        self.now = now
        self.now_us = micros(now)
        self.catalog = catalog
        self.settings = settings
        self.outputs: list[Output] = []
        self.rejections: list[Rejection] = []
        self.counts: Counter[str] = Counter()
        self.touched: set[str] = set()
        self.defined: set[tuple[str, str]] = set()  # (kind, key) of definitions made
        # The per-event counters are plain ints; `counts` holds the rarer ones.
        self.accepted = 0
        self.duplicates = 0
        self.uncharged = 0
        self.invoices = 0
        self.thresholds = 0
        self.credit_notes = 0

    def totals(self) -> dict[str, int]:
        """Every counter of the run, for the shell's metrics."""
        totals = dict(self.counts)
        for name in (
            "accepted",
            "duplicates",
            "uncharged",
            "invoices",
            "thresholds",
            "credit_notes",
        ):
            value = getattr(self, name)
            if value:
                totals[name] = value
        return totals

    def plan_of(self, sub: SubscriptionState) -> Plan:
        assert sub.definition is not None
        return self.catalog.plans[sub.definition.plan_code]

    def customer_of(self, sub: SubscriptionState) -> Customer:
        assert sub.definition is not None
        return self.catalog.customer(sub.definition.external_customer_id)

    def parties(self, sub: SubscriptionState) -> Parties:
        assert sub.definition is not None and sub.created_at is not None
        customer = self.customer_of(sub)
        return Parties(
            sub.lago_id,
            sub.external_id,
            sub.definition.plan_code,
            customer,
            customer.defined_at or sub.created_at,
        )
