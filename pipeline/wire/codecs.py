"""Typed codecs for each topic's values, on top of the generic Avro `encode` / `decode`.

JSON texts inside records (`properties_json`, `definition_json`, `subscription_json`,
`body_json`) are written with `jsontext.dumps` and read with `jsontext.loads`, so numbers stay
exact (`Decimal`, never float). Every decoder raises `WireError("malformed")` for bytes it cannot
decode and returns plain values otherwise: checking what the values mean is the engine's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, cast

from pipeline.wire.avro import (
    DEFAULT_MAX_BYTES,
    DEFAULT_SCHEMA_IDS,
    SchemaIds,
    check_size,
    decode,
    encode,
)
from pipeline.wire.batches import read_frames, write_frames
from pipeline.wire.errors import INVALID, MALFORMED, WireError
from pipeline.wire.jsontext import dumps, loads
from pipeline.wire.records import (
    AlertRecord,
    CatalogKind,
    CatalogRecord,
    DeadLetter,
    OutputRecord,
    PaymentRecord,
    SubscriptionAction,
    SubscriptionRecord,
    Tick,
    UsageBatch,
    id_text,
)

_EVENT_IDS: Final = ("transaction_id", "external_subscription_id", "code")
_JSON_WHITESPACE: Final = b" \t\r\n"


# --- usage events ------------------------------------------------------------------------------


def encode_usage_event(event: Mapping[str, Any], *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    """A Lago event dict as Avro. Ids given as integers and numeric timestamps become their text.

    Only the five Lago event fields travel; `WireError("invalid")` if one cannot be written.
    """
    record: dict[str, str | None] = {name: id_text(event.get(name), name) for name in _EVENT_IDS}
    record["timestamp"] = _timestamp_text(event.get("timestamp"))
    record["properties_json"] = _dumps(event.get("properties", {}), "properties")
    return encode("usage_event", record, ids=ids)


def decode_usage_event(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """The Lago event dict of a usage-events message: Avro (first byte 0x00) or a JSON object.

    JSON may be the bare event or Lago's POST /events body `{"event": {...}}`. Field types are
    not checked (a wrongly typed id is the engine's `invalid`); anything that does not decode is
    `WireError("malformed")`, a clock tick included.
    """
    if data and data[0] == 0:
        return _event_from_avro(decode(data, ids=ids, accept=("usage_event",), max_bytes=max_bytes))
    return _event_from_json(data, max_bytes)


def decode_usage_topic(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any] | Tick:
    """Anything the usage-events topic carries: a Lago event dict (Avro or JSON) or a `Tick`."""
    if data and data[0] == 0:
        accept = ("usage_event", "clock_tick")
        schema_name, record = decode(data, ids=ids, accept=accept, max_bytes=max_bytes)
        if schema_name == "clock_tick":
            return Tick(record["source"])
        return _event_from_avro((schema_name, record))
    return _event_from_json(data, max_bytes)


def _event_from_avro(decoded: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    record = decoded[1]
    event = {name: record[name] for name in _EVENT_IDS}
    if record["timestamp"] is not None:
        event["timestamp"] = record["timestamp"]
    event["properties"] = _loads(record["properties_json"], "properties_json")
    return event


def _event_from_json(data: bytes | None, max_bytes: int) -> dict[str, Any]:
    data = check_size(data, max_bytes)
    if data.lstrip(_JSON_WHITESPACE)[:1] != b"{":
        raise WireError(MALFORMED, _not_an_event(data))
    event = _loads_object(data, "event")
    inner = event.get("event")
    if len(event) == 1 and isinstance(inner, dict):
        return inner
    return event


def _not_an_event(data: bytes) -> str:
    try:
        value = loads(data.decode("utf-8"))
    except ValueError:
        return (
            f"neither Confluent Avro (magic byte 0x00) nor a JSON object: starts with {data[:16]!r}"
        )
    return f"a JSON {_json_type(value)} is not an event object"


# --- catalog, subscriptions, ticks -------------------------------------------------------------


def encode_catalog_record(record: CatalogRecord, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    value = {
        "kind": record.kind,
        "key": record.key,
        "definition_json": _dumps(record.definition, "definition"),
    }
    return encode("catalog_record", value, ids=ids)


def decode_catalog_record(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> CatalogRecord:
    _, record = decode(data, ids=ids, accept=("catalog_record",), max_bytes=max_bytes)
    return _catalog_from_avro(record)


def _catalog_from_avro(record: dict[str, Any]) -> CatalogRecord:
    definition = _loads_object(record["definition_json"], "definition_json")
    return CatalogRecord(cast(CatalogKind, record["kind"]), record["key"], definition)


def encode_subscription_record(
    record: SubscriptionRecord, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS
) -> bytes:
    """`WireError("invalid")` unless an upsert carries a subscription and a terminate none."""
    if (record.action == "upsert") != (record.subscription is not None):
        raise WireError(INVALID, f"a {record.action} record {_carries(record.action)}")
    text = None if record.subscription is None else _dumps(record.subscription, "subscription")
    value = {"action": record.action, "external_id": record.external_id, "subscription_json": text}
    return encode("subscription_record", value, ids=ids)


def decode_subscription_record(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> SubscriptionRecord:
    decoded = decode(data, ids=ids, accept=("subscription_record",), max_bytes=max_bytes)
    return _subscription_from_avro(decoded[1])


def decode_subscriptions_topic(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> SubscriptionRecord | Tick:
    """Anything the subscriptions topic carries: a `SubscriptionRecord` or a `Tick`."""
    accept = ("subscription_record", "clock_tick")
    schema_name, record = decode(data, ids=ids, accept=accept, max_bytes=max_bytes)
    if schema_name == "clock_tick":
        return Tick(record["source"])
    return _subscription_from_avro(record)


def decode_ledger_input(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any] | Tick | SubscriptionRecord | CatalogRecord | AlertRecord | PaymentRecord:
    """Anything the usage-events topic carries, in the one order the worker applies it: usage
    events (Avro or JSON), clock ticks, subscription and alert records, and catalog records
    (written to every partition so that each partition applies a definition at a definite
    place). JSON `{"alert": {...}}` (Lago's POST body shape) is an alert record."""
    if not data or data[0] != 0:
        event = _event_from_json(data, max_bytes)
        inner = event.get("alert")
        if len(event) == 1 and isinstance(inner, dict):
            return AlertRecord.of(inner)
        payment = event.get("invoice_payment")
        if len(event) == 1 and isinstance(payment, dict):
            return PaymentRecord.of(payment)
        return event
    accept = (
        "usage_event",
        "clock_tick",
        "subscription_record",
        "catalog_record",
        "alert_record",
        "invoice_payment_record",
    )
    schema_name, record = decode(data, ids=ids, accept=accept, max_bytes=max_bytes)
    if schema_name == "clock_tick":
        return Tick(record["source"])
    if schema_name == "subscription_record":
        return _subscription_from_avro(record)
    if schema_name == "catalog_record":
        return _catalog_from_avro(record)
    if schema_name == "alert_record":
        return _alert_from_avro(record)
    if schema_name == "invoice_payment_record":
        return PaymentRecord(record["external_subscription_id"], dict(record))
    return _event_from_avro((schema_name, record))


def encode_payment_record(record: PaymentRecord, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    """`WireError("invalid")` when a field is not text (JSON carries such a payment to the
    engine, which refuses it)."""
    payment = record.payment
    status = payment.get("payment_status")
    if not isinstance(status, str):
        raise WireError(INVALID, f"payment_status must be a string, got {status!r}")
    value = {
        "lago_invoice_id": id_text(payment.get("lago_invoice_id"), "lago_invoice_id"),
        "external_subscription_id": id_text(
            payment.get("external_subscription_id"), "external_subscription_id"
        ),
        "payment_status": status,
    }
    return encode("invoice_payment_record", value, ids=ids)


def decode_payment_record(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> PaymentRecord:
    _, record = decode(data, ids=ids, accept=("invoice_payment_record",), max_bytes=max_bytes)
    return PaymentRecord(record["external_subscription_id"], dict(record))


def encode_alert_record(record: AlertRecord, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    """`WireError("invalid")` when the alert's subscription id or code is not a string or an
    integer (JSON carries such an alert to the engine, which refuses it)."""
    alert = record.alert
    value = {
        "external_subscription_id": id_text(
            alert.get("external_subscription_id"), "external_subscription_id"
        ),
        "code": id_text(alert.get("code"), "code"),
        "deleted": record.deleted,
        "alert_json": None if record.deleted else _dumps(alert, "alert"),
    }
    return encode("alert_record", value, ids=ids)


def decode_alert_record(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> AlertRecord:
    _, record = decode(data, ids=ids, accept=("alert_record",), max_bytes=max_bytes)
    return _alert_from_avro(record)


def _alert_from_avro(record: dict[str, Any]) -> AlertRecord:
    subscription, code, text = (
        record["external_subscription_id"],
        record["code"],
        record["alert_json"],
    )
    if record["deleted"] != (text is None):
        raise WireError(MALFORMED, "an alert record carries alert_json unless it is a deletion")
    if text is None:
        return AlertRecord(
            subscription, {"external_subscription_id": subscription, "code": code, "deleted": True}
        )
    return AlertRecord(subscription, _loads_object(text, "alert_json"))


def _subscription_from_avro(record: dict[str, Any]) -> SubscriptionRecord:
    action = cast(SubscriptionAction, record["action"])
    text = record["subscription_json"]
    if (action == "upsert") != (text is not None):
        raise WireError(MALFORMED, f"a {action} record {_carries(action)}")
    subscription = None if text is None else _loads_object(text, "subscription_json")
    return SubscriptionRecord(action, record["external_id"], subscription)


def _carries(action: str) -> str:
    return "needs a subscription" if action == "upsert" else "carries no subscription"


def encode_tick(source: str = "ticker", *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    return encode("clock_tick", {"source": source}, ids=ids)


def decode_tick(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> Tick:
    _, record = decode(data, ids=ids, accept=("clock_tick",), max_bytes=max_bytes)
    return Tick(record["source"])


# --- outputs and dead letters ------------------------------------------------------------------


def encode_output(record: OutputRecord, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    value = {
        "id": record.id,
        "webhook_type": record.webhook_type,
        "object_type": record.object_type,
        "external_subscription_id": record.external_subscription_id,
        "external_customer_id": record.external_customer_id,
        "body_json": _dumps(record.body, "body"),
    }
    return encode("output", value, ids=ids)


def decode_output(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> OutputRecord:
    """The output record; `dumps(record.body)` gives back `body_json` character for character."""
    _, record = decode(data, ids=ids, accept=("output",), max_bytes=max_bytes)
    return OutputRecord(
        record["id"],
        record["webhook_type"],
        record["object_type"],
        record["external_subscription_id"],
        record["external_customer_id"],
        _loads_object(record["body_json"], "body_json"),
    )


def encode_dead_letter(record: DeadLetter, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    value = {
        "reason": record.reason,
        "message": record.message,
        "source_topic": record.source_topic,
        "source_partition": record.source_partition,
        "source_offset": record.source_offset,
        "original": record.original,
        "external_subscription_id": record.external_subscription_id,
    }
    return encode("dead_letter", value, ids=ids)


def decode_dead_letter(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> DeadLetter:
    """Dead letters carry whole input messages, so pass a `max_bytes` above the inputs' limit."""
    _, record = decode(data, ids=ids, accept=("dead_letter",), max_bytes=max_bytes)
    return DeadLetter(**record)


# --- usage batches (intake → worker) ----------------------------------------------------------


def encode_usage_batch(batch: UsageBatch, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS) -> bytes:
    return encode_framed_batch(
        batch.source_topic,
        batch.source_partition,
        batch.from_offset,
        len(batch.messages),
        write_frames(batch.messages),
        ids=ids,
    )


def encode_framed_batch(
    source_topic: str,
    source_partition: int,
    from_offset: int,
    count: int,
    frames: bytes,
    *,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
) -> bytes:
    """A usage batch whose messages are already framed (the intake frames them as it reads)."""
    value = {
        "source_topic": source_topic,
        "source_partition": source_partition,
        "from_offset": from_offset,
        "count": count,
        "frames": frames,
    }
    return encode("usage_batch", value, ids=ids)


def decode_usage_batch(
    data: bytes | None, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, max_bytes: int = DEFAULT_MAX_BYTES
) -> UsageBatch:
    """A batch carries whole input messages: pass a `max_bytes` above the batch size bound."""
    _, record = decode(data, ids=ids, accept=("usage_batch",), max_bytes=max_bytes)
    messages = read_frames(record["frames"], record["count"])
    return UsageBatch(
        record["source_topic"], record["source_partition"], record["from_offset"], messages
    )


# --- helpers -----------------------------------------------------------------------------------


def _timestamp_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise WireError(INVALID, f"timestamp must be a number or a string, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        return format(value, "f")  # plain digits: 1E+9 is written 1000000000
    raise WireError(INVALID, f"timestamp must be a number or a string, got {value!r}")


def _dumps(value: Any, field: str) -> str:
    try:
        return dumps(value)
    except (TypeError, ValueError) as error:
        raise WireError(INVALID, f"{field} is not JSON: {error}") from None


def _loads(text: str | bytes, field: str) -> Any:
    try:
        return loads(text if isinstance(text, str) else text.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise WireError(MALFORMED, f"{field}: not UTF-8 text: {error}") from None
    except ValueError as error:
        raise WireError(MALFORMED, f"{field}: {error}") from None


def _loads_object(text: str | bytes, field: str) -> dict[str, Any]:
    value = _loads(text, field)
    if not isinstance(value, dict):
        raise WireError(MALFORMED, f"{field} holds a JSON {_json_type(value)}, not an object")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | Decimal) else "object"
