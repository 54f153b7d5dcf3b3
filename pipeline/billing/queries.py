"""Read queries for the HTTP API (spec §13): Lago's objects from the ledger of the partition that
owns a subscription, as they stand after every record it has applied.

Read-only: a query moves no clock, takes no journal, evaluates nothing into the state, and hands
out objects built afresh (a caller may change them). The decisions and ids are the engine's own
(`access.decide`, `ids`), so an answer agrees with the webhooks: an alert's `lago_id` is the one
`alert.triggered` carries, the subscription's the one on its invoices. Decimal arithmetic runs in
the engine's context, as inside a run. Where Lago's semantics are followed from its source, the
path under getlago/lago-api is named.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from decimal import localcontext
from typing import Any

from pipeline.billing import ids
from pipeline.billing.access import answer, decide, entitled
from pipeline.billing.alerting import alerted_subscription, format_value
from pipeline.billing.alerts import AlertDefinition, AlertDeletion, check_alert, parse_alert
from pipeline.billing.catalog import (
    NO_THRESHOLDS,
    BillableMetric,
    Catalog,
    DefinitionError,
    Plan,
    applicable_thresholds,
)
from pipeline.billing.engine import Ledger, Record
from pipeline.billing.entitlements import feature_object, payment_status_problem
from pipeline.billing.invoices import FeeLine, format_units, taxes_on, with_payment_status
from pipeline.billing.lifetime import completions
from pipeline.billing.money import ENGINE_CONTEXT
from pipeline.billing.periods import local_date, to_datetime
from pipeline.billing.subscription import ACTIVE, PENDING, SubscriptionState
from pipeline.billing.timestamps import EPOCH, from_micros, iso, micros
from pipeline.billing.usage import charge_lines


class InvalidPaymentStatus(ValueError):
    """A payment status outside spec §12's list (the engine refuses it as `invalid`)."""


def _subscription(ledger: Ledger, external_id: str) -> SubscriptionState | None:
    sub = ledger.subscriptions.get(external_id)
    return sub if sub is not None and sub.definition is not None else None


# -- lifetime usage ------------------------------------------------------------------------------


def lifetime_usage(ledger: Ledger, external_id: str) -> dict[str, Any] | None:
    """Lago's `lifetime_usage` object (spec §4, §13); None: no such subscription.

    Whatever the subscription's status (Lago's API looks up active subscriptions unless asked
    for another status; the shell may narrow). Following app/serializers/v1/
    lifetime_usage_serializer.rb: `from_datetime` is the subscription's `subscription_at` and
    `to_datetime` the instant the answer stands at (Lago: the current time; here the ledger's
    clock, up to which its records are applied). `usage_thresholds`: `lifetime.completions`
    over the applicable thresholds; each `completion_ratio` is computed as a `Decimal` and
    becomes a JSON number (a float) only in this object, as Lago's `fdiv` gives it; an empty
    list when none apply (Lago leaves the key out)."""
    sub = _subscription(ledger, external_id)
    if sub is None:
        return None
    definition = sub.definition
    assert definition is not None
    plan = ledger.catalog.plans.get(definition.plan_code)
    thresholds = applicable_thresholds(definition, plan) if plan is not None else NO_THRESHOLDS
    historical = definition.historical_usage_amount_cents
    total = historical + sub.invoiced + sub.current
    clock = ledger.clock or EPOCH
    with localcontext(ENGINE_CONTEXT):
        entries = completions(thresholds, total, sub.reached, micros(clock))
    return {
        "lago_id": ids.lifetime_usage_id(sub.lago_id),
        "lago_subscription_id": sub.lago_id,
        "external_subscription_id": sub.external_id,
        "external_historical_usage_amount_cents": historical,
        "invoiced_usage_amount_cents": sub.invoiced,
        "current_usage_amount_cents": sub.current,
        "from_datetime": iso(sub.subscription_at) if sub.subscription_at else None,
        "to_datetime": iso(clock),
        "usage_thresholds": [
            {
                "amount_cents": entry.amount_cents,
                "completion_ratio": float(entry.ratio),  # a ratio, not money
                "reached_at": None
                if entry.reached_us is None
                else iso(from_micros(entry.reached_us)),
            }
            for entry in entries
        ],
    }


# -- current usage -------------------------------------------------------------------------------


