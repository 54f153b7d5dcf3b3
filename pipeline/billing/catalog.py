"""The catalog: billable metrics, plans, customers and subscription definitions (spec §1).

Definitions arrive as Lago-shaped JSON objects. Parsing validates them whole: a definition that
breaks a rule raises `DefinitionError` and changes nothing (the shells report or dead-letter it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Context, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.billing.aggregation import AGGREGATION_TYPES
from pipeline.billing.entitlements import (
    Entitlement,
    EntitlementError,
    Feature,
    parse_entitlements,
    parse_feature,
    parse_removed,
)
from pipeline.billing.ids import text_id
from pipeline.billing.money import parse_amount
from pipeline.billing.periods import BILLING_TIMES, INTERVALS
from pipeline.billing.pricing import ChargeModel, parse_charge_model
from pipeline.billing.timestamps import parse_instant

_QUIET = Context(prec=60, traps=[])


class DefinitionError(ValueError):
    """A definition that spec §1 refuses; the message says which rule it broke."""


@dataclass(frozen=True, slots=True)
class BillableMetric:
    code: str
    name: str
    aggregation_type: str
    field_name: str | None
    source: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)
    defined_at: datetime | None = field(default=None, compare=False)  # Lago's `created_at`


@dataclass(frozen=True, slots=True)
class Charge:
    billable_metric_code: str
    charge_model: str
    model: ChargeModel


@dataclass(frozen=True, slots=True)
class UsageThreshold:
    amount_cents: int
    threshold_display_name: str | None
    recurring: bool


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The thresholds that apply to one subscription, ready for the §5 check."""

    fixed: tuple[UsageThreshold, ...]  # ascending by amount
    recurring: UsageThreshold | None

    def __bool__(self) -> bool:
        return bool(self.fixed) or self.recurring is not None

    @property
    def largest_fixed(self) -> int:
        return self.fixed[-1].amount_cents if self.fixed else 0

    def applicable(self) -> tuple[UsageThreshold, ...]:
        """Fixed ascending, then the recurring one (the order of the webhook's list)."""
        return self.fixed + ((self.recurring,) if self.recurring else ())


NO_THRESHOLDS = Thresholds((), None)


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    name: str
    interval: str
    amount_cents: int
    amount_currency: str
    pay_in_advance: bool
    charges: tuple[Charge, ...]
    thresholds: Thresholds
    charges_by_metric: Mapping[str, Charge] = field(default_factory=dict, compare=False)
    source: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)
    entitlements: tuple[Entitlement, ...] = ()


@dataclass(frozen=True, slots=True)
class Tax:
    code: str
    rate: Decimal


@dataclass(frozen=True, slots=True)
class Customer:
    external_id: str
    currency: str | None
    timezone: str
    taxes: tuple[Tax, ...]
    defined_at: datetime | None = field(default=None, compare=False)
    source: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tax_rate(self) -> Decimal:
        return sum((tax.rate for tax in self.taxes), Decimal(0))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def default_customer(external_id: str) -> Customer:
    """A customer named by a subscription but not defined yet (spec §1 defaults)."""
    return Customer(external_id, None, "UTC", ())


@dataclass(frozen=True, slots=True)
class SubscriptionDefinition:
    external_id: str
    external_customer_id: str
    plan_code: str
    billing_time: str
    subscription_at: datetime | None
    thresholds: Thresholds | None  # None: fall back to the plan's
    progressive_billing_disabled: bool
    historical_usage_amount_cents: int
    entitlements: tuple[Entitlement, ...] = ()
    removed_features: tuple[str, ...] = ()
    payment_grace_seconds: int | None = None
    max_unpaid_amount_cents: int | None = None


class Catalog:
    """Everything every worker knows: metrics, plans and customers by code / external id.

    Owned and changed in place by one holder (a ledger, a validation run): a definition costs
    O(1), so a catalogue of many customers loads in linear time. `copy` before changing a
    catalogue someone else holds.
    """

    __slots__ = ("customers", "features", "metrics", "plans")

    def __init__(self) -> None:
        self.metrics: dict[str, BillableMetric] = {}
        self.plans: dict[str, Plan] = {}
        self.customers: dict[str, Customer] = {}
        self.features: dict[str, Feature] = {}

    def copy(self) -> Catalog:
        other = Catalog()
        other.metrics, other.plans = dict(self.metrics), dict(self.plans)
        other.customers = dict(self.customers)
        other.features = dict(self.features)
        return other

    def customer(self, external_id: str) -> Customer:
        return self.customers.get(external_id) or default_customer(external_id)

    def define_metric(self, metric: BillableMetric) -> None:
        old = self.metrics.get(metric.code)
        if old and (old.aggregation_type, old.field_name) != (
            metric.aggregation_type,
            metric.field_name,
        ):
            raise DefinitionError(
                f"billable metric {metric.code!r}: aggregation_type and field_name cannot change"
            )
        self.metrics[metric.code] = metric

    def define_plan(self, plan: Plan) -> None:
        self.plans[plan.code] = plan

    def define_customer(self, customer: Customer) -> None:
        self.customers[customer.external_id] = customer


