"""Producing tollgate's input, for applications and the `tollgate` commands.

The worker reads one ordered input, the usage-events topic (see `pipeline.kernel.topics`). Per
partition it applies, in offset order: usage events and subscription records keyed by the
external subscription id (so a subscription and its events share a partition), and clock ticks
and catalogue definitions written to *every* partition (so each partition moves its clock and
applies a definition at a definite place). Every record's Kafka timestamp is the instant it
happens at: the billing clock moves with record timestamps.

`UsageProducer` writes those records with confluent-kafka: the `murmur2_random` partitioner (the
Java client's, which Faust and aiokafka use too), idempotence on, a short linger, and every
delivery report counted: a failed delivery makes `flush` raise, it is never dropped silently.

    with UsageProducer(settings.kafka_bootstrap, Topics.with_prefix(settings.topic_prefix)) as p:
        p.send_event({"transaction_id": "t1", "external_subscription_id": "sub-1",
                      "code": "tokens", "properties": {"tokens": 1200}})

`ensure_topics` (from `pipeline.clients.topic_admin`) creates the five topics with their
configurations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, cast, get_args

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pipeline.clients.topic_admin import HEADROOM, TopicError, ensure_topics, ensure_topics_for
from pipeline.kernel.errors import TollgateError
from pipeline.kernel.topics import Topics
from pipeline.wire import (
    DEFAULT_MAX_BYTES,
    DEFAULT_SCHEMA_IDS,
    INVALID,
    AlertRecord,
    CatalogKind,
    CatalogRecord,
    PaymentRecord,
    SchemaIds,
    SubscriptionRecord,
    WireError,
    dumps,
    encode_alert_record,
    encode_catalog_record,
    encode_payment_record,
    encode_subscription_record,
    encode_tick,
    encode_usage_event,
    schema_ids_from_env,
)
from pipeline.wire.records import id_text

CATALOG_KINDS: Final[tuple[str, ...]] = get_args(CatalogKind)
KEY_FIELDS: Final = {
    "billable_metric": "code",
    "plan": "code",
    "customer": "external_id",
    "feature": "code",
}
"""The field of each catalogue definition that names it (its key on the catalog topic)."""

__all__ = [
    "PRODUCER_CONFIG",
    "ProduceError",
    "TopicError",
    "UsageProducer",
    "ensure_topics",
    "ensure_topics_for",
    "event_key",
    "json_bytes",
    "schema_ids",
    "timestamp_ms",
]

PRODUCER_CONFIG: Final[Mapping[str, Any]] = {
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "linger.ms": 5,
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_MAX_ERRORS_SHOWN: Final = 3


class ProduceError(TollgateError):
    """Records could not be produced: a broker that does not answer, a missing topic, or
    deliveries that failed (the message names the topic, partition and Kafka's reason)."""


# --- the producer ------------------------------------------------------------------------------


def timestamp_ms(at: datetime) -> int:
    """A Kafka timestamp: whole milliseconds since the epoch (Kafka keeps no finer time)."""
    if at.tzinfo is None:
        raise ValueError(f"a record time must be timezone-aware, got {at.isoformat()}")
    ms = (at - _EPOCH) // _MILLISECOND
    if ms < 1:  # 0 tells librdkafka "now"; Kafka refuses negative timestamps
        raise ValueError(f"a record time must be after 1970-01-01T00:00:00Z, got {at.isoformat()}")
    return ms


def _utc_now() -> datetime:
    return datetime.now(UTC)


def schema_ids(environ: Mapping[str, str]) -> SchemaIds:
    """The schema id table of this process (`TOLLGATE_SCHEMA_IDS`, see docs/schemas.md)."""
    try:
        return schema_ids_from_env(environ)
    except ValueError as error:
        raise TollgateError(str(error)) from None


class UsageProducer:
    """Writes usage events, subscriptions, definitions and ticks into tollgate's input.

    Sending only queues (confluent-kafka batches on its own); `flush` waits for the deliveries
    and raises `ProduceError` if any failed. `delivered` and `failed` count delivery reports,
    `sent` counts messages queued. Each `at` is a timezone-aware datetime and becomes the Kafka
    timestamp; without one, the injected `clock` (wall time) is used. `max_message_bytes` is
    the worker's decoding limit (`TOLLGATE_MAX_MESSAGE_BYTES`): a message somewhat larger still
    goes out, so that the worker dead-letters it; `config` adds or replaces librdkafka settings.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        *,
        schema_ids: SchemaIds = DEFAULT_SCHEMA_IDS,
        avro: bool = True,
        max_message_bytes: int = DEFAULT_MAX_BYTES,
        config: Mapping[str, Any] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        flush_timeout: float = 60.0,
        metadata_timeout: float = 10.0,
    ) -> None:
        self.topics = topics
        self.schema_ids = schema_ids
        self.avro = avro
        self.flush_timeout = flush_timeout
        self.sent = self.delivered = self.failed = 0
        self._clock = clock
        self._errors: list[str] = []
        self._reported = 0
        self._fatal: str | None = None
        self._producer = Producer(
            {
                **PRODUCER_CONFIG,
                "bootstrap.servers": bootstrap,
                "message.max.bytes": max_message_bytes + HEADROOM,
                "error_cb": self._on_error,
                **(config or {}),
            }
        )
        self._existing = self._list_topics(bootstrap, metadata_timeout)
        usage = self._existing.get(topics.usage_events)
        if usage is None:
            raise ProduceError(
                f"topic {topics.usage_events} does not exist: create the topics first "
                "(`tollgate feed` and `tollgate catalog apply` do, or `ensure_topics`)"
            )
        self.partitions: int = usage
        """Partition count of the usage-events topic, read once when the producer starts."""

    def _list_topics(self, bootstrap: str, timeout: float) -> dict[str, int]:
        # All topics: asking for one topic by name makes the broker auto-create it.
        try:
            metadata = self._producer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise ProduceError(
                f"Kafka does not answer at {bootstrap}: {exc} (is the broker up? "
                "`tollgate dev up` starts the local one)"
            ) from None
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None and topic.partitions
        }

    # -- what applications send ------------------------------------------------------------------

    def send_event(self, event: Mapping[str, Any], *, at: datetime | None = None) -> None:
        """A Lago event, keyed by its external_subscription_id; Avro or JSON as configured.

        Lago's POST /events body `{"event": {...}}` is accepted too. Nothing is checked
        billing-wise (the worker rejects a bad event); `WireError("invalid")` when the event
        cannot be written at all (Avro: an id that is not a string or integer).
        """
        if self.avro:
            value = encode_usage_event(_unwrapped(event), ids=self.schema_ids)
        else:
            value = json_bytes(event, "event")
        self.send_raw_event(value, key=event_key(event), at=at)

    def send_raw_event(
        self, value: bytes, *, key: str | None = None, at: datetime | None = None
    ) -> None:
        """Bytes as they are on the usage-events topic (a JSON event, or anything, for tests)."""
        self._produce(self.topics.usage_events, value, key, at)

    def send_subscription(
        self, subscription: Mapping[str, Any], *, at: datetime | None = None
    ) -> None:
        """Create or update a subscription (a Lago subscription object), keyed by external_id."""
        if not isinstance(subscription, Mapping):
            raise WireError(INVALID, f"a subscription must be an object, got {subscription!r}")
        self._send_subscription(SubscriptionRecord.upsert(subscription), at)

    def terminate_subscription(self, external_id: str | int, at: datetime | None = None) -> None:
        """Terminate a subscription at `at` (default: now)."""
        record = SubscriptionRecord.terminate(id_text(external_id, "external_id"))
        self._send_subscription(record, at)

    def _send_subscription(self, record: SubscriptionRecord, at: datetime | None) -> None:
        value = encode_subscription_record(record, ids=self.schema_ids)
        self._produce(self.topics.usage_events, value, record.external_id, at)

    def send_alert(self, alert: Mapping[str, Any], *, at: datetime | None = None) -> None:
        """Create, update or delete (`"deleted": true`) a usage alert (spec §11), keyed by its
        external_subscription_id like subscription records. Avro, or Lago's POST body
        `{"alert": {...}}` as JSON when configured so or when Avro cannot carry its ids (the
        worker then refuses it, as replay does)."""
        if not isinstance(alert, Mapping):
            raise WireError(INVALID, f"an alert must be an object, got {alert!r}")
        record = AlertRecord.of(alert)
        self._send_keyed(record.external_subscription_id, "alert", record.alert, at)

    def send_payment(self, payment: Mapping[str, Any], *, at: datetime | None = None) -> None:
        """A change of an invoice's payment status (spec §12): `{lago_invoice_id,
        external_subscription_id, payment_status}`, keyed by the subscription. Avro, or
        `{"invoice_payment": {...}}` as JSON (as `send_alert`)."""
        if not isinstance(payment, Mapping):
            raise WireError(INVALID, f"a payment must be an object, got {payment!r}")
        record = PaymentRecord.of(payment)
        self._send_keyed(record.external_subscription_id, "invoice_payment", record.payment, at)

    def _send_keyed(
        self, key: str | None, kind: str, obj: dict[str, Any], at: datetime | None
    ) -> None:
        """An alert or payment record to the usage-events topic, keyed by its subscription:
        Avro, or `{kind: obj}` as JSON when configured so or when Avro cannot carry it."""
        try:
            value = self._encode_keyed(kind, obj) if self.avro else None
        except WireError:
            value = None
        if value is None:
            value = json_bytes({kind: obj}, kind)
        self._produce(self.topics.usage_events, value, key, at)

    def _encode_keyed(self, kind: str, obj: dict[str, Any]) -> bytes:
        if kind == "alert":
            return encode_alert_record(AlertRecord.of(obj), ids=self.schema_ids)
        return encode_payment_record(PaymentRecord.of(obj), ids=self.schema_ids)

    def send_definition(
        self, kind: str, definition: Mapping[str, Any], at: datetime | None = None
    ) -> None:
        """A billable metric, plan or customer: to the catalog topic (key `kind:code`) and to
        every partition of the usage-events topic, all with the same timestamp."""
        if kind not in KEY_FIELDS:
            raise ValueError(f"kind must be one of {list(CATALOG_KINDS)}, got {kind!r}")
        if not isinstance(definition, Mapping):
            raise WireError(INVALID, f"a {kind} definition must be an object, got {definition!r}")
        key = id_text(definition.get(KEY_FIELDS[kind]), f"{kind} {KEY_FIELDS[kind]}")
        record = CatalogRecord(cast(CatalogKind, kind), key, dict(definition))
        if self.topics.catalog not in self._existing:
            raise ProduceError(f"topic {self.topics.catalog} does not exist: create it first")
        value = encode_catalog_record(record, ids=self.schema_ids)
        when = self._at(at)
        self._produce(self.topics.catalog, value, record.kafka_key, when)
        self._broadcast(value, when)

    def tick(self, at: datetime, *, source: str = "producer") -> None:
        """A clock tick at `at` to every partition of the usage-events topic."""
        self._broadcast(encode_tick(source, ids=self.schema_ids), at)

    def _broadcast(self, value: bytes, at: datetime) -> None:
        for partition in range(self.partitions):
            self._produce(self.topics.usage_events, value, None, at, partition)

    # -- delivery --------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports for up to `timeout` seconds (a throttled sender's wait)."""
        self._producer.poll(timeout)

    def check(self) -> None:
        """Raise `ProduceError` for a fatal producer error or failures not reported yet."""
        if self._fatal is not None:
            raise ProduceError(f"the Kafka producer stopped: {self._fatal}")
        if self.failed > self._reported:
            new, self._reported = self.failed - self._reported, self.failed
            shown, self._errors = "; ".join(self._errors), []
            raise ProduceError(f"{new} of {self.sent} messages were not delivered: {shown}")

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every queued message is delivered; return how many were delivered so far.

        Raises `ProduceError` when a delivery failed or messages are still queued after
        `timeout` seconds (default: `flush_timeout`).
        """
        wait = self.flush_timeout if timeout is None else timeout
        left = self._producer.flush(wait)
        self.check()
        if left:
            raise ProduceError(
                f"{left} messages still not delivered after {wait:g} s (does the broker answer?)"
            )
        return self.delivered

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.flush()
            return
        with contextlib.suppress(ProduceError):  # deliver what was queued; the leaving error wins
            self.flush(min(self.flush_timeout, 5.0))

    def _at(self, at: datetime | None) -> datetime:
        return self._clock() if at is None else at

    def _produce(
        self, topic: str, value: bytes, key: str | None, at: datetime | None, partition: int = -1
    ) -> None:
        self.check()
        timestamp = timestamp_ms(self._at(at))
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    on_delivery=self._on_delivery,
                    timestamp=timestamp,
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise ProduceError(f"could not produce to {topic}: {exc.args[0]}") from None
        self.sent += 1
        self._producer.poll(0)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        if len(self._errors) < _MAX_ERRORS_SHOWN:
            where = f"{message.topic()} [{message.partition()}]"
            self._errors.append(f"{where}: {error.str()}")

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error.str()


def event_key(event: Mapping[str, Any]) -> str | None:
    """The partition key of an event (bare, or Lago's POST body `{"event": {...}}`): its
    external_subscription_id when it is a string or an integer, else none (any partition)."""
    value = _unwrapped(event).get("external_subscription_id")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _unwrapped(event: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = event.get("event")
    return inner if len(event) == 1 and isinstance(inner, Mapping) else event


def json_bytes(value: Any, what: str) -> bytes:
    try:
        return dumps(value).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise WireError(INVALID, f"{what} is not JSON: {error}") from None
