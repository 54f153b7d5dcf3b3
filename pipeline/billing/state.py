"""Versioned, compact serialization of a subscription's state for a changelog-backed table.

The state grows only with what billing needs: aggregation values that must be kept (unique
values, per-event order for percentage free units), held events and the de-duplication window.
Instants are stored as integer microseconds since the epoch, decimals as strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pipeline.billing.aggregation import accumulator_from_state
from pipeline.billing.alerts import dump_alert, load_alert
from pipeline.billing.catalog import (
    Catalog,
    SubscriptionDefinition,
    Thresholds,
    UsageThreshold,
    apply_definition,
)
from pipeline.billing.invoices import ProgressiveRef
from pipeline.billing.lifetime import Reached
from pipeline.billing.periods import Period
from pipeline.billing.subscription import HeldEvent, SubscriptionState, UnpaidInvoice
from pipeline.billing.timestamps import EPOCH

VERSION = 1  # the ledger's head and catalogue definitions
# 2: usage alerts and per-metric lifetime units (spec §11); 3: unpaid invoices, access
# decisions and entitlements (spec §12); 4: the thresholds reached and when, alerts' creation
# and latest evaluation instants (the lifetime usage and alert objects of spec §13)
SUBSCRIPTION_VERSION = 4
_READABLE_SUBSCRIPTIONS = frozenset({1, 2, 3, 4})  # an older state loads with none of them
_MICRO = timedelta(microseconds=1)


class StateError(ValueError):
    """Stored bytes that are not a subscription state this version can read."""


def dump_subscription(sub: SubscriptionState, *, with_seen: bool = True) -> bytes:
    """`with_seen=False` leaves the de-duplication window out, for shells that store it
    incrementally (one record per transaction id) and hand it back to `load_subscription`."""
    period = sub.period
    progressive = sub.progressive
    document: dict[str, Any] = {
        "v": SUBSCRIPTION_VERSION,
        "id": sub.external_id,
        "gen": sub.generation,
        "lago": sub.lago_id,
        "def": _dump_definition(sub.definition),
        "st": sub.status,
        "at": _us(sub.subscription_at),
        "cr": _us(sub.created_at),
        "an": sub.anchor.isoformat() if sub.anchor else None,
        "term": _us(sub.terminated_at),
        "per": [_us(period.start), _us(period.end), _us(period.full_start)] if period else None,
        "fee": sub.period_fee_cents,
        "acc": {
            code: [acc.aggregation_type, acc.to_state()] for code, acc in sub.accumulators.items()
        },
        "fees": sub.fees,
        "cur": sub.current,
        "prog": [progressive.lago_id, progressive.sequential_id, progressive.fees_cents]
        if progressive
        else None,
        "held": [[h.timestamp_us, h.seq, h.code, _dump_value(h.value)] for h in sub.held],
        "inv": sub.invoiced,
        "n": sub.invoices,
        "seq": sub.seq,
        "seen": sub.seen if with_seen else None,
    }
    if sub.alert_serial:  # usage alerts: only where there are (or were) some
        document["al"] = [dump_alert(alert) for alert in sub.alerts.values()]
        document["aln"] = sub.alert_serial
    if sub.closed_units:
        document["lu"] = {code: str(units) for code, units in sub.closed_units.items()}
    if sub.unpaid:
        document["up"] = [
            [_dump_invoice(u.invoice), u.issued_us, u.total_cents, u.status, u.changes]
            for u in sub.unpaid.values()
        ]
    if sub.access or sub.access_changes:
        document["ac"] = [sub.access, sub.access_changes]
    if sub.reached:
        document["rt"] = [
            [r.amount_cents, r.recurring, r.lifetime_cents, r.at_us] for r in sub.reached
        ]
    return json.dumps(document, separators=(",", ":")).encode()


def load_subscription(data: bytes, seen: dict[str, int] | None = None) -> SubscriptionState:
    try:
        document = json.loads(data)
    except ValueError as error:
        raise StateError(f"not a subscription state: {error}") from None
    if not isinstance(document, dict) or document.get("v") not in _READABLE_SUBSCRIPTIONS:
        version = document.get("v") if isinstance(document, dict) else None
        raise StateError(f"unsupported subscription state version {version!r}")
    sub = SubscriptionState(document["id"])
    sub.generation = document["gen"]
    sub.lago_id = document["lago"]
    sub.definition = _load_definition(document["def"])
    sub.status = document["st"]
    sub.subscription_at = _instant(document["at"])
    sub.created_at = _instant(document["cr"])
    sub.anchor = date.fromisoformat(document["an"]) if document["an"] else None
    sub.terminated_at = _instant(document["term"])
    bounds = document["per"]
    sub.period = Period(*[_required(b) for b in bounds]) if bounds else None
    sub.period_fee_cents = document["fee"]
    sub.accumulators = {
        code: accumulator_from_state(aggregation, state)
        for code, (aggregation, state) in document["acc"].items()
    }
    sub.fees = document["fees"]
    sub.current = document["cur"]
    prog = document["prog"]
    sub.progressive = ProgressiveRef(*prog) if prog else None
    sub.held = [
        HeldEvent(_required(ts), ts, seq, code, _load_value(value))
        for ts, seq, code, value in document["held"]
    ]
    sub.invoiced = document["inv"]
    sub.invoices = document["n"]
    sub.seq = document["seq"]
    sub.seen = document["seen"] if document["seen"] is not None else dict(seen or {})
    for items in document.get("al", ()):
        alert = load_alert(sub.external_id, items)
        sub.alerts[alert.definition.code] = alert
    sub.alert_serial = document.get("aln", 0)
    sub.closed_units = {code: Decimal(units) for code, units in document.get("lu", {}).items()}
    for text, issued_us, total, status, changes in document.get("up", ()):
        invoice = json.loads(text, object_hook=_untag_decimal)
        sub.unpaid[invoice["lago_id"]] = UnpaidInvoice(invoice, issued_us, total, status, changes)
    if "ac" in document:
        sub.access, sub.access_changes = dict(document["ac"][0]), document["ac"][1]
    sub.reached = tuple(Reached(a, bool(r), lt, at) for a, r, lt, at in document.get("rt", ()))
    return sub


def _dump_invoice(invoice: dict[str, Any]) -> str:
    return json.dumps(invoice, separators=(",", ":"), default=_tag_decimal)


def _us(instant: datetime | None) -> int | None:
    return None if instant is None else (instant - EPOCH) // _MICRO


def _instant(micros: int | None) -> datetime | None:
    return None if micros is None else EPOCH + timedelta(microseconds=micros)


def _required(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _dump_value(value: Decimal | str | None) -> object:
    return ["d", str(value)] if isinstance(value, Decimal) else value


def _load_value(value: object) -> Decimal | str | None:
    if isinstance(value, list):
        return Decimal(value[1])
    assert value is None or isinstance(value, str)
    return value


def _dump_thresholds(thresholds: Thresholds | None) -> list[list[object]] | None:
    if thresholds is None:
        return None
    return [
        [t.amount_cents, t.threshold_display_name, t.recurring] for t in thresholds.applicable()
    ]


def _load_thresholds(items: list[list[Any]] | None) -> Thresholds | None:
    if items is None:
        return None
    thresholds = [UsageThreshold(int(a), n, bool(r)) for a, n, r in items]
    fixed = tuple(t for t in thresholds if not t.recurring)
    recurring = next((t for t in thresholds if t.recurring), None)
    return Thresholds(fixed, recurring)


def _dump_definition(definition: SubscriptionDefinition | None) -> list[object] | None:
    if definition is None:
        return None
    return [
        definition.external_id,
        definition.external_customer_id,
        definition.plan_code,
        definition.billing_time,
        _us(definition.subscription_at),
        _dump_thresholds(definition.thresholds),
        definition.progressive_billing_disabled,
        definition.historical_usage_amount_cents,
        [[code, [list(pair) for pair in values]] for code, values in definition.entitlements],
        list(definition.removed_features),
        definition.payment_grace_seconds,
        definition.max_unpaid_amount_cents,
    ]


def _load_definition(items: list[Any] | None) -> SubscriptionDefinition | None:
    if items is None:
        return None
    external_id, customer, plan, billing_time, at, thresholds, disabled, historical = items[:8]
    entitlements, removed, grace, cap = items[8:] if len(items) > 8 else ([], [], None, None)
    return SubscriptionDefinition(
        external_id,
        customer,
        plan,
        billing_time,
        _instant(at),
        _load_thresholds(thresholds),
        disabled,
        historical,
        tuple((code, tuple((k, v) for k, v in values)) for code, values in entitlements),
        tuple(removed),
        grace,
        cap,
    )


# -- the ledger's head: clock and catalog ------------------------------------------------------


def dump_clock(clock: datetime | None) -> bytes:
    """The ledger's clock. The catalogue is stored apart, one record per definition
    (`dump_definition`), so that a batch writes only the definitions it changed."""
    return json.dumps({"v": VERSION, "clock": _us(clock)}, separators=(",", ":")).encode()


def load_clock(data: bytes) -> datetime | None:
    document = _document(data, "ledger clock")
    return _instant(document["clock"])


# The order that rebuilds a catalog.
DEFINITION_KINDS = ("billable_metric", "feature", "plan", "customer")


def dump_definition(catalog: Catalog, kind: str, key: str) -> bytes:
    """One definition of `catalog` (`kind` in DEFINITION_KINDS) as the object that built it."""
    document: dict[str, Any] = {"v": VERSION, "kind": kind}
    if kind == "billable_metric":
        metric = catalog.metrics[key]
        document["source"], document["at"] = metric.source, _us(metric.defined_at)
    elif kind == "plan":
        document["source"] = catalog.plans[key].source
    elif kind == "feature":  # a deleted feature is stored as its deletion
        feature = catalog.features.get(key)
        document["source"] = feature.source if feature else {"code": key, "deleted": True}
    else:
        customer = catalog.customers[key]
        document["source"], document["at"] = customer.source, _us(customer.defined_at)
    return json.dumps(document, separators=(",", ":"), default=_tag_decimal).encode()


def load_catalog(definitions: Iterable[bytes]) -> Catalog:
    """The catalog from its stored definitions, in any order (linear in their number)."""
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in DEFINITION_KINDS}
    for data in definitions:
        document = _document(data, "catalog definition")
        by_kind[document["kind"]].append(document)
    catalog = Catalog()
    for kind in DEFINITION_KINDS:
        for document in by_kind[kind]:
            at = _instant(document.get("at"))  # metrics and customers: when first defined
            if kind == "feature" and document["source"].get("deleted") is True:
                continue  # deleted: nothing to define
            apply_definition(catalog, kind, document["source"], at)
    return catalog


def _document(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data, object_hook=_untag_decimal)
    except ValueError as error:
        raise StateError(f"not a {what}: {error}") from None
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise StateError(f"unsupported {what} version")
    return document


def _tag_decimal(value: object) -> object:
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    raise TypeError(f"cannot store {type(value).__name__} in a ledger head")


def _untag_decimal(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and "$decimal" in obj:
        return Decimal(obj["$decimal"])
    return obj