# -- the one way in ----------------------------------------------------------------------------

Defined = BillableMetric | Plan | Customer | SubscriptionDefinition | Feature


def apply_definition(
    catalog: Catalog, kind: str, payload: object, now: datetime | None = None
) -> tuple[Defined, Defined | None]:
    """Parse a definition of any kind (spec §1) and apply it to `catalog`: the only way a
    definition enters a catalogue (the ledger, `catalog apply`, the catalogue-file check, a
    restored state). Returns the definition and the one of the same key it replaced (None when
    new; a plan equal to the one held leaves it in place). A metric or customer keeps the
    `defined_at` of the one it replaces, else `now`. A subscription is checked against the
    plans and returned for its holder to start: the catalogue holds no subscriptions. Raises
    `DefinitionError` and leaves `catalog` unchanged."""
    if kind == "billable_metric":
        metric = parse_metric(payload)
        old_metric = catalog.metrics.get(metric.code)
        metric = replace(metric, defined_at=old_metric.defined_at if old_metric else now)
        catalog.define_metric(metric)
        return metric, old_metric
    if kind == "feature":
        return _apply_feature(catalog, payload)
    if kind == "plan":
        plan = parse_plan(payload, catalog.metrics, catalog.features)
        old_plan = catalog.plans.get(plan.code)
        if plan != old_plan:  # an equal plan changes nothing: the one held stays, source and all
            catalog.define_plan(plan)
        return plan, old_plan
    if kind == "customer":
        key = text_id(payload.get("external_id")) if isinstance(payload, Mapping) else None
        known = catalog.customers.get(key or "")
        customer = parse_customer(payload, known.defined_at if known else now)
        catalog.define_customer(customer)
        return customer, known
    if kind == "subscription":
        definition = parse_subscription(payload)
        on_plan = catalog.plans.get(definition.plan_code)
        what = f"subscription {definition.external_id!r}"
        if on_plan is None:
            raise DefinitionError(f"{what}: unknown plan {definition.plan_code!r}")
        assert isinstance(payload, Mapping)
        try:
            entitlements = parse_entitlements(
                payload.get("entitlements"), catalog.features, on_plan.charges_by_metric, what
            )
            removed = parse_removed(payload.get("removed_features"), catalog.features, what)
        except EntitlementError as error:
            raise DefinitionError(str(error)) from None
        grace = _optional_count(payload, "payment_grace_seconds", what)
        cap = _optional_count(payload, "max_unpaid_amount_cents", what)
        return replace(
            definition,
            entitlements=entitlements,
            removed_features=removed,
            payment_grace_seconds=grace,
            max_unpaid_amount_cents=cap,
        ), None
    raise DefinitionError(f"unknown record type {kind!r}")


def _apply_feature(catalog: Catalog, payload: object) -> tuple[Defined, Defined | None]:
    """A feature (spec §12): defined or replaced; `{"code", "deleted": true}` removes it
    (returned as the removed feature, with no old one)."""
    if isinstance(payload, Mapping) and payload.get("deleted") is True:
        code = text_id(payload.get("code"))
        old = catalog.features.get(code or "")
        if old is None:
            raise DefinitionError(f"feature {payload.get('code')!r}: no such feature to delete")
        del catalog.features[old.code]
        for plan in list(catalog.plans.values()):  # removed everywhere (spec §12)
            if plan_entitles(plan, old.code):
                catalog.plans[plan.code] = without_feature(plan, old.code)
        return old, None
    try:
        feature = parse_feature(payload, catalog.metrics)
    except EntitlementError as error:
        raise DefinitionError(str(error)) from None
    features = dict(catalog.features)
    features[feature.code] = feature
    for plan in catalog.plans.values():  # an update must leave every plan's entitlements valid
        if plan_entitles(plan, feature.code):
            try:
                parse_entitlements(
                    plan.source.get("entitlements"),
                    features,
                    plan.charges_by_metric,
                    f"plan {plan.code!r}",
                )
            except EntitlementError as error:
                raise DefinitionError(f"feature {feature.code!r} would break {error}") from None
    old_feature = catalog.features.get(feature.code)
    catalog.features[feature.code] = feature
    return feature, old_feature


def plan_entitles(plan: Plan, feature_code: str) -> bool:
    return any(code == feature_code for code, _ in plan.entitlements)


