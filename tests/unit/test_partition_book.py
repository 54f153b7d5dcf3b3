"""The worker's per-partition book, without Kafka: a crash between any two state writes, then
redelivery, gives the same outputs and never bills an event twice."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pipeline.billing.context import EngineSettings
from pipeline.replay import parse_record
from pipeline.wire import DEFAULT_SCHEMA_IDS
from pipeline.worker.partition import PartitionBook
from pipeline.worker.records import InputMessage
from tests.integration.timelines import busy_timeline

SETTINGS = EngineSettings(journal=True)


def messages(lines: list[str]) -> list[InputMessage]:
    from pipeline.wire import (
        CatalogRecord,
        SubscriptionRecord,
        encode_catalog_record,
        encode_subscription_record,
        encode_tick,
        encode_usage_event,
    )

    out: list[InputMessage] = []
    for number, line in enumerate(lines, start=1):
        record = parse_record(line, number)
        ms = int(record.at.timestamp() * 1000)
        payload = record.payload
        if record.kind == "event":
            value, key = encode_usage_event(payload), payload["external_subscription_id"]  # type: ignore[index,arg-type]
        elif record.kind == "subscription":
            value = encode_subscription_record(SubscriptionRecord.upsert(payload))  # type: ignore[arg-type]
            key = payload["external_id"]  # type: ignore[index]
        elif record.kind == "tick":
            value, key = encode_tick(), None
        else:
            code = payload.get("code") or payload.get("external_id")  # type: ignore[union-attr]
            value, key = encode_catalog_record(CatalogRecord(record.kind, str(code), payload)), None  # type: ignore[arg-type]
        out.append(InputMessage("in", 0, len(out), ms, key.encode() if key else None, value))
    return out


class Table(dict[str, bytes]):
    def scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        return ((k, v) for k, v in list(self.items()) if k.startswith(prefix))

    def write(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.pop(key, None)
        else:
            self[key] = value


def run(book: PartitionBook, table: Table, batch: list[InputMessage], keep: int | None = None):
    result = book.apply(batch, DEFAULT_SCHEMA_IDS, 1 << 20)
    writes = result.writes if keep is None else result.writes[:keep]
    for key, value in writes:
        table.write(key, value)
    return [(o.id, o.body) for o in result.outputs]


@pytest.mark.parametrize("cut", [0, 1, 3, 7, 20, -1])
def test_a_crash_between_any_two_writes_neither_loses_nor_bills_twice(cut: int):
    lines = busy_timeline(subscriptions=3, events=120, seed=1)
    stream = messages(lines)
    # With duplicates of accepted events appended later (new offsets): must stay dropped.
    duplicates = [
        InputMessage("in", 0, len(stream) + i, m.timestamp_ms + 1, m.key, m.value)
        for i, m in enumerate(stream[10:20])
    ]
    stream += duplicates
    batches = [stream[i : i + 25] for i in range(0, len(stream), 25)]

    table = Table()
    book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
    expected = [out for batch in batches for out in run(book, table, batch)]

    table = Table()
    book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
    produced = []
    for index, batch in enumerate(batches):
        if index == 2:  # crash while writing batch 2's state: only a prefix lands
            produced += run(book, table, batch, keep=cut if cut >= 0 else None)
            book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
            produced += run(book, table, batch)  # redelivered
        else:
            produced += run(book, table, batch)
    assert dict(produced) == dict(expected)
    assert len(dict(produced)) == len(dict(expected))


def test_the_window_is_stored_a_record_per_transaction_id():
    stream = messages(busy_timeline(subscriptions=2, events=40, seed=2))
    table = Table()
    book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
    run(book, table, stream)
    seen = [k for k in table if k.startswith("seen\x1f")]
    window = sum(len(sub.seen) for sub in book.ledger.subscriptions.values())
    ids = {tid for k, v in table.items() if k.startswith("seen\x1f") for tid in json.loads(v)}
    assert len(ids) - len(seen) > 0 and window <= len(ids) < 40  # expired increments deleted
    assert all(b'"seen":null' in v for k, v in table.items() if k.startswith("sub/"))


def test_a_crash_among_catalogue_writes_neither_loses_nor_bills_twice():
    """Definitions are stored one record each, only when they change: a batch that defines a
    customer and changes a plan twice is cut at every one of its writes, then redelivered."""
    lines = busy_timeline(subscriptions=3, events=60, seed=3)
    at = json.loads(lines[40])["at"]
    plan = json.loads(lines[1])["plan"]
    dearer = {**plan, "charges": [{**plan["charges"][0], "properties": {"amount": "0.004"}}]}
    cheaper = {**plan, "charges": [{**plan["charges"][0], "properties": {"amount": "0.002"}}]}
    customer = {"external_id": "cus-0", "timezone": "Europe/Paris", "currency": "USD"}
    changes = [
        json.dumps({"at": at, "type": "customer", "customer": customer}),
        json.dumps({"at": at, "type": "plan", "plan": dearer}),
        json.dumps({"at": at, "type": "plan", "plan": cheaper}),
    ]
    stream = messages(lines[:40] + changes + lines[40:])
    batches = [stream[0:30], stream[30:50], stream[50:]]  # the middle one holds the changes

    table = Table()
    book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
    expected = [out for batch in batches for out in run(book, table, batch)]
    assert any(k.startswith("def/0/customer") for k in table), "the customer has its record"

    table = Table()
    book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
    run(book, table, batches[0])
    writes = len(book.apply(batches[1], DEFAULT_SCHEMA_IDS, 1 << 20).writes)
    assert writes > 3
    for cut in range(writes + 1):
        table = Table()
        book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
        produced = run(book, table, batches[0])
        produced += run(book, table, batches[1], keep=cut)  # crash: a prefix of the writes
        book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
        produced += run(book, table, batches[1])  # redelivered
        produced += run(book, table, batches[2])
        assert dict(produced) == dict(expected), f"cut after {cut} of {writes} writes"
