"""Producing into the real broker: where each record lands, with which key and timestamp, in
which order; `tollgate feed`, `tollgate catalog apply` and `tollgate outputs` end to end.

Each test has topics of its own (a UUID in the prefix), created with `ensure_topics`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from click.testing import CliRunner, Result
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from confluent_kafka.cimpl import NewTopic

from pipeline.billing.engine import Ledger, Record
from pipeline.billing.timestamps import EPOCH
from pipeline.billing.webhooks import Output
from pipeline.cli import main
from pipeline.clients.outputs import read_outputs
from pipeline.clients.producer import ProduceError, UsageProducer, ensure_topics, timestamp_ms
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.replay import Problem, parse_record, replay
from pipeline.wire import (
    AlertRecord,
    CatalogRecord,
    OutputRecord,
    PaymentRecord,
    SubscriptionRecord,
    Tick,
    WireError,
    decode_catalog_record,
    decode_ledger_input,
    dumps,
    encode_output,
)
from pipeline.wire.jsontext import loads

pytestmark = pytest.mark.integration

PARTITIONS = 4
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BROADCAST = {"tick", "billable_metric", "plan", "customer"}
NAME_FIELDS = {
    "billable_metric": "code",
    "plan": "code",
    "customer": "external_id",
    "subscription": "external_id",
    "event": "transaction_id",
}
T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Lane:
    """The topics of one test and the environment that points `tollgate` at them."""

    prefix: str
    topics: Topics

    @property
    def env(self) -> dict[str, str]:
        return {"TOLLGATE_TOPIC_PREFIX": self.prefix, "TOLLGATE_PARTITIONS": str(PARTITIONS)}


@dataclass(frozen=True)
class Landed:
    partition: int
    key: bytes | None
    value: bytes
    timestamp: int


@pytest.fixture
def lane(settings: Settings, kafka_admin: AdminClient) -> Iterator[Lane]:
    prefix = f"{settings.topic_prefix}test.{uuid.uuid4().hex}."
    yield Lane(prefix, Topics.with_prefix(prefix))
    names = [name for name in kafka_admin.list_topics(timeout=10).topics if name.startswith(prefix)]
    if names:
        for future in kafka_admin.delete_topics(names, operation_timeout=30).values():
            future.result()


@pytest.fixture
def topics(lane: Lane, kafka_admin: AdminClient) -> Topics:
    ensure_topics(kafka_admin, lane.topics, PARTITIONS)
    return lane.topics


def consume_all(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, list[Landed]]:
    """Every message of `topic` up to its end when called, by partition, in offset order."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False}
    )
    try:
        partitions = sorted(consumer.list_topics(timeout=10).topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        landed: dict[int, list[Landed]] = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout
        while any(len(landed[p]) < ends[p] for p in partitions):
            assert time.monotonic() < deadline, f"{topic}: not everything came back in {timeout} s"
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            partition, value = message.partition(), message.value()
            assert partition is not None and value is not None
            landed[partition].append(
                Landed(partition, message.key(), value, message.timestamp()[1])
            )
        return landed
    finally:
        consumer.close()


def murmur2_partition(key: str) -> int:
    """The partition Faust (aiokafka's default partitioner, murmur2) gives a key."""
    every = list(range(PARTITIONS))
    partition: int = DefaultPartitioner()(key.encode(), every, every)
    return partition


def describe(landed: Landed) -> tuple[str, str | None, int, bytes | None]:
    """(kind, name, timestamp, key) of a usage-events message, as the worker decodes it."""
    value = decode_ledger_input(landed.value)
    if isinstance(value, Tick):
        return ("tick", None, landed.timestamp, landed.key)
    if isinstance(value, CatalogRecord):
        return (value.kind, value.key, landed.timestamp, landed.key)
    if isinstance(value, SubscriptionRecord):
        kind = "subscription" if value.action == "upsert" else "terminate_subscription"
        return (kind, value.external_id, landed.timestamp, landed.key)
    if isinstance(value, AlertRecord):
        return ("alert", value.external_subscription_id, landed.timestamp, landed.key)
    return ("event", str(value["transaction_id"]), landed.timestamp, landed.key)


def expected_layout(path: Path) -> dict[int, list[tuple[str, str | None, int, bytes | None]]]:
    """What spec §9 and the topic design say a feed of `path` puts in each partition: a tick to
    every partition before each keyed record that moves the clock, definitions and ticks in
    every partition, keyed records in their murmur2 partition, a last tick at the end."""
    layout: dict[int, list[tuple[str, str | None, int, bytes | None]]] = {
        p: [] for p in range(PARTITIONS)
    }
    clock = None
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        record = parse_record(text, number)
        at = timestamp_ms(record.at)
        if record.kind not in BROADCAST and (clock is None or at > clock):
            for partition in range(PARTITIONS):
                layout[partition].append(("tick", None, at, None))
        clock = at if clock is None else max(clock, at)
        payload: Any = record.payload
        if record.kind == "tick":
            entry: tuple[str, str | None, int, bytes | None] = ("tick", None, at, None)
        elif record.kind in BROADCAST:
            entry = (record.kind, str(payload[NAME_FIELDS[record.kind]]), at, None)
        else:
            if record.kind == "terminate_subscription":
                name, key = str(payload), str(payload)
            elif record.kind == "subscription":
                name = key = str(payload["external_id"])
            elif record.kind == "alert":  # named, like keyed, by its subscription
                name = key = str(payload["external_subscription_id"])
            else:
                name, key = str(payload["transaction_id"]), str(payload["external_subscription_id"])
            layout[murmur2_partition(key)].append((record.kind, name, at, key.encode()))
            continue
        for partition in range(PARTITIONS):
            layout[partition].append(entry)
    assert clock is not None
    for partition in range(PARTITIONS):
        layout[partition].append(("tick", None, clock, None))
    return layout


def tollgate(lane: Lane, *args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=lane.env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# --- tollgate feed -----------------------------------------------------------------------------


def test_feed_puts_every_record_where_the_worker_reads_it(
    kafka_bootstrap: str, topics: Topics, lane: Lane
) -> None:
    timeline = EXAMPLES / "ai_tokens_recurring.jsonl"

    result = tollgate(lane, "feed", str(timeline))

    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"fed {timeline}: 16 records (events: 9, definitions: 3, ")
    landed = consume_all(kafka_bootstrap, topics.usage_events)
    actual = {p: [describe(m) for m in messages] for p, messages in landed.items()}
    assert actual == expected_layout(timeline)
    # The two subscriptions and their events: each in its own key's partition, together.
    for subscription in ("sub-acme", "sub-acme-batch"):
        holding = {
            p
            for p, entries in actual.items()
            for kind, _, _, key in entries
            if key == subscription.encode() and kind in ("subscription", "event")
        }
        assert holding == {murmur2_partition(subscription)}
    catalog = consume_all(kafka_bootstrap, topics.catalog)[0]
    assert [(m.key, m.timestamp) for m in catalog] == [
        (b"billable_metric:tokens", 1740009600000),
        (b"plan:ai-starter", 1740009600000),
        (b"customer:acme", 1740009600000),
    ]


def test_feed_sends_json_bytes_raw_strings_and_no_extra_ticks(
    kafka_bootstrap: str, topics: Topics, lane: Lane, tmp_path: Path
) -> None:
    event = '{"transaction_id": "e1", "external_subscription_id": "s1", "code": "m", '
    event += '"properties": {"tokens": 1.50, "model": "ünïcode"}}'
    raw = '{"transaction_id": "e2", "external_subscription_id": "s1", "code": "m"} trailing'
    timeline = tmp_path / "t.jsonl"
    timeline.write_text(
        f'{{"at": "2025-03-01T00:00:00Z", "type": "event", "event": {event}}}\n'
        "this line is not JSON\n"
        f'{{"at": "2025-03-02T00:00:00Z", "type": "event", "event": {json.dumps(raw)}}}\n'
        '{"at": "2025-03-03T00:00:00Z", "type": "tick"}\n',
        encoding="utf-8",
    )

    result = tollgate(lane, "feed", "--format", "json", "--no-ticks", str(timeline))

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].startswith(f"{timeline}:2: not valid JSON")
    landed = [m for ms in consume_all(kafka_bootstrap, topics.usage_events).values() for m in ms]
    ticks = [m for m in landed if m.value[:1] == b"\x00"]
    assert [describe(m) for m in ticks] == [("tick", None, 1740960000000, None)] * PARTITIONS
    assert sorted(m.partition for m in ticks) == list(range(PARTITIONS))
    events = sorted((m for m in landed if m not in ticks), key=lambda m: m.timestamp)
    assert [(m.key, m.value, m.timestamp) for m in events] == [
        (b"s1", dumps(loads(event)).encode(), 1740787200000),  # compact, digits as written
        (None, raw.encode(), 1740873600000),  # does not decode: no key, as replay has no sub
    ]
    assert events[0].partition == murmur2_partition("s1")
    assert json.loads(events[0].value)["properties"] == {"tokens": 1.5, "model": "ünïcode"}