def current_usage(
    ledger: Ledger, external_customer_id: str, external_subscription_id: str
) -> dict[str, Any] | None:
    """Lago's `customer_usage` object for the open period; None: no such subscription, one of
    another customer, or one with no open period (Lago answers only for active subscriptions).

    Following app/services/invoices/customer_usage_service.rb: `from_datetime` and
    `to_datetime` are the period's charges bounds (its end − 1 s, as invoices show it),
    `issuing_date` the customer-local date of that last second (Lago: the period's last day),
    amounts the usage charges only — what the period's invoice would bill for them, before any
    progressive credit — with taxes as an invoice applies them (once, on the sum), and
    `charges_usage` one entry per charge of the plan sorted by metric name, case-insensitive
    (Lago's `sort_by { |f| f.billable_metric.name.downcase }`; ties in plan order)."""
    sub = _subscription(ledger, external_subscription_id)
    if sub is None or sub.status != ACTIVE or sub.period is None:
        return None
    definition = sub.definition
    assert definition is not None
    if definition.external_customer_id != external_customer_id:
        return None
    catalog = ledger.catalog
    plan = catalog.plans.get(definition.plan_code)
    if plan is None:
        return None
    customer = catalog.customer(external_customer_id)
    last_second = to_datetime(sub.period.end)
    with localcontext(ENGINE_CONTEXT):
        lines = charge_lines(sub, plan)
        amount = sum(line.amount_cents for line in lines)
        taxes = taxes_on(amount, customer)
        usage = [_charge_usage(catalog, plan, line) for line in lines]
    usage.sort(key=lambda item: str(item["billable_metric"]["name"]).lower())
    return {
        "from_datetime": iso(sub.period.start),
        "to_datetime": iso(last_second),
        "issuing_date": local_date(last_second, customer.zone).isoformat(),
        "lago_invoice_id": None,
        "currency": plan.amount_currency,
        "amount_cents": amount,
        "taxes_amount_cents": taxes,
        "total_amount_cents": amount + taxes,
        "charges_usage": usage,
    }


def _charge_usage(catalog: Catalog, plan: Plan, line: FeeLine) -> dict[str, Any]:
    """One charge's usage (app/serializers/v1/customers/charge_usage_serializer.rb); tollgate
    has no charge filters or groups yet, so `filters` and `grouped_usage` are empty."""
    code = line.code
    charge = plan.charges_by_metric[code]
    metric = catalog.metrics[code]
    units = format_units(line.units)
    return {
        "units": units,
        "total_aggregated_units": units,
        "events_count": line.events_count,
        "amount_cents": line.amount_cents,
        "amount_currency": plan.amount_currency,
        "charge": {
            "lago_id": ids.charge_id(plan.code, code),
            "charge_model": charge.charge_model,
            "invoice_display_name": _charge_display_name(plan, code),
        },
        "billable_metric": {
            "lago_id": ids.metric_id(code),
            "name": metric.name,
            "code": code,
            "aggregation_type": metric.aggregation_type,
        },
        "filters": [],
        "grouped_usage": [],
    }


def _charge_display_name(plan: Plan, metric_code: str) -> str | None:
    """The charge's `invoice_display_name` as the plan definition gave it, if it did."""
    charges = plan.source.get("charges")
    if not isinstance(charges, list):
        return None
    for item in charges:
        if isinstance(item, Mapping) and item.get("billable_metric_code") == metric_code:
            name = item.get("invoice_display_name")
            return name if isinstance(name, str) else None
    return None


# -- entitlements and access ---------------------------------------------------------------------


def entitlements(ledger: Ledger, external_id: str) -> list[dict[str, Any]] | None:
    """The subscription's effective entitlements (spec §12 shape), features in code order;
    None: no such subscription."""
    sub = _subscription(ledger, external_id)
    if sub is None:
        return None
    catalog = ledger.catalog
    effective = entitled(sub, catalog)
    features = [
        feature_object(catalog.features[code], effective[code]) for code in sorted(effective)
    ]
    # a copy: a privilege's config is the catalogue's own object
    copied: list[dict[str, Any]] = copy.deepcopy(features)
    return copied


