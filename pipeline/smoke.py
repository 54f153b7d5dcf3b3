"""Smoke flow: one usage event through Kafka into PostgreSQL, printed on the way out.

It proves the local stack end to end: a fresh topic, one Lago-shaped event produced with
confluent-kafka (murmur2_random, the Java client's partitioner), consumed back, written to
the table `smoke_events`, read back and printed. The topic is deleted afterwards; the row stays.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic

from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import Settings
from pipeline.local import devstack
from pipeline.local.devstack.kafka import admin_client, broker_answers
from pipeline.local.devstack.postgres import redact

Echo = Callable[[str], None]

_TIMEOUT = 30.0


class SmokeError(TollgateError):
    """The smoke flow could not complete."""


_DDL = """
CREATE TABLE IF NOT EXISTS smoke_events (
    transaction_id           text PRIMARY KEY,
    external_subscription_id text NOT NULL,
    code                     text NOT NULL,
    event_timestamp          timestamptz NOT NULL,
    properties               jsonb NOT NULL,
    topic                    text NOT NULL,
    kafka_partition          integer NOT NULL,
    kafka_offset             bigint NOT NULL,
    stored_at                timestamptz NOT NULL DEFAULT now()
)
"""


def usage_event(now: datetime | None = None) -> dict[str, Any]:
    """One usage event in Lago's shape, with a fresh transaction id."""
    moment = now or datetime.now(UTC)
    return {
        "transaction_id": f"smoke-{uuid.uuid4()}",
        "external_subscription_id": "sub-smoke-001",
        "code": "tokens",
        "timestamp": int(moment.timestamp()),
        "properties": {"tokens": 1200},
    }


def run(settings: Settings, echo: Echo = print) -> dict[str, Any]:
    """Run the flow; returns the row read back from PostgreSQL."""
    started = time.monotonic()
    topic = f"{settings.topic_prefix}smoke.{uuid.uuid4().hex}"
    if not broker_answers(settings.kafka_bootstrap, timeout=5.0):
        raise SmokeError(
            f"no Kafka broker answers at {settings.kafka_bootstrap}: run `tollgate dev up` first"
        )
    admin = admin_client(settings.kafka_bootstrap)
    _create_topic(admin, topic, settings.partitions)
    try:
        event = usage_event()
        partition, offset = _produce(settings.kafka_bootstrap, topic, event)
        echo(f"smoke: produced {event['transaction_id']} to {topic} [{partition}] @ {offset}")
        received = _consume(settings.kafka_bootstrap, topic, partition, offset)
        echo(f"smoke: consumed it back from {topic} [{partition}] @ {offset}")
        row = _store(settings.database_url, received, topic, partition, offset)
    finally:
        admin.delete_topics([topic], operation_timeout=30)[topic].result()
    echo("smoke: row read back from PostgreSQL table smoke_events:")
    echo(json.dumps(row, indent=2, default=str))
    echo(f"smoke: passed in {time.monotonic() - started:.1f} s")
    echo("")
    for line in devstack.locations(settings):
        echo(line)
    return row


def _create_topic(admin: Any, topic: str, partitions: int) -> None:
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=30
    )
    try:
        futures[topic].result()
    except Exception as exc:
        raise SmokeError(f"could not create topic {topic} ({exc})") from None


def _produce(bootstrap: str, topic: str, event: dict[str, Any]) -> tuple[int, int]:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "acks": "all",
        }
    )
    delivered: list[Message] = []
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)
        else:
            delivered.append(message)

    producer.produce(
        topic,
        key=event["external_subscription_id"].encode(),
        value=json.dumps(event).encode(),
        on_delivery=on_delivery,
    )
    left = producer.flush(_TIMEOUT)
    if failures or left or not delivered:
        raise SmokeError(f"producing to {topic} failed ({failures or 'timed out'})")
    message = delivered[0]
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None
    return partition, offset


def _consume(bootstrap: str, topic: str, partition: int, offset: int) -> dict[str, Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"tollgate-smoke-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                raise SmokeError(f"consuming {topic} failed: {error}")
            value = message.value()
            assert isinstance(value, bytes)
            decoded: dict[str, Any] = json.loads(value)
            return decoded
        raise SmokeError(f"the event did not come back from {topic} within {_TIMEOUT:g} s")
    finally:
        consumer.close()


def _store(
    database_url: str, event: dict[str, Any], topic: str, partition: int, offset: int
) -> dict[str, Any]:
    try:
        conn = psycopg.connect(database_url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise SmokeError(
            f"PostgreSQL does not answer at {redact(database_url)} ({str(exc).strip()}): "
            "run `tollgate dev up` first"
        ) from None
    with conn:
        conn.execute(_DDL)
        conn.execute(
            """
            INSERT INTO smoke_events (transaction_id, external_subscription_id, code,
                                      event_timestamp, properties, topic, kafka_partition,
                                      kafka_offset)
            VALUES (%s, %s, %s, to_timestamp(%s), %s::jsonb, %s, %s, %s)
            """,
            (
                event["transaction_id"],
                event["external_subscription_id"],
                event["code"],
                event["timestamp"],
                json.dumps(event["properties"]),
                topic,
                partition,
                offset,
            ),
        )
        cursor = conn.execute(
            "SELECT * FROM smoke_events WHERE transaction_id = %s", (event["transaction_id"],)
        )
        columns = [column.name for column in cursor.description or []]
        found = cursor.fetchone()
    if found is None:
        raise SmokeError("the smoke row was not found after inserting it")
    return dict(zip(columns, found, strict=True))
