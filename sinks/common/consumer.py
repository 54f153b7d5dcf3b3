"""The consume-batch-commit loop both sinks share: outputs topic in, one PostgreSQL transaction
per batch out, offsets stored in that same transaction.

- Offsets live in `consumer_offsets` (offsets.py). On every assignment the consumer seeks
  to the stored offsets (the beginning of the partition when none is stored: writes are
  idempotent). Kafka gets the same offsets afterwards, asynchronously, only so that consumer
  lag shows in the usual tools; nothing reads them back.
- A message that does not decode, or that the sink cannot store, goes to the dead-letter topic
  (reason `malformed` or `invalid`) before the batch commits, and the loop goes on.
- PostgreSQL going away makes `Database.transaction` retry the same batch until it is back.
- SIGTERM / SIGINT (the `stop` event) and `--idle-exit` end the loop between batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from pipeline.wire import (
    DEFAULT_SCHEMA_IDS,
    INVALID,
    OutputRecord,
    SchemaIds,
    WireError,
    decode_output,
)
from sinks.common import metrics
from sinks.common.db import Connection, Database, Stopped
from sinks.common.dead_letters import SinkError, Unusable, write_dead_letters
from sinks.common.offsets import load_offsets, store_offsets
from sinks.common.runtime import Activity, Clock

log = logging.getLogger("tollgate.sinks.consumer")

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)

SESSION_TIMEOUT_MS = 10_000
"""A sink that dies without leaving its group (kill -9, lost host) holds its partitions this
long before the group hands them to the others (librdkafka's default is 45 s)."""


class Unstorable(ValueError):
    """Raised by `BatchWriter.prepare` for an output it cannot store: dead-lettered `invalid`."""


@dataclass(frozen=True, slots=True)
class Consumed:
    """One decoded output with where it came from; `event_at` is its Kafka timestamp."""

    record: OutputRecord
    partition: int
    offset: int
    event_at: datetime


@dataclass(frozen=True, slots=True)
class Written:
    """Rows one batch inserted and tried to insert, by table (the difference: duplicates)."""

    inserted: Mapping[str, int]
    attempted: Mapping[str, int]


class BatchWriter(Protocol, Generic[P]):
    """What a sink plugs into the loop: a pure `prepare` per output, one `write` per batch."""

    sink: str

    def prepare(self, item: Consumed) -> P | None:
        """The rows to write for one output; None when this sink has nothing to store."""
        ...

    def write(self, conn: Connection, items: Sequence[P], now: datetime) -> Written:
        """Insert the batch inside the loop's transaction (INSERT ... ON CONFLICT DO NOTHING)."""
        ...


@dataclass(frozen=True, slots=True)
class LoopConfig:
    bootstrap: str
    topic: str
    dead_letter_topic: str
    group: str
    batch_size: int
    batch_wait: float
    ids: SchemaIds = DEFAULT_SCHEMA_IDS  # TOLLGATE_SCHEMA_IDS: how the outputs are decoded


@dataclass(slots=True)
class LoopStats:
    consumed: int = 0
    batches: int = 0
    dead_letters: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Batch(Generic[P]):
    decoded: list[Consumed] = field(default_factory=list)
    rows: list[P] = field(default_factory=list)
    dead: list[Unusable] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)