def access(ledger: Ledger, external_id: str, feature_code: str, now: datetime) -> dict[str, Any]:
    """Spec §12's answer at `now`: the decision the engine would push in
    `subscription.access_changed` at that instant (same rules, same code). An unknown
    subscription answers `unknown_subscription`.

    `now` may be ahead of the pipeline clock (the shell asks at the wall clock when it is):
    invoices falling overdue by then count, and if the subscription would start or close a
    period by then, the decision is taken on a copy of it moved to `now` by the engine itself
    (a tick on a scratch ledger), as the next tick will."""
    sub = ledger.subscriptions.get(external_id)
    if sub is not None and _due_by(ledger, sub, now):
        sub = _moved_to(ledger, sub, now)
    with localcontext(ENGINE_CONTEXT):
        decision = decide(sub, feature_code, ledger.catalog, micros(now))
    return answer(external_id, feature_code, decision, now)


def _due_by(ledger: Ledger, sub: SubscriptionState, now: datetime) -> bool:
    """Whether the clock reaching `now` would start `sub` or close its period."""
    if sub.external_id in ledger.quarantined:
        return False  # the engine leaves it as it is until a restart
    if sub.status == PENDING:
        return sub.subscription_at is not None and sub.subscription_at <= now
    period = sub.period
    return (
        sub.status == ACTIVE
        and period is not None
        and period.end + ledger.settings.allowed_lateness <= now
    )


def _moved_to(ledger: Ledger, sub: SubscriptionState, now: datetime) -> SubscriptionState:
    """A copy of `sub` as a tick at `now` leaves it. The scratch ledger shares the catalogue,
    which a tick only reads."""
    scratch = Ledger.restore(ledger.settings, ledger.clock, ledger.catalog, [sub.clone()])
    scratch.run((Record(now, "tick"),))
    return scratch.subscriptions[sub.external_id]


# -- invoices ------------------------------------------------------------------------------------


def unpaid_invoice(ledger: Ledger, lago_invoice_id: str) -> tuple[str, dict[str, Any]] | None:
    """(external subscription id, the invoice object as issued) of an unpaid invoice this
    ledger holds (spec §12: pending or failed, total > 0); None otherwise, a settled invoice
    included (it is not remembered). Looks through every subscription of the ledger: it serves
    Lago's `PUT /invoices/{lago_id}`, which names no subscription."""
    for sub in ledger.subscriptions.values():
        unpaid = sub.unpaid.get(lago_invoice_id)
        if unpaid is not None:
            invoice: dict[str, Any] = copy.deepcopy(unpaid.invoice)
            return sub.external_id, invoice
    return None


def invoice_with_status(invoice: dict[str, Any], payment_status: object) -> dict[str, Any]:
    """The object `invoice.payment_status_updated` carries for `invoice` (as issued) and
    `payment_status`; `InvalidPaymentStatus` for anything outside spec §12's list (the status
    is taken as the request body gave it, whatever its JSON type)."""
    problem = payment_status_problem(payment_status)
    if problem or not isinstance(payment_status, str):
        raise InvalidPaymentStatus(problem)
    return with_payment_status(invoice, payment_status)


# -- alerts --------------------------------------------------------------------------------------


def alerts(ledger: Ledger, external_id: str) -> list[dict[str, Any]] | None:
    """The subscription's alerts in creation order, as Lago's alert objects; None: no such
    subscription."""
    sub = _subscription(ledger, external_id)
    if sub is None:
        return None
    return [
        _alert_object(
            ledger.catalog,
            alert.definition,
            alert.lago_id,
            format_value(alert.prev),
            _created_us(sub, alert.created_us),
            alert.processed_us,
        )
        for alert in sub.alerts.values()
    ]


