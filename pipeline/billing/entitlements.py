"""Features, entitlements and the access decision (spec §12).

A feature is a catalogue definition with typed privileges and an optional metered quota; plans
entitle features, subscriptions override or remove them. The access decision answers, from the
same state that bills, whether a subscription may use a feature at the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipeline.billing.ids import text_id

VALUE_TYPES = frozenset({"integer", "string", "boolean", "select"})
PAYMENT_STATUSES = frozenset({"pending", "succeeded", "failed"})

UNKNOWN_SUBSCRIPTION = "unknown_subscription"
SUBSCRIPTION_INACTIVE = "subscription_inactive"
FEATURE_NOT_ENTITLED = "feature_not_entitled"
PAYMENT_OVERDUE = "payment_overdue"
QUOTA_EXHAUSTED = "quota_exhausted"
ALLOWED = "allowed"


def payment_status_problem(value: object) -> str:
    """Why `value` is not a payment status of spec §12 ("" when it is one)."""
    if isinstance(value, str) and value in PAYMENT_STATUSES:
        return ""
    return f"payment_status must be one of {sorted(PAYMENT_STATUSES)}, got {value!r}"


class EntitlementError(ValueError):
    """A feature or entitlement that spec §12 refuses (reported as a definition error)."""


@dataclass(frozen=True, slots=True)
class Privilege:
    code: str
    name: str | None
    value_type: str
    config: Any  # a dict or None
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Feature:
    code: str
    name: str | None
    description: str | None
    privileges: tuple[Privilege, ...]
    quota_metric: str | None = None
    quota_privilege: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def privilege(self, code: str) -> Privilege | None:
        for privilege in self.privileges:
            if privilege.code == code:
                return privilege
        return None


# An entitlement: (feature code, ((privilege code, value), ...)), values already typed.
Entitlement = tuple[str, tuple[tuple[str, Any], ...]]


def _optional_text(body: Mapping[str, Any], key: str, what: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise EntitlementError(f"{what}: {key} must be a string")
    return value


def parse_feature(obj: object, metrics: Mapping[str, Any]) -> Feature:
    if not isinstance(obj, Mapping):
        raise EntitlementError("feature must be an object")
    code = text_id(obj.get("code"))
    if code is None:
        raise EntitlementError(f"feature: code must be a non-empty string, got {obj.get('code')!r}")
    what = f"feature {code!r}"
    raw = obj.get("privileges") or []
    if not isinstance(raw, list):
        raise EntitlementError(f"{what}: privileges must be a list")
    privileges: list[Privilege] = []
    for item in raw:
        privileges.append(_parse_privilege(item, what))
    codes = [p.code for p in privileges]
    if len(set(codes)) != len(codes):
        raise EntitlementError(f"{what}: privilege codes must be unique")
    feature = Feature(
        code,
        _optional_text(obj, "name", what),
        _optional_text(obj, "description", what),
        tuple(privileges),
        source=dict(obj),
    )
    quota = obj.get("quota")
    if quota is None:
        return feature
    if not isinstance(quota, Mapping):
        raise EntitlementError(f"{what}: quota must be an object")
    metric = text_id(quota.get("billable_metric_code"))
    privilege_code = text_id(quota.get("privilege_code"))
    if metric is None or metric not in metrics:
        raise EntitlementError(f"{what}: quota names unknown billable metric {metric!r}")
    quota_privilege = feature.privilege(privilege_code or "")
    if quota_privilege is None or quota_privilege.value_type != "integer":
        raise EntitlementError(
            f"{what}: quota privilege {privilege_code!r} must be an integer privilege of it"
        )
    return Feature(
        code,
        feature.name,
        feature.description,
        feature.privileges,
        metric,
        quota_privilege.code,
        dict(obj),
    )


def _parse_privilege(item: object, what: str) -> Privilege:
    if not isinstance(item, Mapping):
        raise EntitlementError(f"{what}: a privilege must be an object")
    code = text_id(item.get("code"))
    if code is None:
        raise EntitlementError(f"{what}: privilege code must be a non-empty string")
    value_type = item.get("value_type")
    if not isinstance(value_type, str) or value_type not in VALUE_TYPES:
        raise EntitlementError(
            f"{what}: privilege {code!r}: value_type must be one of {sorted(VALUE_TYPES)}, "
            f"got {value_type!r}"
        )
    config = item.get("config")
    options: tuple[str, ...] = ()
    if value_type == "select":
        raw = config.get("select_options") if isinstance(config, Mapping) else None
        if not isinstance(raw, list) or not raw or not all(isinstance(o, str) for o in raw):
            raise EntitlementError(
                f"{what}: privilege {code!r}: a select needs config.select_options, "
                "a non-empty list of strings"
            )
        options = tuple(raw)
    elif config is not None and not isinstance(config, Mapping):
        raise EntitlementError(f"{what}: privilege {code!r}: config must be an object")
    return Privilege(
        code,
        _optional_text(item, "name", f"{what}: privilege {code!r}"),
        value_type,
        dict(config) if isinstance(config, Mapping) else None,
        options,
    )


def parse_entitlements(
    value: object,
    features: Mapping[str, Feature],
    charged: Mapping[str, Any],
    what: str,
) -> tuple[Entitlement, ...]:
    """`[{feature_code, privileges: {code: value}}]`, checked against the features and the
    metrics the plan charges (a metered feature needs its metric charged)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EntitlementError(f"{what}: entitlements must be a list")
    out: list[Entitlement] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, Mapping):
            raise EntitlementError(f"{what}: an entitlement must be an object")
        code = text_id(item.get("feature_code"))
        feature = features.get(code or "")
        if code is None or feature is None:
            raise EntitlementError(f"{what}: unknown feature {item.get('feature_code')!r}")
        if code in seen:
            raise EntitlementError(f"{what}: feature {code!r} is entitled twice")
        seen.add(code)
        if feature.quota_metric is not None and feature.quota_metric not in charged:
            raise EntitlementError(
                f"{what}: metered feature {code!r} needs a charge on {feature.quota_metric!r}"
            )
        raw = item.get("privileges") or {}
        if not isinstance(raw, Mapping):
            raise EntitlementError(f"{what}: feature {code!r}: privileges must be an object")
        values: list[tuple[str, Any]] = []
        for key in sorted(raw):
            privilege = feature.privilege(str(key))
            if privilege is None:
                raise EntitlementError(f"{what}: feature {code!r} has no privilege {key!r}")
            values.append((privilege.code, _typed(privilege, raw[key], f"{what}: {code}.{key}")))
        out.append((code, tuple(values)))
    return tuple(out)