def consume_outputs(
    config: LoopConfig,
    db: Database,
    writer: BatchWriter[P],
    *,
    stop: threading.Event,
    activity: Activity,
    clock: Clock,
) -> LoopStats:
    """Run until `stop` is set or `activity` expires; returns what was done."""
    stats = LoopStats()
    waiting = [True]  # for the first assignment: idle time starts after it
    activity.hold()
    consumer = Consumer(_consumer_settings(config))
    producer = Producer({"bootstrap.servers": config.bootstrap, "enable.idempotence": True})

    def on_assign(kafka: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [partition.partition for partition in partitions]
        stored = db.transaction(
            lambda conn: load_offsets(conn, config.group, config.topic, numbers)
        )
        for partition in partitions:
            partition.offset = stored.get(partition.partition, OFFSET_BEGINNING)
        kafka.assign(partitions)
        if waiting:
            waiting.clear()
            activity.release()
        activity.touch()
        log.info("assigned %s; resuming at %s", config.topic, _describe(partitions, stored))

    consumer.subscribe([config.topic], on_assign=on_assign)
    try:
        while not stop.is_set() and not activity.expired():
            messages = consumer.consume(config.batch_size, config.batch_wait)
            if messages:
                activity.touch()
                _process(messages, config, db, writer, consumer, producer, stats, clock)
    except Stopped:
        log.info("stopped while PostgreSQL was away; the open batch will be read again")
    finally:
        if waiting:
            activity.release()
        consumer.close()
    return stats


def _process(
    messages: list[Message],
    config: LoopConfig,
    db: Database,
    writer: BatchWriter[P],
    consumer: Consumer,
    producer: Producer,
    stats: LoopStats,
    clock: Clock,
) -> None:
    batch = _read(messages, writer, clock, config.ids)
    if not batch.next_offsets:
        return
    write_dead_letters(producer, batch.dead, config.topic, config.dead_letter_topic, writer.sink)
    started = time.monotonic()

    def work(conn: Connection) -> Written:
        written = writer.write(conn, batch.rows, clock()) if batch.rows else Written({}, {})
        store_offsets(conn, config.group, config.topic, batch.next_offsets)
        return written

    written = db.transaction(work)
    committed_at = clock()
    _count(batch, written, stats, writer.sink, time.monotonic() - started, committed_at)
    _commit_to_kafka(consumer, config.topic, batch.next_offsets)
    _record_lag(consumer, config.topic, batch.next_offsets, writer.sink)


def _read(
    messages: list[Message],
    writer: BatchWriter[P],
    clock: Clock,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
) -> _Batch[P]:
    batch: _Batch[P] = _Batch()
    for message in messages:
        error = message.error()
        if error is not None:
            if error.fatal() or error.code() == KafkaError._FATAL:
                raise SinkError(f"Kafka consumer failed: {error}")
            log.warning("consumer: %s", error)
            continue
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        batch.next_offsets[partition] = offset + 1
        try:
            record = decode_output(message.value(), ids=ids)
            item = Consumed(record, partition, offset, _event_at(message, clock))
            prepared = writer.prepare(item)
        except WireError as problem:
            batch.dead.append(Unusable(message, problem.reason, problem.message))
            continue
        except Unstorable as problem:
            batch.dead.append(Unusable(message, INVALID, str(problem)))
            continue
        batch.decoded.append(item)
        if prepared is not None:
            batch.rows.append(prepared)
    return batch


def _count(
    batch: _Batch[Any],
    written: Written,
    stats: LoopStats,
    sink: str,
    seconds: float,
    committed_at: datetime,
) -> None:
    stats.batches += 1
    stats.consumed += len(batch.decoded) + len(batch.dead)
    stats.dead_letters += len(batch.dead)
    metrics.BATCHES.labels(sink).inc()
    metrics.BATCH_SECONDS.labels(sink).observe(seconds)
    for item in batch.decoded:
        metrics.OUTPUTS_CONSUMED.labels(sink, item.record.webhook_type).inc()
        latency = (committed_at - item.event_at).total_seconds()
        metrics.COMMIT_LATENCY.labels(sink).observe(max(latency, 0.0))
    for _ in batch.dead:
        metrics.OUTPUTS_CONSUMED.labels(sink, "undecodable").inc()
    for table, attempted in written.attempted.items():
        inserted = written.inserted.get(table, 0)
        stats.inserted[table] = stats.inserted.get(table, 0) + inserted
        stats.duplicates[table] = stats.duplicates.get(table, 0) + attempted - inserted
        metrics.ROWS_WRITTEN.labels(sink, table).inc(inserted)
        metrics.DUPLICATES_SKIPPED.labels(sink, table).inc(attempted - inserted)


def _commit_to_kafka(consumer: Consumer, topic: str, next_offsets: Mapping[int, int]) -> None:
    offsets = [
        TopicPartition(topic, partition, offset) for partition, offset in next_offsets.items()
    ]
    try:
        consumer.commit(offsets=offsets, asynchronous=True)
    except KafkaException as error:  # e.g. during a rebalance: PostgreSQL holds the truth
        log.debug("Kafka offset commit skipped: %s", error)


def _record_lag(consumer: Consumer, topic: str, next_offsets: Mapping[int, int], sink: str) -> None:
    """Messages behind each partition's high watermark, as last fetched (no broker request)."""
    for partition, offset in next_offsets.items():
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high >= 0:
            metrics.CONSUMER_LAG.labels(sink, str(partition)).set(max(high - offset, 0))


def _consumer_settings(config: LoopConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap,
        "group.id": config.group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
    }
    return settings


def _event_at(message: Message, clock: Clock) -> datetime:
    kind, millis = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE:
        return clock()
    return datetime.fromtimestamp(millis / 1000, UTC)


def _describe(partitions: list[TopicPartition], stored: Mapping[int, int]) -> str:
    where = [
        f"[{p.partition}] {stored[p.partition]}"
        if p.partition in stored
        else f"[{p.partition}] start"
        for p in partitions
    ]
    return ", ".join(where) or "nothing"