# --- the producer helper -----------------------------------------------------------------------


def test_usage_producer_keys_stamps_and_counts_every_record(
    kafka_bootstrap: str, topics: Topics
) -> None:
    event = {"transaction_id": 7, "external_subscription_id": "s1", "code": "m", "timestamp": 1}
    plan = {"code": "p", "interval": "monthly", "amount_currency": "USD", "amount_cents": 100}
    before = timestamp_ms(datetime.now(UTC))
    with UsageProducer(kafka_bootstrap, topics) as producer:
        producer.send_event(event)
        producer.send_subscription({"external_id": "s1", "plan_code": "p"}, at=T)
        producer.send_definition("plan", plan, at=T)
        producer.tick(T)
        producer.terminate_subscription("s1", at=T)
    after = timestamp_ms(datetime.now(UTC))

    assert producer.partitions == PARTITIONS
    assert (producer.sent, producer.delivered, producer.failed) == (12, 12, 0)
    landed = consume_all(kafka_bootstrap, topics.usage_events)
    home = murmur2_partition("s1")
    first, *rest = landed[home]
    assert decode_ledger_input(first.value) == {
        "transaction_id": "7",
        "external_subscription_id": "s1",
        "code": "m",
        "timestamp": "1",
        "properties": {},
    }
    assert first.key == b"s1" and before <= first.timestamp <= after
    at = timestamp_ms(T)
    assert [describe(m) for m in rest] == [
        ("subscription", "s1", at, b"s1"),
        ("plan", "p", at, None),
        ("tick", None, at, None),
        ("terminate_subscription", "s1", at, b"s1"),
    ]
    for partition in set(range(PARTITIONS)) - {home}:
        assert [describe(m) for m in landed[partition]] == [
            ("plan", "p", at, None),
            ("tick", None, at, None),
        ]
    (catalog,) = consume_all(kafka_bootstrap, topics.catalog)[0]
    assert catalog.key == b"plan:p" and catalog.timestamp == at
    assert decode_catalog_record(catalog.value) == CatalogRecord("plan", "p", plan)