def _typed(privilege: Privilege, value: object, what: str) -> Any:
    kind = privilege.value_type
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**15:
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 16:
            return int(value)
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind == "string":
        if isinstance(value, str):
            return value
    elif isinstance(value, str) and value in privilege.options:
        return value
    raise EntitlementError(f"{what}: {value!r} is not a valid {kind} value")


def parse_removed(value: object, features: Mapping[str, Feature], what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EntitlementError(f"{what}: removed_features must be a list")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in features:
            raise EntitlementError(f"{what}: removed_features names unknown feature {item!r}")
        out.append(item)
    return tuple(sorted(set(out)))


# -- effective entitlements --------------------------------------------------------------------

# feature code -> privilege code -> (plan value, override value); None = no value there.
Effective = dict[str, dict[str, tuple[Any, Any]]]


def effective(
    plan: tuple[Entitlement, ...],
    overrides: tuple[Entitlement, ...],
    removed: tuple[str, ...],
    features: Mapping[str, Feature],
) -> Effective:
    """The plan's, then the overrides, then the removals; features no longer defined drop."""
    result: Effective = {}
    for code, values in plan:
        if code in features:
            privileges = result.setdefault(code, {})
            for key, value in values:
                privileges[key] = (value, None)
    for code, values in overrides:
        if code in features:
            privileges = result.setdefault(code, {})
            for key, value in values:
                privileges[key] = (privileges.get(key, (None, None))[0], value)
    for code in removed:
        result.pop(code, None)
    return result


def privilege_value(values: tuple[Any, Any]) -> Any:
    plan_value, override_value = values
    return override_value if override_value is not None else plan_value


def feature_object(feature: Feature, values: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    """Lago's entitlement shape for one feature."""
    privileges = []
    overrides: dict[str, Any] = {}
    for privilege in feature.privileges:
        pair = values.get(privilege.code, (None, None))
        if pair[1] is not None:
            overrides[privilege.code] = pair[1]
        privileges.append(
            {
                "code": privilege.code,
                "name": privilege.name,
                "value_type": privilege.value_type,
                "config": privilege.config or {},
                "value": privilege_value(pair),
                "plan_value": pair[0],
                "override_value": pair[1],
            }
        )
    return {
        "code": feature.code,
        "name": feature.name,
        "description": feature.description,
        "privileges": privileges,
        "overrides": overrides,
    }


def allowance(feature: Feature, values: Mapping[str, tuple[Any, Any]]) -> int | None:
    """The per-period allowance of a metered feature (None: unlimited or not metered)."""
    if feature.quota_privilege is None:
        return None
    value = privilege_value(values.get(feature.quota_privilege, (None, None)))
    return value if isinstance(value, int) else None


def remaining_units(limit: int, units: Decimal) -> Any:
    left = Decimal(limit) - units
    if left <= 0:
        return 0
    return int(left) if left == left.to_integral_value() else left
