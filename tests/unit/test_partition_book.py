"""The worker's per-partition book, without Kafka: a crash anywhere in a flush's writes, then
redelivery of what the flush covered, gives the same outputs and never bills an event twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from pipeline.billing.context import EngineSettings
from pipeline.replay import parse_record
from pipeline.wire import DEFAULT_SCHEMA_IDS
from pipeline.worker.partition import Gap, PartitionBook
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


def restore(table: Table) -> PartitionBook:
    return PartitionBook.restore(0, table.get, table.scan, SETTINGS)


def apply(book: PartitionBook, batch: list[InputMessage]) -> list[tuple[str, object]]:
    result = book.apply(batch, DEFAULT_SCHEMA_IDS, 1 << 20)
    return [(o.id, o.body) for o in result.outputs]


def store(book: PartitionBook, table: Table, keep: Callable[[list], list] | None = None) -> int:
    """Flush; `keep` picks, from the flattened writes, what lands before a crash (each phase
    must have landed whole before any write of the next is sent)."""
    flush = book.flush()
    if flush is None:
        return 0
    landed = [w for phase in flush.phases for w in phase]
    if keep is not None:
        landed = keep(list(flush.phases))
    for key, value in landed:
        table.write(key, value)
    return flush.writes


def crash_points(phases: list[tuple]) -> Iterator[tuple[str, Callable[[list], list]]]:
    """Every way a flush can be cut: whole phases, then a prefix, a suffix or every other
    write of the phase in flight (its writes are acknowledged in any order)."""
    for index, phase in enumerate(phases):
        before = [w for p in phases[:index] for w in p]
        for name, part in (
            ("nothing", []),
            ("first", list(phase[:1])),
            ("last", list(phase[-1:])),
            ("every other", list(phase[::2])),
            ("all but last", list(phase[:-1])),
        ):
            yield f"phase {index}: {name}", lambda _, b=before, p=part: b + p
    yield "everything", lambda ph: [w for p in ph for w in p]


def run_with_crash(batches: list[list[InputMessage]], crash_at: int, flush_every: int, pick):
    """Apply `batches`, flushing every `flush_every`; the flush after batch `crash_at` is cut
    by `pick`, the book is restored from the table, and the batches the cut flush covered
    (never acknowledged) are delivered again."""
    table = Table()
    book = restore(table)
    produced: list[tuple[str, object]] = []
    unflushed: list[list[InputMessage]] = []
    for index, batch in enumerate(batches):
        produced += apply(book, batch)
        unflushed.append(batch)
        if (index + 1) % flush_every and index != len(batches) - 1:
            continue
        if index == crash_at:
            store(book, table, pick)
            book = restore(table)
            for again in unflushed:
                produced += apply(book, again)
        store(book, table)
        unflushed = []
    return produced, book, table


def expected_outputs(batches: list[list[InputMessage]]) -> dict[str, object]:
    book, produced = restore(Table()), []
    for batch in batches:
        produced += apply(book, batch)
    return dict(produced)


def busy_batches(seed: int, size: int = 25) -> list[list[InputMessage]]:
    stream = messages(busy_timeline(subscriptions=3, events=120, seed=seed))
    # With duplicates of accepted events appended later (new offsets): must stay dropped.
    stream += [
        InputMessage("in", 0, len(stream) + i, m.timestamp_ms + 1, m.key, m.value)
        for i, m in enumerate(stream[10:20])
    ]
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def test_a_crash_anywhere_in_a_flush_neither_loses_nor_bills_twice():
    batches = busy_batches(seed=1)
    expected = expected_outputs(batches)
    table, book = Table(), restore(Table())
    for batch in batches[:4]:
        apply(book, batch)
    flush = book.flush()
    assert flush is not None and len(flush.phases) == 3
    for name, pick in crash_points(list(flush.phases)):
        produced, _, _ = run_with_crash(batches, crash_at=3, flush_every=2, pick=pick)
        assert dict(produced) == expected, name
    del table


@pytest.mark.parametrize("flush_every", [1, 3])
def test_coalesced_flushes_give_the_outputs_of_flushing_every_batch(flush_every: int):
    batches = busy_batches(seed=4)
    produced, book, table = run_with_crash(batches, crash_at=-1, flush_every=flush_every, pick=None)
    assert dict(produced) == expected_outputs(batches)
    again = restore(table)  # what was stored is what the book holds
    assert again.head_offset == book.head_offset
    assert again.ledger.subscriptions.keys() == book.ledger.subscriptions.keys()


def test_a_subscription_touched_by_many_events_is_written_once_per_flush():
    batches = busy_batches(seed=2, size=50)
    book = restore(Table())
    events = 0
    for batch in batches[:3]:
        apply(book, batch)
        events += len(batch)
    flush = book.flush()
    assert flush is not None
    states = [k for phase in flush.phases for k, _ in phase if k.startswith("sub/")]
    assert len(states) == len(set(states)) == 3 < events
    assert book.flush() is None  # nothing new: nothing to write


def test_the_window_is_one_record_per_flush_and_expired_records_are_deleted():
    stream = messages(busy_timeline(subscriptions=2, events=40, seed=2))
    table = Table()
    book = restore(table)
    for i in range(0, len(stream), 5):
        apply(book, stream[i : i + 5])
        store(book, table)
    window_keys = [k for k in table if k.startswith("seen/0/")]
    ids = {tid for k in window_keys for sub in json.loads(table[k]).values() for tid in sub}
    clock = book.ledger.clock
    assert clock is not None
    horizon = clock.timestamp() - SETTINGS.dedupe_window.total_seconds()
    subs = book.ledger.subscriptions.values()
    in_window = {tid for sub in subs for tid, at in sub.seen.items() if at >= horizon}
    assert in_window <= ids  # every id the engine still counts is stored...
    assert len(ids) < 40  # ...and records whose ids all left the window are gone
    assert all(b'"seen":null' in v for k, v in table.items() if k.startswith("sub/"))


def test_a_batch_after_a_gap_is_refused_with_the_offsets_to_rewind_to():
    stream = messages(busy_timeline(subscriptions=2, events=20, seed=5))
    book = restore(Table())
    apply(book, stream[:10])
    book.check_continuity(10)  # continues where it left off
    book.check_continuity(3)  # overlaps: redelivery, fine
    with pytest.raises(Gap, match=r"offsets 10\.\.14 were never applied"):
        book.check_continuity(15)
    restore(Table()).check_continuity(1234)  # no state yet: any start


def test_a_crash_among_catalogue_writes_neither_loses_nor_bills_twice():
    """Definitions are stored one record each, only when they change: a flush that defines a
    customer and changes a plan twice is cut at every point, then redelivered."""
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
    expected = expected_outputs(batches)

    book = restore(Table())
    apply(book, batches[0])
    book.flush()
    apply(book, batches[1])
    flush = book.flush()
    assert flush is not None
    assert any(k.startswith("def/0/customer") for phase in flush.phases for k, _ in phase)
    for name, pick in crash_points(list(flush.phases)):
        produced, _, _ = run_with_crash(batches, crash_at=1, flush_every=1, pick=pick)
        assert dict(produced) == expected, name