def test_usage_producer_takes_lago_post_bodies_as_json_or_avro(
    kafka_bootstrap: str, topics: Topics
) -> None:
    event = {"transaction_id": "t", "external_subscription_id": 42, "code": "m"}
    with UsageProducer(kafka_bootstrap, topics, avro=False) as producer:
        producer.send_event({"event": event}, at=T)
    with UsageProducer(kafka_bootstrap, topics) as producer:
        producer.send_event({"event": event}, at=T)

    as_json, as_avro = consume_all(kafka_bootstrap, topics.usage_events)[murmur2_partition("42")]
    assert as_json.key == as_avro.key == b"42"
    assert (
        as_json.value
        == b'{"event":{"transaction_id":"t","external_subscription_id":42,"code":"m"}}'
    )
    assert decode_ledger_input(as_avro.value) == {
        "transaction_id": "t",
        "external_subscription_id": "42",
        "code": "m",
        "properties": {},
    }


def test_a_failed_delivery_raises_on_flush(
    kafka_bootstrap: str, kafka_admin: AdminClient, lane: Lane
) -> None:
    small = NewTopic(
        lane.topics.usage_events,
        num_partitions=PARTITIONS,
        replication_factor=1,
        config={"max.message.bytes": "2048"},
    )
    kafka_admin.create_topics([small])[lane.topics.usage_events].result()
    assert lane.topics.usage_events not in ensure_topics(kafka_admin, lane.topics, PARTITIONS)
    big: dict[str, Any] = {"transaction_id": "t", "external_subscription_id": "s", "code": "m"}
    big["properties"] = {"blob": "x" * 10_000}

    producer = UsageProducer(kafka_bootstrap, lane.topics, flush_timeout=30)
    producer.send_event(big, at=T)
    with pytest.raises(ProduceError, match=r"1 of 1 messages were not delivered: .*usage-events"):
        producer.flush()
    producer.send_event({**big, "properties": {}}, at=T)

    assert producer.flush() == 1  # the failure is reported once
    assert (producer.sent, producer.delivered, producer.failed) == (2, 1, 1)


