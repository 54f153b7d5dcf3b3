"""The live worker against the real broker: it produces what `tollgate replay` prints, survives
kill -9 and rebalances without losing or double-billing anything, and dead-letters bad input."""

from __future__ import annotations

import io
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from pipeline.clients.feed import Feeder, feed
from pipeline.kernel.settings import Settings
from pipeline.replay import Problem, replay
from pipeline.wire import (
    OutputRecord,
    decode_dead_letter,
    dumps,
    encode_output,
    encode_usage_event,
)
from tests.integration.timelines import busy_timeline
from tests.integration.worker_process import Deployment

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def replayed(lines: list[str]) -> list[tuple[str, str]]:
    return [(o.id, dumps(o.body)) for o in replay(lines) if not isinstance(o, Problem)]


def feed_lines(deployment: Deployment, lines: list[str]) -> None:
    with deployment.producer() as producer:
        feed(lines, Feeder(producer), name="timeline", err=io.StringIO())


def wait_caught_up(deployment: Deployment, timeout: float = 120.0) -> None:
    """Until the intake has committed every usage-events message and the worker group every
    usage batch (so every batch's effect is stored)."""
    settings, topics = deployment.settings, deployment.topics
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.restart_stalled()
        if deployment.processes and all(p.poll() is not None for p in deployment.processes):
            raise AssertionError(f"every worker exited:\n{deployment.logs()}")
        if not committed_behind(settings, settings.intake_group, topics.usage_events) and not (
            committed_behind(settings, settings.worker_app_id, topics.usage_batches)
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"the pipeline did not catch up in {timeout} s:\n{deployment.logs()}")


def committed_behind(settings: Settings, group: str, topic: str) -> int:
    """Messages of `topic` that `group` has not committed yet (1 when the broker cannot say
    yet, e.g. its group coordinator is still loading after a restart)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        behind = 0
        for tp in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            behind += high - max(tp.offset, 0)
        return behind
    except KafkaException:
        return 1
    finally:
        consumer.close()


@pytest.fixture
def deployment(settings: Settings, kafka_bootstrap: str, tmp_path: Path):
    deployment = Deployment.create(settings, tmp_path)
    yield deployment
    deployment.stop_all()


@pytest.mark.parametrize(
    "timeline",
    [
        EXAMPLES / "ai_tokens_recurring.jsonl",
        SCENARIOS / "bad_input.jsonl",
        SCENARIOS / "past_pending_held.jsonl",
        SCENARIOS / "storage_termination.jsonl",
    ],
    ids=lambda p: p.stem,
)
def test_the_live_worker_emits_what_replay_prints(deployment: Deployment, timeline: Path):
    lines = timeline.read_text().splitlines()
    feed_lines(deployment, lines)
    deployment.start_worker()
    wait_caught_up(deployment)
    live = Counter(dumps(record.body) for record in deployment.outputs())
    expected = Counter(body for _, body in replayed(lines))
    assert set(live) == set(expected)


def test_kill_9_at_random_points_loses_nothing_and_bills_nothing_twice(deployment: Deployment):
    lines = busy_timeline(subscriptions=40, events=2000)
    feeding = threading.Thread(target=feed_lines, args=(deployment, lines))
    feeding.start()
    rng = random.Random(11)
    worker = deployment.start_worker()
    for _ in range(3):
        time.sleep(rng.uniform(4.0, 9.0))
        deployment.kill(worker)
        worker = deployment.start_worker()
    feeding.join()
    wait_caught_up(deployment, timeout=300)
    live = {record.id: dumps(record.body) for record in deployment.outputs()}
    expected = dict(replayed(lines))
    assert live == expected, f"{len(live)} live vs {len(expected)} replayed\n{deployment.logs()}"


def test_a_rebalance_mid_stream_changes_nothing(deployment: Deployment):
    lines = busy_timeline(subscriptions=30, events=2000, seed=3)
    deployment.start_worker()
    feeding = threading.Thread(target=feed_lines, args=(deployment, lines))
    feeding.start()
    time.sleep(6)
    deployment.start_worker()  # same group: the partitions are shared out again
    feeding.join()
    wait_caught_up(deployment, timeout=300)
    live = {record.id: dumps(record.body) for record in deployment.outputs()}
    assert live == dict(replayed(lines))


def test_bad_input_is_dead_lettered_and_the_worker_goes_on(deployment: Deployment):
    topics, settings = deployment.topics, deployment.settings
    example = (EXAMPLES / "ai_tokens_recurring.jsonl").read_text().splitlines()
    feed_lines(deployment, example[:4])  # metric, plan, customer, subscription
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "partitioner": "murmur2_random",
            "message.max.bytes": 20 << 20,
        }
    )
    good = {
        "transaction_id": "ok-1",
        "external_subscription_id": "sub-acme",
        "code": "tokens",
        "properties": {"tokens": 1000},
    }
    wrong_schema = encode_output(OutputRecord("x", "invoice.created", "invoice", None, None, {}))
    bad = {
        "random bytes": bytes(random.Random(5).getrandbits(8) for _ in range(64)),
        "wrong schema id": wrong_schema,
        "missing fields": b'{"external_subscription_id": "sub-acme", "code": "tokens"}',
        "unknown subscription": encode_usage_event(
            {**good, "transaction_id": "b-1", "external_subscription_id": "sub-nobody"}
        ),
        "non-numeric": encode_usage_event(
            {**good, "transaction_id": "b-2", "properties": {"tokens": "many"}}
        ),
        "10 MB": b"{" + b" " * (10 << 20) + b"}",
    }
    for value in bad.values():
        producer.produce(
            topics.usage_events, key=b"sub-acme", value=value, timestamp=int(time.time() * 1000)
        )
    producer.produce(
        topics.usage_events,
        key=b"sub-acme",
        value=encode_usage_event(good),
        timestamp=int(time.time() * 1000),
    )
    producer.flush(30)
    deployment.start_worker()
    wait_caught_up(deployment)
    letters = _dead_letters(settings, topics.dead_letters, expected=len(bad))
    reasons = sorted(letter.reason for letter in letters)
    assert reasons == sorted(
        ["malformed", "malformed", "invalid", "unknown_subscription", "invalid", "malformed"]
    )
    assert all(letter.message and letter.source_topic == topics.usage_events for letter in letters)
    outputs = deployment.outputs()
    errors = [o for o in outputs if o.webhook_type == "event.error"]
    assert len(errors) == len(bad)
    # ...and the good event after them was billed: the worker went on.
    invoices = [o for o in outputs if o.webhook_type == "invoice.created"]
    assert invoices == [] or all(o.body["invoice"]["currency"] == "USD" for o in invoices)
    assert any('"ok-1"' not in dumps(o.body) for o in outputs)


def _dead_letters(settings: Settings, topic: str, *, expected: int) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"read-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 20 << 20,
        }
    )
    consumer.subscribe([topic])
    letters = []
    deadline = time.monotonic() + 60
    try:
        while len(letters) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                letters.append(decode_dead_letter(message.value(), max_bytes=20 << 20))
    finally:
        consumer.close()
    return letters
