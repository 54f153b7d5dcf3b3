"""The schema catalogue: every example decodes and re-encodes byte for byte; topics name schemas."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.wire import (
    DEFAULT_SCHEMA_IDS,
    SCHEMA_NAMES,
    Tick,
    decode,
    decode_alert_record,
    decode_catalog_record,
    decode_dead_letter,
    decode_output,
    decode_payment_record,
    decode_subscription_record,
    decode_tick,
    decode_usage_batch,
    decode_usage_event,
    dumps,
    encode,
    encode_alert_record,
    encode_catalog_record,
    encode_dead_letter,
    encode_output,
    encode_payment_record,
    encode_subscription_record,
    encode_tick,
    encode_usage_batch,
    encode_usage_event,
    schema_dir,
    schema_text,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = sorted((SCHEMAS / "examples").glob("*/*.json"))
TOPICS = yaml.safe_load((SCHEMAS / "topics.yaml").read_text(encoding="utf-8"))["topics"]


def _encode_tick(tick: Tick) -> bytes:
    return encode_tick(tick.source)


# schema name → (typed decoder, typed encoder): decoding then encoding must give the same bytes.
TYPED: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    "usage_event": (decode_usage_event, encode_usage_event),
    "catalog_record": (decode_catalog_record, encode_catalog_record),
    "subscription_record": (decode_subscription_record, encode_subscription_record),
    "clock_tick": (decode_tick, _encode_tick),
    "output": (decode_output, encode_output),
    "dead_letter": (decode_dead_letter, encode_dead_letter),
    "usage_batch": (decode_usage_batch, encode_usage_batch),
    "alert_record": (decode_alert_record, encode_alert_record),
    "invoice_payment_record": (decode_payment_record, encode_payment_record),
}


def _example(path: Path) -> tuple[str, dict[str, Any]]:
    """The example as a record: `bytes` fields are written as text, one character per byte."""
    name = path.parent.name
    value = json.loads(path.read_text(encoding="utf-8"))
    for field in json.loads(schema_text(name))["fields"]:
        if field["type"] == "bytes":
            value[field["name"]] = value[field["name"]].encode("latin-1")
    return name, value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_example_decodes_and_re_encodes_identically(path: Path) -> None:
    name, value = _example(path)
    data = encode(name, value)
    assert data[:5] == bytes([0]) + DEFAULT_SCHEMA_IDS.id_of(name).to_bytes(4, "big")
    assert decode(data) == (name, value)
    assert encode(*decode(data)) == data
    decoder, encoder = TYPED[name]
    typed = decoder(data)
    assert encoder(typed) == data
    assert decoder(encoder(typed)) == typed


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if p.parent.name == "usage_event"], ids=lambda p: p.stem
)
def test_usage_example_reads_the_same_as_json(path: Path) -> None:
    event = decode_usage_event(encode("usage_event", _example(path)[1]))
    assert decode_usage_event(dumps(event).encode()) == event
    assert decode_usage_event(dumps({"event": event}).encode()) == event


def test_examples_cover_every_schema_and_only_schemas() -> None:
    folders = {path.name for path in (SCHEMAS / "examples").iterdir()}
    assert folders == set(SCHEMA_NAMES)
    for name in SCHEMA_NAMES:
        assert 1 <= len(list((SCHEMAS / "examples" / name).glob("*.json"))) <= 4, name


def test_every_avsc_is_a_known_record_in_the_tollgate_namespace() -> None:
    assert schema_dir() == SCHEMAS
    assert {path.stem for path in SCHEMAS.glob("*.avsc")} == set(SCHEMA_NAMES)
    for name in SCHEMA_NAMES:
        schema = json.loads(schema_text(name))
        assert schema["type"] == "record"
        assert schema["namespace"] == "io.tollgate"
        assert schema.get("doc"), name


def test_topics_are_the_six_of_the_pipeline() -> None:
    assert set(TOPICS) == {
        "tollgate.usage-events",
        "tollgate.usage-batches",
        "tollgate.subscriptions",
        "tollgate.catalog",
        "tollgate.outputs",
        "tollgate.dead-letters",
    }


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_topic_names_existing_schemas_and_says_who_uses_it(topic: str) -> None:
    entry = TOPICS[topic]
    assert entry["value_schemas"], topic
    for name in entry["value_schemas"]:
        assert name in SCHEMA_NAMES
        assert (SCHEMAS / f"{name}.avsc").is_file()
    assert entry["key"]["format"] == "utf-8 string"
    assert entry["cleanup_policy"] in {"delete", "compact"}
    assert entry["producers"] and entry["consumers"]
    partitions = entry["partitions"]
    assert partitions.get("setting") == "TOLLGATE_PARTITIONS" or partitions.get("fixed") == 1


def test_every_schema_travels_on_some_topic() -> None:
    used = {name for entry in TOPICS.values() for name in entry["value_schemas"]}
    assert used == set(SCHEMA_NAMES)


def test_catalog_is_compacted_and_ticks_ride_the_input_topics() -> None:
    assert TOPICS["tollgate.catalog"]["cleanup_policy"] == "compact"
    with_ticks = {
        topic for topic, entry in TOPICS.items() if "clock_tick" in entry["value_schemas"]
    }
    assert with_ticks == {"tollgate.usage-events", "tollgate.subscriptions"}