def test_a_missing_topic_is_an_error_and_is_not_auto_created(
    kafka_bootstrap: str, kafka_admin: AdminClient, lane: Lane
) -> None:
    with pytest.raises(ProduceError, match="does not exist: create the topics first"):
        UsageProducer(kafka_bootstrap, lane.topics)

    assert lane.topics.usage_events not in kafka_admin.list_topics(timeout=10).topics


def test_ensure_topics_is_idempotent_and_configures_each_topic(
    kafka_admin: AdminClient, lane: Lane
) -> None:
    created = ensure_topics(kafka_admin, lane.topics, PARTITIONS)
    again = ensure_topics(kafka_admin, lane.topics, PARTITIONS)

    t = lane.topics
    names = [
        t.usage_events,
        t.usage_batches,
        t.subscriptions,
        t.catalog,
        t.outputs,
        t.dead_letters,
    ]
    assert sorted(created) == sorted(names) and again == []
    metadata = kafka_admin.list_topics(timeout=10).topics
    assert {name: len(metadata[name].partitions) for name in names} == {
        t.usage_events: PARTITIONS,
        t.usage_batches: PARTITIONS,
        t.subscriptions: PARTITIONS,
        t.catalog: 1,
        t.outputs: PARTITIONS,
        t.dead_letters: 1,
    }
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    policies = {
        resource.name: future.result()["cleanup.policy"].value
        for resource, future in kafka_admin.describe_configs(resources).items()
    }
    assert policies == {**dict.fromkeys(names, "delete"), t.catalog: "compact"}


# --- tollgate catalog apply --------------------------------------------------------------------


