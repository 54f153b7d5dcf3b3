"""Reading a usage event (spec §1, §8): shape first, then its value for the metric."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from pipeline.billing.aggregation import unique_key
from pipeline.billing.catalog import BillableMetric
from pipeline.billing.ids import text_id
from pipeline.billing.money import NotANumber, parse_number
from pipeline.billing.timestamps import parse_instant

_BOUND = 10**15


UsageEvent = tuple[str, str, str, datetime | None, Mapping[str, object]]
"""A usage event whose shape is valid: (transaction_id, external_subscription_id, code,
timestamp or None for the record's time, properties). A plain tuple: made once per event."""

_NO_PROPERTIES: Mapping[str, object] = {}


class EventShapeError(ValueError):
    """The event's shape is wrong (spec §8 `invalid`, checked before the subscription)."""


def read_event(payload: Mapping[str, object]) -> UsageEvent:
    """The event's ids, timestamp and properties, or `EventShapeError` naming the bad field."""
    # The per-event path: plain non-empty strings are the common case and are checked inline.
    transaction_id = payload.get("transaction_id")
    if type(transaction_id) is not str or not transaction_id:
        transaction_id = _identifier(payload, "transaction_id")
    subscription = payload.get("external_subscription_id")
    if type(subscription) is not str or not subscription:
        subscription = _identifier(payload, "external_subscription_id")
    code = payload.get("code")
    if type(code) is not str or not code:
        code = _identifier(payload, "code")
    raw_timestamp = payload.get("timestamp")
    timestamp = None
    if raw_timestamp is not None:
        try:
            timestamp = parse_instant(raw_timestamp)
        except ValueError as error:
            raise EventShapeError(f"timestamp: {error}") from None
    properties = payload.get("properties")
    if properties is None:
        properties = _NO_PROPERTIES
    elif type(properties) is not dict and not isinstance(properties, Mapping):
        raise EventShapeError(f"properties must be an object, got {type(properties).__name__}")
    return (transaction_id, subscription, code, timestamp, properties)


def event_subscription_id(payload: Mapping[str, object]) -> str | None:
    """The external subscription id if it is usable, for routing an error to its subscription."""
    return text_id(payload.get("external_subscription_id"))


def _identifier(payload: Mapping[str, object], key: str) -> str:
    value = payload.get(key)
    text = text_id(value)
    if text is None:
        raise EventShapeError(f"{key} must be a non-empty string, got {value!r}")
    return text


def metric_value(metric: BillableMetric, properties: Mapping[str, object]) -> Decimal | str | None:
    """The value the metric aggregates, or `NotANumber` (spec §8 `invalid`) with the reason."""
    if metric.aggregation_type == "count_agg":
        return None
    assert metric.field_name is not None
    raw = properties.get(metric.field_name)
    if raw is None:
        raise NotANumber(f"property {metric.field_name!r} is missing")
    if type(raw) is int and -_BOUND < raw < _BOUND:
        return unique_key(raw) if metric.aggregation_type == "unique_count_agg" else Decimal(raw)
    try:
        if metric.aggregation_type == "unique_count_agg":
            return unique_key(raw)
        return parse_number(raw)
    except ValueError as error:
        raise NotANumber(f"property {metric.field_name!r}: {error}") from None