def without_feature(plan: Plan, feature_code: str) -> Plan:
    """The plan with a deleted feature's entitlement taken out (its source too, so that the
    stored plan parses again)."""
    source = dict(plan.source)
    listed = source.get("entitlements")
    if isinstance(listed, list):
        source["entitlements"] = [
            item
            for item in listed
            if not (isinstance(item, Mapping) and item.get("feature_code") == feature_code)
        ]
    kept = tuple(item for item in plan.entitlements if item[0] != feature_code)
    return replace(plan, entitlements=kept, source=source)


def _optional_count(obj: Mapping[str, object], key: str, what: str) -> int | None:
    if obj.get(key) is None:
        return None
    value = _cents(obj, key, what)
    if value < 0:
        raise DefinitionError(f"{what}: {key} must not be negative")
    return value


# -- parsing -----------------------------------------------------------------------------------


def _text(obj: Mapping[str, object], key: str, what: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    text = text_id(value)
    if text is None:
        raise DefinitionError(f"{what}: {key} must be a non-empty string, got {value!r}")
    return text


def _required_text(obj: Mapping[str, object], key: str, what: str) -> str:
    text = _text(obj, key, what)
    assert text is not None
    return text


def _choice(
    obj: Mapping[str, object], key: str, allowed: frozenset[str], what: str, default: str = ""
) -> str:
    """One of `allowed`; anything else (a list, a number, an unknown word) is refused."""
    value = obj.get(key) or default
    if not isinstance(value, str) or value not in allowed:
        raise DefinitionError(f"{what}: {key} must be one of {sorted(allowed)}, got {value!r}")
    return value


def _flag(obj: Mapping[str, object], key: str, what: str, default: bool) -> bool:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise DefinitionError(f"{what}: {key} must be true or false, got {value!r}")
    return value


_CENTS_BOUND = 10**15  # spec §2's bound, for amounts in cents too


def _cents(obj: Mapping[str, object], key: str, what: str, default: int | None = None) -> int:
    """An integer number of cents below 10^15 in magnitude (an integral JSON decimal such as
    `1.0E+3` too), bounded before any arithmetic or conversion."""
    value = obj.get(key, default)
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and not _too_large(value)
        and value == value.to_integral_value(context=_QUIET)
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DefinitionError(
            f"{what}: {key} must be an integer number of cents, got {_short(value)}"
        )
    if not -_CENTS_BOUND < value < _CENTS_BOUND:
        raise DefinitionError(f"{what}: {key} is out of range (must be below 10^15)")
    return value


def _too_large(value: Decimal) -> bool:
    return bool(value) and value.adjusted() >= 15


def _short(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise DefinitionError(f"{what} must be an object, got {type(value).__name__}")
    return value


def parse_metric(obj: object) -> BillableMetric:
    body = _mapping(obj, "billable_metric")
    code = _required_text(body, "code", "billable_metric")
    what = f"billable metric {code!r}"
    aggregation = _choice(body, "aggregation_type", AGGREGATION_TYPES, what)
    field_name = _text(body, "field_name", what, required=aggregation != "count_agg")
    name = str(body.get("name") or code)
    return BillableMetric(code, name, aggregation, field_name, dict(body))


def parse_thresholds(value: object, what: str) -> Thresholds:
    if not isinstance(value, list):
        raise DefinitionError(f"{what}: usage_thresholds must be a list")
    fixed: list[UsageThreshold] = []
    recurring: list[UsageThreshold] = []
    for item in value:
        body = _mapping(item, f"{what}: usage threshold")
        amount = _cents(body, "amount_cents", f"{what}: usage threshold")
        if amount <= 0:
            raise DefinitionError(f"{what}: usage threshold amount_cents must be > 0")
        name = body.get("threshold_display_name")
        if name is not None and not isinstance(name, str):
            raise DefinitionError(f"{what}: threshold_display_name must be a string")
        threshold = UsageThreshold(amount, name, _flag(body, "recurring", what, False))
        (recurring if threshold.recurring else fixed).append(threshold)
    amounts = [t.amount_cents for t in fixed]
    if len(set(amounts)) != len(amounts):
        raise DefinitionError(f"{what}: two fixed usage thresholds with the same amount")
    if len(recurring) > 1:
        raise DefinitionError(f"{what}: at most one recurring usage threshold")
    fixed.sort(key=lambda t: t.amount_cents)
    return Thresholds(tuple(fixed), recurring[0] if recurring else None)


def parse_plan(
    obj: object,
    metrics: Mapping[str, BillableMetric],
    features: Mapping[str, Feature] | None = None,
) -> Plan:
    body = _mapping(obj, "plan")
    code = _required_text(body, "code", "plan")
    what = f"plan {code!r}"
    interval = _choice(body, "interval", INTERVALS, what)
    amount = _cents(body, "amount_cents", what, 0)
    if amount < 0:
        raise DefinitionError(f"{what}: amount_cents must not be negative")
    currency = _required_text(body, "amount_currency", what)
    charges = tuple(_parse_charge(item, metrics, what) for item in _list(body, "charges", what))
    by_metric = {charge.billable_metric_code: charge for charge in charges}
    if len(by_metric) != len(charges):
        raise DefinitionError(f"{what}: a plan charges a metric at most once")
    thresholds = parse_thresholds(body.get("usage_thresholds") or [], what)
    pay_in_advance = _flag(body, "pay_in_advance", what, False)
    name = str(body.get("name") or code)
    try:
        entitlements = parse_entitlements(body.get("entitlements"), features or {}, by_metric, what)
    except EntitlementError as error:
        raise DefinitionError(str(error)) from None
    return Plan(
        code,
        name,
        interval,
        amount,
        currency,
        pay_in_advance,
        charges,
        thresholds,
        by_metric,
        dict(body),
        entitlements,
    )


def _list(body: Mapping[str, object], key: str, what: str) -> list[object]:
    value = body.get(key) or []
    if not isinstance(value, list):
        raise DefinitionError(f"{what}: {key} must be a list")
    return value


def _parse_charge(obj: object, metrics: Mapping[str, BillableMetric], what: str) -> Charge:
    body = _mapping(obj, f"{what}: charge")
    metric_code = _required_text(body, "billable_metric_code", f"{what}: charge")
    metric = metrics.get(metric_code)
    if metric is None:
        raise DefinitionError(f"{what}: unknown billable metric {metric_code!r}")
    if body.get("pay_in_advance") or body.get("invoiceable") is False:
        raise DefinitionError(
            f"{what}: per-charge pay_in_advance and invoiceable=false are not supported yet"
        )
    model_name = str(body.get("charge_model"))
    properties = body.get("properties") or {}
    try:
        model = parse_charge_model(
            model_name, _mapping(properties, "properties"), metric.aggregation_type
        )
    except ValueError as error:
        raise DefinitionError(f"{what}: charge on {metric_code!r}: {error}") from None
    return Charge(metric_code, model_name, model)


def parse_customer(obj: object, defined_at: datetime | None = None) -> Customer:
    body = _mapping(obj, "customer")
    external_id = _required_text(body, "external_id", "customer")
    what = f"customer {external_id!r}"
    timezone = body.get("timezone") or "UTC"
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(f"{what}: unknown timezone {timezone!r}") from None
    taxes = []
    for item in _list(body, "taxes", what):
        tax = _mapping(item, f"{what}: tax")
        try:
            rate = parse_amount(tax.get("rate"), "rate")
        except ValueError as error:
            raise DefinitionError(f"{what}: tax: {error}") from None
        if rate < 0:
            raise DefinitionError(f"{what}: tax rate must not be negative")
        taxes.append(Tax(_required_text(tax, "code", f"{what}: tax"), rate))
    currency = _text(body, "currency", what, required=False)
    return Customer(external_id, currency, str(timezone), tuple(taxes), defined_at, dict(body))


def parse_subscription(obj: object) -> SubscriptionDefinition:
    body = _mapping(obj, "subscription")
    external_id = _required_text(body, "external_id", "subscription")
    what = f"subscription {external_id!r}"
    billing_time = _choice(body, "billing_time", BILLING_TIMES, what, "calendar")
    raw_at = body.get("subscription_at")
    subscription_at = None
    if raw_at is not None:
        try:
            subscription_at = parse_instant(raw_at)
        except ValueError as error:
            raise DefinitionError(f"{what}: subscription_at: {error}") from None
    raw_thresholds = body.get("usage_thresholds")
    thresholds = parse_thresholds(raw_thresholds, what) if raw_thresholds else None
    historical = _cents(body, "historical_usage_amount_cents", what, 0)
    if historical < 0:
        raise DefinitionError(f"{what}: historical_usage_amount_cents must not be negative")
    return SubscriptionDefinition(
        external_id=external_id,
        external_customer_id=_required_text(body, "external_customer_id", what),
        plan_code=_required_text(body, "plan_code", what),
        billing_time=billing_time,
        subscription_at=subscription_at,
        thresholds=thresholds,
        progressive_billing_disabled=_flag(body, "progressive_billing_disabled", what, False),
        historical_usage_amount_cents=historical,
    )


def applicable_thresholds(definition: SubscriptionDefinition, plan: Plan) -> Thresholds:
    """Spec §1: none when disabled; the subscription's own when non-empty; else the plan's."""
    if definition.progressive_billing_disabled:
        return NO_THRESHOLDS
    return definition.thresholds if definition.thresholds else plan.thresholds