def test_catalog_apply_publishes_in_file_order_and_refuses_a_bad_file(
    kafka_bootstrap: str, lane: Lane, tmp_path: Path
) -> None:
    result = tollgate(
        lane, "catalog", "apply", str(EXAMPLES / "catalog.yaml"), "--at", "2025-02-20"
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"applied {EXAMPLES / 'catalog.yaml'} at 2025-02-20T00:00:00Z: 2 billable_metrics, "
        "3 features, 3 plans, 2 customers, 3 subscriptions, 3 alerts\n"
    )
    at = timestamp_ms(datetime(2025, 2, 20, tzinfo=UTC))
    definitions = [
        b"billable_metric:llm_tokens",
        b"billable_metric:api_requests",
        b"feature:ai_tokens",
        b"feature:support",
        b"feature:sso",
        b"plan:ai-starter",
        b"plan:ai-team",
        b"plan:api-growth",
        b"customer:acme",
        b"customer:beta",
    ]
    catalog = consume_all(kafka_bootstrap, lane.topics.catalog)[0]
    assert [(m.key, m.timestamp) for m in catalog] == [(key, at) for key in definitions]
    landed = consume_all(kafka_bootstrap, lane.topics.usage_events)
    for partition, messages in landed.items():
        kinds = [describe(m) for m in messages]
        assert [f"{kind}:{name}".encode() for kind, name, _, _ in kinds[:10]] == definitions
        subscriptions = [name for _, name, _, _ in kinds[10:]]
        assert all(murmur2_partition(name or "") == partition for name in subscriptions)
        assert {stamp for _, _, stamp, _ in kinds} == {at}
    assert sum(len(messages) for messages in landed.values()) == 10 * PARTITIONS + 3 + 3

    # A later file may build on what the catalog topic holds ...
    plan_only = tmp_path / "more.json"
    plan_only.write_text(
        json.dumps(
            {
                "plans": [
                    {
                        "code": "ai-tiny",
                        "interval": "weekly",
                        "amount_currency": "USD",
                        "charges": [
                            {
                                "billable_metric_code": "llm_tokens",
                                "charge_model": "standard",
                                "properties": {"amount": "0.00002"},
                            }
                        ],
                    }
                ]
            }
        )
    )
    assert tollgate(lane, "catalog", "apply", str(plan_only)).exit_code == 0
    # ... but one bad definition refuses the whole file, and nothing is sent.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "customers:\n  - external_id: gamma\n"
        "subscriptions:\n  - {external_id: s, external_customer_id: gamma, plan_code: nowhere}\n"
    )
    before = consume_all(kafka_bootstrap, lane.topics.usage_events)
    refused = tollgate(lane, "catalog", "apply", str(bad))
    assert refused.exit_code == 1
    assert "subscriptions[0] (line 4): subscription 's': unknown plan 'nowhere'" in refused.stderr
    assert consume_all(kafka_bootstrap, lane.topics.usage_events) == before


# --- tollgate outputs --------------------------------------------------------------------------


def test_outputs_prints_the_webhook_bodies_and_notes_bad_messages(
    kafka_bootstrap: str, topics: Topics, lane: Lane
) -> None:
    bodies = [
        {"webhook_type": "invoice.created", "object_type": "invoice", "n": n, "amount": "1.50"}
        for n in range(3)
    ]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    for n, body in enumerate(bodies):
        record = OutputRecord.from_body(f"out-{n}", body, external_subscription_id="s1")
        producer.produce(topics.outputs, encode_output(record), b"s1")
    producer.produce(topics.outputs, b"not an output", b"s1")
    assert producer.flush(30) == 0

    result = tollgate(lane, "outputs", "--from-beginning", "--idle-exit", "0.2")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [dumps(body) for body in bodies]
    (note,) = result.stderr.splitlines()
    assert note.startswith(f"outputs: {topics.outputs} [{murmur2_partition('s1')}] @ 3: skipped")

    bad: list[str] = []
    records = read_outputs(kafka_bootstrap, topics.outputs, idle_exit=0.2, on_bad=bad.append)
    assert [r.body for r in records] == bodies and [r.id for r in records] == [
        "out-0",
        "out-1",
        "out-2",
    ]
    assert len(bad) == 1
    with pytest.raises(WireError, match="@ 3: not Confluent Avro"):
        read_outputs(kafka_bootstrap, topics.outputs, idle_exit=0.2)


# --- live equals replay ------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
TIMELINES = sorted(
    path
    for path in [*(REPO / "examples").glob("*.jsonl"), *(REPO / "tests/scenarios").glob("*.jsonl")]
    if not path.name.endswith(".expected.jsonl")
)


def ledger_record(landed: Landed) -> Record:
    """A usage-events message as the engine record the worker makes of it (at = timestamp)."""
    at = EPOCH + timedelta(milliseconds=landed.timestamp)
    try:
        value = decode_ledger_input(landed.value)
    except WireError as error:
        return Record(at, "event", landed.value.decode("utf-8", "replace"), error=error.message)
    if isinstance(value, Tick):
        return Record(at, "tick")
    if isinstance(value, CatalogRecord):
        return Record(at, value.kind, value.definition)
    if isinstance(value, SubscriptionRecord):
        if value.action == "upsert":
            return Record(at, "subscription", value.subscription)
        return Record(at, "terminate_subscription", value.external_id)
    if isinstance(value, AlertRecord):
        return Record(at, "alert", value.alert)
    if isinstance(value, PaymentRecord):
        return Record(at, "invoice_payment", value.payment)
    return Record(at, "event", value)


