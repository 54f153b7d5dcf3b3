"""The access decision and its changes (spec §12): evaluated from the state that bills."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pipeline.billing import entitlements as ent
from pipeline.billing import webhooks
from pipeline.billing.catalog import Catalog
from pipeline.billing.context import StepContext
from pipeline.billing.subscription import ACTIVE, SubscriptionState, UnpaidInvoice
from pipeline.billing.timestamps import iso

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Decision:
    reason: str
    remaining: Any  # int, Decimal or None

    @property
    def allowed(self) -> bool:
        return self.reason == ent.ALLOWED


def entitled(sub: SubscriptionState, catalog: Catalog) -> ent.Effective:
    """The subscription's effective entitlements (spec §12)."""
    definition = sub.definition
    if definition is None:
        return {}
    plan = catalog.plans.get(definition.plan_code)
    return ent.effective(
        plan.entitlements if plan is not None else (),
        definition.entitlements,
        definition.removed_features,
        catalog.features,
    )


def overdue_at_us(sub: SubscriptionState, unpaid: UnpaidInvoice) -> int | None:
    """The instant (µs) an unpaid invoice becomes overdue; None: never."""
    definition = sub.definition
    grace = definition.payment_grace_seconds if definition is not None else None
    return None if grace is None else unpaid.issued_us + grace * 1_000_000


def payment_overdue(sub: SubscriptionState, now_us: int) -> bool:
    unpaid = sub.unpaid
    if not unpaid:
        return False
    for invoice in unpaid.values():
        due = overdue_at_us(sub, invoice)
        if due is not None and due <= now_us:
            return True
    definition = sub.definition
    cap = definition.max_unpaid_amount_cents if definition is not None else None
    return cap is not None and sum(i.total_cents for i in unpaid.values()) > cap


def decide(
    sub: SubscriptionState | None,
    feature_code: str,
    catalog: Catalog,
    now_us: int,
    effective: ent.Effective | None = None,
) -> Decision:
    """The five rules of spec §12, first that matches."""
    if sub is None:
        return Decision(ent.UNKNOWN_SUBSCRIPTION, None)
    if sub.status != ACTIVE:
        return Decision(ent.SUBSCRIPTION_INACTIVE, None)
    if effective is None:
        effective = entitled(sub, catalog)
    values = effective.get(feature_code)
    feature = catalog.features.get(feature_code)
    if values is None or feature is None:
        return Decision(ent.FEATURE_NOT_ENTITLED, None)
    limit = ent.allowance(feature, values)
    remaining = None
    exhausted = False
    if limit is not None and feature.quota_metric is not None:
        accumulator = sub.accumulators.get(feature.quota_metric)
        units = accumulator.units() if accumulator is not None else _ZERO
        remaining = ent.remaining_units(limit, units)
        exhausted = limit <= units
    if payment_overdue(sub, now_us):
        return Decision(ent.PAYMENT_OVERDUE, remaining)
    if exhausted:
        return Decision(ent.QUOTA_EXHAUSTED, remaining)
    return Decision(ent.ALLOWED, remaining)


def answer(external_id: str, feature_code: str, decision: Decision, at: datetime) -> dict[str, Any]:
    return {
        "external_subscription_id": external_id,
        "feature_code": feature_code,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "remaining": decision.remaining,
        "evaluated_at": iso(at),
    }


def report_changes(sub: SubscriptionState, ctx: StepContext) -> None:
    """Re-evaluate every followed or entitled feature of `sub`; emit one
    `subscription.access_changed` per pair whose decision changed (spec §12), in code order."""
    catalog = ctx.catalog
    effective = entitled(sub, catalog)
    followed = sub.access
    if not effective and not followed:
        return
    for code in sorted(set(effective) | set(followed)):
        decision = decide(sub, code, catalog, ctx.now_us, effective)
        last = followed.get(code)
        if last != decision.reason and (last is not None or not decision.allowed):
            _emit(sub, ctx, code, decision)
        if code in effective:
            followed[code] = decision.reason
        else:
            followed.pop(code, None)  # no longer entitled: reported once, no longer followed


def _emit(sub: SubscriptionState, ctx: StepContext, code: str, decision: Decision) -> None:
    sub.access_changes += 1
    definition = sub.definition
    ctx.outputs.append(
        webhooks.webhook(
            "subscription.access_changed",
            "access",
            answer(sub.external_id, code, decision, ctx.now),
            sub.external_id,
            sub.access_changes,
            external_subscription_id=sub.external_id,
            external_customer_id=definition.external_customer_id if definition else None,
        )
    )
    ctx.counts["access_changes"] += 1
