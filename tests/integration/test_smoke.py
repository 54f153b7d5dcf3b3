"""End to end through the local stack: confluent-kafka in, aiokafka out, PostgreSQL last."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer

from pipeline.smoke import usage_event

pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str, event: dict[str, Any]) -> tuple[int, int]:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"}
    )
    delivered: list[tuple[int, int]] = []

    def on_delivery(error: object, message: Any) -> None:
        assert error is None, error
        delivered.append((message.partition(), message.offset()))

    producer.produce(
        topic,
        key=event["external_subscription_id"].encode(),
        value=json.dumps(event).encode(),
        on_delivery=on_delivery,
    )
    assert producer.flush(30) == 0, "message not delivered within 30 s"
    assert len(delivered) == 1
    return delivered[0]


async def consume_one(bootstrap: str, topic: str, partition: int, offset: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        where = TopicPartition(topic, partition)
        consumer.assign([where])
        consumer.seek(where, offset)
        batch = await consumer.getmany(where, timeout_ms=30_000, max_records=1)
        records = batch.get(where, [])
        assert records, f"nothing consumed from {topic} [{partition}] within 30 s"
        assert records[0].offset == offset
        assert records[0].value is not None
        decoded: dict[str, Any] = json.loads(records[0].value)
        return decoded
    finally:
        await consumer.stop()


def test_event_goes_through_kafka_into_postgres(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    pg_conn: psycopg.Connection[tuple[object, ...]],
    new_schema: str,
) -> None:
    topic = unique_topic("smoke")
    event = usage_event()
    event["external_subscription_id"] = f"sub-{uuid.uuid4().hex[:8]}"

    partition, offset = produce(kafka_bootstrap, topic, event)
    received = asyncio.run(consume_one(kafka_bootstrap, topic, partition, offset))
    assert received == event

    pg_conn.execute(
        "CREATE TABLE usage_events (transaction_id text PRIMARY KEY, "
        "external_subscription_id text NOT NULL, code text NOT NULL, "
        "event_timestamp timestamptz NOT NULL, properties jsonb NOT NULL)"
    )
    pg_conn.execute(
        "INSERT INTO usage_events VALUES (%s, %s, %s, to_timestamp(%s), %s::jsonb)",
        (
            received["transaction_id"],
            received["external_subscription_id"],
            received["code"],
            received["timestamp"],
            json.dumps(received["properties"]),
        ),
    )
    row = pg_conn.execute(
        "SELECT external_subscription_id, code, extract(epoch FROM event_timestamp)::bigint, "
        "properties, current_schema() FROM usage_events WHERE transaction_id = %s",
        (event["transaction_id"],),
    ).fetchone()
    assert row == (
        event["external_subscription_id"],
        "tokens",
        event["timestamp"],
        {"tokens": 1200},
        new_schema,
    )


def test_murmur2_random_matches_the_java_partitioner(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    """confluent-kafka's murmur2_random puts a key where Java clients and aiokafka do."""
    topic = unique_topic("partitioning", partitions=4)
    partitions = [0, 1, 2, 3]
    for n in range(8):
        event = usage_event()
        event["external_subscription_id"] = f"sub-{n:03d}"
        expected = DefaultPartitioner()(
            event["external_subscription_id"].encode(), partitions, partitions
        )
        assert produce(kafka_bootstrap, topic, event)[0] == expected


def test_smoke_flow_prints_the_stored_row(
    kafka_bootstrap: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline import smoke
    from pipeline.kernel.settings import Settings

    row = smoke.run(Settings.from_env())
    out = capsys.readouterr().out
    assert row["code"] == "tokens"
    assert row["properties"] == {"tokens": 1200}
    assert row["transaction_id"] in out
    assert "Kafka bootstrap" in out and "PostgreSQL" in out and "Logs" in out