def alert_objects_for_request(
    ledger: Ledger, external_id: str, alerts: list[Any], now: datetime
) -> list[dict[str, Any]]:
    """Validate the alerts posted for a subscription (Lago's create-alerts body items
    `{alert_type, code, name?, thresholds, billable_metric_code?}`, any JSON value as the body
    gave it) as the engine will when they arrive as `alert` records, in this order; return the
    objects they will have once applied. Raises the engine's `DefinitionError` (a
    `ValueError`) naming the first problem.

    A code the subscription (or an earlier item) already has is an update: it keeps its
    `lago_id`, `previous_value`, `created_at` and `last_processed_at`. A new one gets the
    `lago_id` the engine will give it (its serial under the subscription, counting the new ones
    before it) and `created_at` = `now`. Both hold if the records are applied next, at `now`
    (an alert record applied at a later clock is created at that instant)."""
    catalog = ledger.catalog
    defined: dict[str, AlertDefinition] = {}
    known: dict[str, tuple[str, str, int, int | None]] = {}
    serial = 0
    sub: SubscriptionState | None = None
    now_us = micros(now)
    objects: list[dict[str, Any]] = []
    for item in alerts:
        parsed = parse_alert(_alert_record(item, external_id))
        if isinstance(parsed, AlertDeletion):
            raise DefinitionError(f"alert {parsed.code!r}: a deletion is not an alert to create")
        if sub is None:
            sub = alerted_subscription(ledger.subscriptions, parsed)
            serial = sub.alert_serial
            for code, alert in sub.alerts.items():
                defined[code] = alert.definition
                created = _created_us(sub, alert.created_us)
                known[code] = (alert.lago_id, format_value(alert.prev), created, alert.processed_us)
        assert sub.definition is not None
        check_alert(parsed, catalog.plans.get(sub.definition.plan_code), defined)
        defined[parsed.code] = parsed
        state = known.get(parsed.code)
        if state is None:
            serial += 1
            state = (ids.alert_id(sub.lago_id, parsed.code, serial), "0", now_us, None)
            known[parsed.code] = state
        lago_id, previous_value, created_us, processed_us = state
        objects.append(
            _alert_object(catalog, parsed, lago_id, previous_value, created_us, processed_us)
        )
    return objects


def _alert_record(item: object, external_id: str) -> object:
    """A posted item as the timeline `alert` record the shell will publish for it."""
    if not isinstance(item, Mapping):
        return item  # refused by the parser, with its message
    record = dict(item)
    record["external_subscription_id"] = external_id
    return record


def _created_us(sub: SubscriptionState, created_us: int | None) -> int:
    """An alert's creation instant; one stored before it was kept shows its subscription's."""
    if created_us is not None:
        return created_us
    created = sub.created_at or sub.subscription_at
    return micros(created) if created is not None else 0


def _alert_object(
    catalog: Catalog,
    alert: AlertDefinition,
    lago_id: str,
    previous_value: str,
    created_us: int,
    processed_us: int | None,
) -> dict[str, Any]:
    """Lago's alert object (app/serializers/v1/usage_monitoring/alert_serializer.rb).
    Thresholds one-time ascending, then the recurring one (Lago: as created); values and
    `previous_value` are decimal strings, amounts in cents."""
    created_at = iso(from_micros(created_us))
    external_id = alert.external_subscription_id
    metric_code = alert.billable_metric_code
    metric = catalog.metrics.get(metric_code) if metric_code is not None else None
    return {
        "lago_id": lago_id,
        "lago_organization_id": ids.organization_id(),
        "subscription_external_id": external_id,  # Lago still sends this deprecated name
        "external_subscription_id": external_id,
        "lago_wallet_id": None,
        "wallet_code": None,
        "alert_type": alert.alert_type,
        "code": alert.code,
        "name": alert.name,
        "direction": "increasing",  # every subscription alert type in Lago
        "previous_value": previous_value,
        "last_processed_at": None if processed_us is None else iso(from_micros(processed_us)),
        "thresholds": [
            {"code": t.code, "value": format_units(t.value), "recurring": t.recurring}
            for t in alert.thresholds
        ],
        "created_at": created_at,
        "billable_metric": None if metric is None else _metric_object(metric, created_at),
    }


def _metric_object(metric: BillableMetric, fallback_created_at: str) -> dict[str, Any]:
    """Lago's billable metric object (app/serializers/v1/billable_metric_serializer.rb); its
    `created_at` is when the catalogue first defined it (a definition stored before that was
    kept shows `fallback_created_at`)."""
    description = metric.source.get("description")
    return {
        "lago_id": ids.metric_id(metric.code),
        "name": metric.name,
        "code": metric.code,
        "description": description if isinstance(description, str) else None,
        "aggregation_type": metric.aggregation_type,
        "weighted_interval": None,
        "recurring": False,
        "rounding_function": None,
        "rounding_precision": None,
        "created_at": iso(metric.defined_at) if metric.defined_at else fallback_created_at,
        "field_name": metric.field_name,
        "expression": None,
        "filters": [],
    }
