"""What `tollgate feed` sends for each line (a recording fake producer, no broker), and the
producer's pure helpers. The same behaviour against the real broker: tests/integration."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.clients.feed import Feeder, feed, parse_rate
from pipeline.clients.producer import event_key, json_bytes, timestamp_ms
from pipeline.clients.topic_admin import topic_specs
from pipeline.kernel.topics import Topics
from pipeline.wire import DEFAULT_SCHEMA_IDS, WireError, encode_usage_event

T0 = datetime(2025, 3, 1, tzinfo=UTC)
T1 = datetime(2025, 3, 2, tzinfo=UTC)
T2 = datetime(2025, 3, 3, tzinfo=UTC)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


class RecordingProducer:
    """The `UsageProducer` calls the feeder makes, written down (events arrive encoded)."""

    def __init__(self, *, avro: bool = True) -> None:
        self.avro = avro
        self.schema_ids = DEFAULT_SCHEMA_IDS
        self.calls: list[tuple[str, str | None, datetime | None, bytes | None]] = []
        self.delivered = 0

    def send_raw_event(
        self, value: bytes, *, key: str | None = None, at: datetime | None = None
    ) -> None:
        self.calls.append(("event", key, at, value))

    def send_subscription(self, subscription: Any, *, at: datetime | None = None) -> None:
        if not isinstance(subscription, Mapping) or "external_id" not in subscription:
            raise WireError("invalid", "external_id must be a string or an integer")
        self.calls.append(("subscription", subscription["external_id"], at, None))

    def terminate_subscription(self, external_id: Any, at: datetime | None = None) -> None:
        self.calls.append(("terminate", external_id, at, None))

    def send_definition(self, kind: str, definition: Any, at: datetime | None = None) -> None:
        if not isinstance(definition, Mapping):
            raise WireError("invalid", f"a {kind} definition must be an object")
        self.calls.append((kind, definition.get("code") or definition.get("external_id"), at, None))

    def tick(self, at: datetime, *, source: str = "producer") -> None:
        self.calls.append(("tick", None, at, None))

    def poll(self, timeout: float = 0.0) -> None:
        pass

    def check(self) -> None:
        pass

    def flush(self, timeout: float | None = None) -> int:
        return self.delivered


def run(lines: list[str], *, avro: bool = True, ticks: bool = True) -> tuple[list[Any], str]:
    producer = RecordingProducer(avro=avro)
    err = io.StringIO()
    feeder = Feeder(producer, ticks=ticks, clock=lambda: NOW)  # type: ignore[arg-type]
    feed(lines, feeder, name="t.jsonl", err=err)
    return [call[:3] for call in producer.calls], err.getvalue()


def line(at: datetime, kind: str, **payload: Any) -> str:
    return json.dumps({"at": at.isoformat(), "type": kind, **payload})


METRIC = {"code": "m", "aggregation_type": "count_agg"}
SUB = {"external_id": "s1", "external_customer_id": "c", "plan_code": "p"}
EVENT = {"transaction_id": "e1", "external_subscription_id": "s1", "code": "m"}


def test_a_tick_goes_before_each_clock_advance_of_a_keyed_record_and_at_the_end() -> None:
    calls, err = run(
        [
            line(T0, "billable_metric", billable_metric=METRIC),
            line(T0, "subscription", subscription=SUB),
            line(T1, "event", event=EVENT),
            line(T1, "event", event={**EVENT, "transaction_id": "e2"}),
            line(T0, "event", event={**EVENT, "transaction_id": "late"}),  # behind the clock
            line(T2, "terminate_subscription", external_id="s1"),
        ]
    )

    assert calls == [
        ("billable_metric", "m", T0),  # written to every partition: it moves every clock
        ("subscription", "s1", T0),
        ("tick", None, T1),
        ("event", "s1", T1),
        ("event", "s1", T1),
        ("event", "s1", T0),
        ("tick", None, T2),
        ("terminate", "s1", T2),
        ("tick", None, T2),  # the last tick
    ]
    assert err.startswith("fed t.jsonl: 6 records (events: 3, definitions: 1, ")
    assert "clock ticks added: 3, problems: 0" in err


def test_the_first_keyed_record_gets_a_tick_and_tick_records_go_as_they_are() -> None:
    calls, _ = run([line(T0, "event", event=EVENT), line(T1, "tick"), line(T1, "tick")])

    assert calls == [
        ("tick", None, T0),
        ("event", "s1", T0),
        ("tick", None, T1),
        ("tick", None, T1),
        ("tick", None, T1),
    ]


def test_no_ticks_sends_only_the_file() -> None:
    calls, _ = run([line(T0, "event", event=EVENT), line(T1, "tick")], ticks=False)

    assert calls == [("event", "s1", T0), ("tick", None, T1)]


def test_bad_lines_are_reported_with_their_number_and_the_feed_goes_on() -> None:
    calls, err = run(
        [
            "not json",
            "",
            line(T0, "coupon"),
            '{"type": "tick"}',
            line(T1, "plan", plan="a string"),  # cannot be sent, but the clock still moves
            line(T1, "event", event=EVENT),
        ]
    )

    assert calls == [("tick", None, T1), ("event", "s1", T1), ("tick", None, T1)]
    problems = err.splitlines()[:4]
    assert problems[0].startswith("t.jsonl:1: not valid JSON")
    assert problems[1].startswith("t.jsonl:3: unknown type 'coupon'")
    assert problems[2].startswith("t.jsonl:4: at: ")
    assert problems[3] == "t.jsonl:5: not sent: a plan definition must be an object"
    assert "problems: 4" in err


def test_raw_string_events_go_out_as_those_bytes() -> None:
    raw_ok = '{"transaction_id": "r1", "external_subscription_id": "s9", "code": "m"}'
    calls, _ = run(
        [line(T0, "event", event="{not json"), line(T0, "event", event=raw_ok)],
    )
    assert calls == [
        ("tick", None, T0),
        ("event", None, T0),
        ("event", "s9", T0),
        ("tick", None, T0),
    ]


def test_events_go_as_avro_only_when_avro_carries_them_exactly() -> None:
    producer = RecordingProducer()
    feeder = Feeder(producer)  # type: ignore[arg-type]
    exact = {**EVENT, "timestamp": "2025-03-01T00:00:00Z", "properties": {"n": 1}}
    bad_id = {**EVENT, "transaction_id": 1.5}  # Avro cannot hold it: the worker says invalid
    no_properties = EVENT  # Avro would add "properties": {} to the event echoed on an error
    int_id = {**EVENT, "transaction_id": 7, "properties": {}}  # Avro would make it "7"

    for number, event in enumerate([exact, bad_id, no_properties, int_id, [1, 2]], start=1):
        assert feeder.feed_line(line(T0, "event", event=event), number) is None

    sent = [(key, value) for kind, key, _, value in producer.calls if kind == "event"]
    assert sent == [
        ("s1", encode_usage_event(exact)),
        ("s1", json_bytes(bad_id, "event")),
        ("s1", json_bytes(no_properties, "event")),
        ("s1", json_bytes(int_id, "event")),
        (None, b"[1,2]"),
    ]
    assert feeder.stats.json_fallbacks == 3


def test_json_format_writes_the_event_json() -> None:
    producer = RecordingProducer(avro=False)
    feeder = Feeder(producer)  # type: ignore[arg-type]
    text = (
        '{"at": "2025-03-01T00:00:00Z", "type": "event", "event": {"transaction_id": "e1", '
        '"external_subscription_id": "s1", "code": "m", "properties": {"tokens": 1.50}}}'
    )
    feeder.feed_line(text, 1)

    assert producer.calls[-1][3] == (
        b'{"transaction_id":"e1","external_subscription_id":"s1","code":"m",'
        b'"properties":{"tokens":1.50}}'
    )


def test_plain_lago_events_are_sent_now_without_clock_ticks() -> None:
    calls, _ = run([json.dumps(EVENT), json.dumps({"event": {**EVENT, "transaction_id": "e2"}})])

    assert calls == [("event", "s1", NOW), ("event", "s1", NOW), ("tick", None, NOW)]


def test_timestamps_are_whole_milliseconds_after_the_epoch() -> None:
    assert timestamp_ms(datetime(2025, 3, 1, 0, 0, 0, 999_999, tzinfo=UTC)) == 1740787200999
    with pytest.raises(ValueError, match="timezone-aware"):
        timestamp_ms(datetime(2025, 3, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="after 1970"):
        timestamp_ms(datetime(1970, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("text", "rate"), [("500", 500.0), ("2.5/s", 2.5), (" 10 /s", 10.0)])
def test_rates(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "inf/s"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_event_keys() -> None:
    assert event_key({"external_subscription_id": "s"}) == "s"
    assert event_key({"external_subscription_id": 7}) == "7"
    assert event_key({"event": {"external_subscription_id": "inner"}}) == "inner"
    assert event_key({"external_subscription_id": True}) is None
    assert event_key({}) is None


def test_topic_configurations() -> None:
    specs = {spec.name: spec for spec in topic_specs(Topics.with_prefix("x."), 6)}

    assert {name: spec.partitions for name, spec in specs.items()} == {
        "x.usage-events": 6,
        "x.usage-batches": 6,  # the intake's output: the same partition numbers
        "x.subscriptions": 6,
        "x.catalog": 1,
        "x.outputs": 6,
        "x.dead-letters": 1,
    }
    policies = {name: spec.config["cleanup.policy"] for name, spec in specs.items()}
    assert policies == {**dict.fromkeys(specs, "delete"), "x.catalog": "compact"}
    usage = int(specs["x.usage-events"].config["max.message.bytes"])
    assert usage > 1 << 20
    # A usage batch holds up to the batch bound plus one message of the largest decoded size.
    batches = int(specs["x.usage-batches"].config["max.message.bytes"])
    assert batches >= 2 << 20
    # A dead letter keeps at most the first 512 KiB of the original, with its envelope.
    assert int(specs["x.dead-letters"].config["max.message.bytes"]) > (1 << 20)
