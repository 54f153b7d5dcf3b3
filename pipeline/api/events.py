"""Lago's event bodies: the shape checks §8 names `invalid` before anything is published, and
Lago's event object for the answer.

Only shape is checked here (ids, timestamp, properties); whether the subscription, the metric
or the value bill is the worker's to decide, in order with everything else, and arrives as
webhooks (`event.error`) and dead letters, as for any producer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.billing.events import EventShapeError, read_event
from pipeline.billing.ids import stable_id
from pipeline.billing.timestamps import iso
from pipeline.wire import SchemaIds, WireError, encode_usage_event

MAX_BATCH = 100
"""Events in one `POST /api/v1/events/batch`, as Lago."""


class EventRefused(ValueError):
    """The event cannot be published: {field: [problems]} for Lago's `error_details`."""

    def __init__(self, details: dict[str, list[str]]) -> None:
        super().__init__(str(details))
        self.details = details


def checked(event: Any, ids: SchemaIds) -> tuple[str, bytes, dict[str, Any]]:
    """(key, Avro value, the event as read) for an event whose shape is valid."""
    if not isinstance(event, dict):
        raise EventRefused({"event": ["must be an object"]})
    try:
        subscription = read_event(event)[1]
    except EventShapeError as error:
        raise EventRefused({_field_of(str(error)): [str(error)]}) from None
    try:
        value = encode_usage_event(event, ids=ids)
    except WireError as error:
        raise EventRefused({"event": [error.message]}) from None
    return subscription, value, event


def event_object(event: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Lago's event object for an accepted request (`lago_id` derived from the event's ids;
    the customer and subscription ids are the worker's to resolve, so null here)."""
    transaction_id, subscription, code, timestamp, properties = read_event(event)
    precise = event.get("precise_total_amount_cents")
    return {
        "lago_id": stable_id("event", subscription, transaction_id),
        "transaction_id": transaction_id,
        "lago_customer_id": None,
        "lago_subscription_id": None,
        "external_subscription_id": subscription,
        "code": code,
        "timestamp": iso(timestamp or now),
        "precise_total_amount_cents": None if precise is None else str(precise),
        "properties": dict(properties),
        "created_at": iso(now),
    }


def _field_of(message: str) -> str:
    """The field an `EventShapeError` names first ("timestamp: ...", "code must be ...")."""
    head = message.split(":", 1)[0].split(" ", 1)[0]
    return head if head.replace("_", "").isalnum() else "event"
