"""`tollgate catalog apply FILE`: validate a catalogue file whole, then publish every definition.

The file is checked on top of what the catalog topic already holds (so a plan may charge a
metric published earlier, and a metric's aggregation cannot change); any problem refuses the
whole file before anything is sent. Billable metrics, plans and customers then go to the
catalog topic and to every partition of the usage-events topic, subscriptions to the
usage-events topic keyed by their external id and alerts keyed by their subscription's, all
stamped with one instant (`at`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.billing.catalog import Catalog, DefinitionError, apply_definition
from pipeline.billing.timestamps import iso, parse_instant
from pipeline.clients.catalog_file import (
    Definition,
    count_by_kind,
    load_catalog_file,
    validate_definitions,
)
from pipeline.clients.producer import UsageProducer, ensure_topics_for
from pipeline.kernel.commands import Echo
from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import (
    DEFAULT_SCHEMA_IDS,
    CatalogRecord,
    SchemaIds,
    WireError,
    decode_catalog_record,
)

_LEADER_ELECTION = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def run(
    settings: Settings,
    path: str | Path,
    *,
    at: datetime | str | None = None,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
    check_only: bool = False,
    echo: Echo = print,
) -> dict[str, int]:
    """Validate and publish `path` at `at` (ISO-8601 text or a datetime; default now); returns
    the count of definitions per section.

    `check_only` validates the file by itself (no Kafka: a plan must find its metrics in the
    same file) and publishes nothing.
    """
    when = applies_at(at)
    definitions = load_catalog_file(path)
    counts = dict(count_by_kind(definitions))
    listed = ", ".join(f"{count} {section}" for section, count in counts.items())
    if check_only:
        validate_definitions(definitions, name=str(path))
        echo(f"{path}: valid ({listed}); nothing published")
        return counts
    topics = Topics.with_prefix(settings.topic_prefix)
    ensure_topics_for(settings)
    known = read_catalog(settings.kafka_bootstrap, topics.catalog, ids=ids)
    validate_definitions(definitions, known, name=str(path))
    bootstrap, limit = settings.kafka_bootstrap, settings.max_message_bytes
    with UsageProducer(bootstrap, topics, schema_ids=ids, max_message_bytes=limit) as producer:
        publish(producer, definitions, when)
    echo(f"applied {path} at {iso(when)}: {listed}")
    echo(
        f"  definitions: {topics.catalog} and all {producer.partitions} partitions of "
        f"{topics.usage_events}; subscriptions and alerts: {topics.usage_events}, keyed by "
        "external subscription id"
    )
    echo(f"  {producer.delivered} messages delivered")
    return counts


def applies_at(at: datetime | str | None) -> datetime:
    """`--at`: an ISO instant (or a datetime), or now."""
    if at is None:
        return datetime.now(UTC)
    try:
        return parse_instant(at)
    except ValueError as error:
        raise TollgateError(f"--at: {error}") from None


def publish(producer: UsageProducer, definitions: list[Definition], at: datetime) -> None:
    """Send validated definitions in file order, all at `at`."""
    for item in definitions:
        if item.kind == "subscription":
            producer.send_subscription(item.payload, at=at)
        elif item.kind == "alert":
            producer.send_alert(item.payload, at=at)
        else:
            producer.send_definition(item.kind, item.payload, at)


def read_catalog(
    bootstrap: str, topic: str, *, ids: SchemaIds = DEFAULT_SCHEMA_IDS, timeout: float = 30.0
) -> Catalog:
    """The catalogue the catalog topic holds: its records applied in offset order, each refused
    one skipped as the worker refuses it. An empty catalogue when the topic does not exist."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"tollgate-catalog-read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        return _apply_all(_read_to_end(consumer, topic, timeout, ids), Catalog())
    except KafkaException as exc:
        raise TollgateError(f"could not read {topic}: {exc}") from None
    finally:
        consumer.close()


def _read_to_end(
    consumer: Consumer, topic: str, timeout: float, ids: SchemaIds
) -> list[CatalogRecord]:
    metadata = consumer.list_topics(timeout=timeout)  # all topics: never auto-create this one
    if topic not in metadata.topics:
        return []
    deadline = time.monotonic() + timeout
    ends: dict[int, int] = {}
    for partition in metadata.topics[topic].partitions:
        low, high = _watermarks(consumer, TopicPartition(topic, partition), deadline)
        if high > low:
            ends[partition] = high
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    records: list[CatalogRecord] = []
    while ends:
        if time.monotonic() > deadline:
            raise TollgateError(f"could not read {topic} to its end within {timeout:g} s")
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            raise TollgateError(f"could not read {topic}: {error.str()}")
        partition, offset = message.partition(), message.offset()
        # A record that does not decode was dead-lettered: it never joined the catalogue.
        with contextlib.suppress(WireError):
            records.append(decode_catalog_record(message.value(), ids=ids))
        if partition in ends and offset is not None and offset + 1 >= ends[partition]:
            del ends[partition]
    return records


def _watermarks(consumer: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """(low, high) offsets; retried while the partition is still getting its leader (a topic
    created a moment ago)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=5.0)
            return low, high
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and (
                error.retriable() or error.code() in _LEADER_ELECTION
            )
            if not retriable or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _apply_all(records: list[CatalogRecord], catalog: Catalog) -> Catalog:
    for record in records:
        try:
            apply_definition(catalog, record.kind, record.definition)
        except DefinitionError:
            continue  # refused by the worker too
    return catalog