def per_subscription(outputs: list[Output]) -> dict[str | None, list[str]]:
    """Bodies per subscription in emission order. Errors about no subscription (undecodable
    input) land on whichever partition a key-less message goes to, so they have no order:
    that group is compared sorted."""
    bodies: dict[str | None, list[str]] = {}
    for output in outputs:
        bodies.setdefault(output.external_subscription_id, []).append(dumps(output.body))
    if None in bodies:
        bodies[None].sort()
    return bodies


def fold_partitions(bootstrap: str, topic: str) -> dict[str | None, list[str]]:
    """What the worker's contract gives: one ledger per partition, records in offset order."""
    outputs: list[Output] = []
    for messages in consume_all(bootstrap, topic).values():
        ledger = Ledger()
        for message in messages:
            outputs.extend(ledger.step(ledger_record(message)).outputs)
    return per_subscription(outputs)


def replayed(path: Path) -> dict[str | None, list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return per_subscription([item for item in replay(lines) if not isinstance(item, Problem)])


def cross_partition_timeline(tmp_path: Path) -> Path:
    """Two subscriptions on different partitions; the second's record moves the clock, then the
    first's event arrives with an older `at` and a timestamp 12 h ahead of the clock: valid in
    replay, but more than 24 h ahead of a partition clock that no tick moved."""
    ids = [f"sub-{n}" for n in range(20)]
    first = ids[0]
    second = next(i for i in ids if murmur2_partition(i) != murmur2_partition(first))
    metric = {"code": "calls", "aggregation_type": "count_agg"}
    charge = {"billable_metric_code": "calls", "charge_model": "standard"}
    plan = {"code": "p", "interval": "monthly", "amount_currency": "USD", "amount_cents": 100}
    plan["charges"] = [{**charge, "properties": {"amount": "1"}}]
    start = "2025-03-01T00:00:00Z"
    records: list[dict[str, Any]] = [
        {"at": start, "type": "billable_metric", "billable_metric": metric},
        {"at": start, "type": "plan", "plan": plan},
    ]
    for sub in (first, second):
        subscription = {"external_id": sub, "external_customer_id": "c", "plan_code": "p"}
        records.append({"at": start, "type": "subscription", "subscription": subscription})
    event = {"external_subscription_id": second, "code": "calls", "transaction_id": "b1"}
    records.append({"at": "2025-03-03T00:00:00Z", "type": "event", "event": event})
    event = {
        "external_subscription_id": first,
        "code": "calls",
        "transaction_id": "a1",
        "timestamp": "2025-03-03T12:00:00Z",
    }
    records.append({"at": "2025-03-02T00:00:00Z", "type": "event", "event": event})
    records.append({"at": "2025-04-01T00:00:00Z", "type": "tick"})
    path = tmp_path / "cross_partition.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.mark.parametrize("timeline", TIMELINES, ids=lambda path: path.name)
def test_a_fed_timeline_gives_replays_webhooks_per_subscription(
    kafka_bootstrap: str, topics: Topics, lane: Lane, timeline: Path
) -> None:
    assert tollgate(lane, "feed", str(timeline)).exit_code == 0

    assert fold_partitions(kafka_bootstrap, topics.usage_events) == replayed(timeline)


@pytest.mark.parametrize("ticks", [True, False], ids=["ticks", "no-ticks"])
def test_ticks_keep_every_partition_clock_on_the_replay_clock(
    kafka_bootstrap: str, topics: Topics, lane: Lane, tmp_path: Path, ticks: bool
) -> None:
    timeline = cross_partition_timeline(tmp_path)
    flag = "--ticks" if ticks else "--no-ticks"
    assert tollgate(lane, "feed", flag, "--format", "json", str(timeline)).exit_code == 0

    live, expected = fold_partitions(kafka_bootstrap, topics.usage_events), replayed(timeline)
    assert (live == expected) is ticks
