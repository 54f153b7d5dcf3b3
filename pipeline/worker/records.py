"""Kafka messages of the usage-events topic → engine records (decoded at the edge, here).

A message that does not decode becomes an `event` record carrying its raw text and the reason,
so the engine reports it (`malformed`) like any other bad input: nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.billing.engine import Record
from pipeline.wire import (
    AlertRecord,
    CatalogRecord,
    PaymentRecord,
    SchemaIds,
    SubscriptionRecord,
    Tick,
    WireError,
    decode_ledger_input,
    oversized,
)

RAW_PREVIEW_BYTES = 4096  # how much of an undecodable message an `event.error` body repeats


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message as the worker received it (framework-free)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    size: int = -1  # the original value's size when only its first bytes travel (intake)

    @property
    def ref(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Decoded:
    record: Record
    subscription: str | None  # the external subscription id the record is about, if any


def decode_message(message: InputMessage, ids: SchemaIds, max_bytes: int) -> Decoded:
    at, ref = message.at, message.ref
    try:
        if message.size > max_bytes:
            raise oversized(message.size, max_bytes)
        value = decode_ledger_input(message.value, ids=ids, max_bytes=max_bytes)
    except WireError as error:
        raw = (message.value or b"")[:RAW_PREVIEW_BYTES].decode("utf-8", errors="replace")
        return Decoded(Record(at, "event", raw, ref, error=error.message), _key(message))
    if isinstance(value, Tick):
        return Decoded(Record(at, "tick", None, ref), None)
    if isinstance(value, SubscriptionRecord):
        if value.action == "terminate":
            return Decoded(
                Record(at, "terminate_subscription", value.external_id, ref), value.external_id
            )
        return Decoded(Record(at, "subscription", value.subscription, ref), value.external_id)
    if isinstance(value, CatalogRecord):
        return Decoded(Record(at, value.kind, value.definition, ref), None)
    if isinstance(value, AlertRecord):
        return Decoded(Record(at, "alert", value.alert, ref), value.external_subscription_id)
    if isinstance(value, PaymentRecord):
        subscription_id = value.external_subscription_id
        return Decoded(Record(at, "invoice_payment", value.payment, ref), subscription_id)
    subscription = value.get("external_subscription_id")
    return Decoded(
        Record(at, "event", value, ref), str(subscription) if subscription is not None else None
    )


def _key(message: InputMessage) -> str | None:
    return message.key.decode("utf-8", errors="replace") if message.key else None
