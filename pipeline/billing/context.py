"""What one step works with (catalog, clock, settings) and what it produces (outputs)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.billing.catalog import Catalog, Customer, Plan
from pipeline.billing.invoices import Parties
from pipeline.billing.rejections import Rejection
from pipeline.billing.subscription import SubscriptionState
from pipeline.billing.webhooks import Output


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Knobs of the billing semantics; the defaults are spec §3 and §8."""

    allowed_lateness: timedelta = timedelta(0)
    dedupe_window: timedelta = timedelta(days=35)
    max_future: timedelta = timedelta(hours=24)


@dataclass(slots=True)
class StepContext:
    """One record's step: the world as it is for this record, and what the step emits."""

    now: datetime
    catalog: Catalog
    settings: EngineSettings
    outputs: list[Output] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    touched: set[str] = field(default_factory=set)

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
