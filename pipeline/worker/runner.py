"""The agent's body, kept free of Faust: apply a usage batch, send its outputs and wait for the
broker; write changed state at most once per flush interval (see partition.py for the order)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pipeline.billing.context import EngineSettings
from pipeline.billing.rejections import Rejection
from pipeline.billing.webhooks import Output
from pipeline.wire import (
    DeadLetter,
    OutputRecord,
    SchemaIds,
    UsageBatch,
    encode_dead_letter,
    encode_output,
)
from pipeline.wire.jsontext import dumps
from pipeline.worker import metrics
from pipeline.worker.delivery import AckedProducer, Outgoing
from pipeline.worker.partition import Applied, PartitionBook
from pipeline.worker.records import InputMessage

# A dead letter repeats at most this much of the original message (the rest is counted).
DEAD_LETTER_ORIGINAL_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class TableAccess:
    """The worker's state table as the runner needs it (Faust stays in app.py)."""

    read: Callable[[str], bytes | None]
    scan: Callable[[str], Iterable[tuple[str, bytes]]]
    # Records the broker acknowledged on the changelog, as (key, value or None, offset):
    # applied to the local store the way Faust's recovery applies them.
    store: Callable[[int, Sequence[tuple[str, bytes | None, int]]], None]


@dataclass(frozen=True, slots=True)
class Destinations:
    outputs: str
    dead_letters: str
    changelog: str


class Runner:
    def __init__(
        self,
        engine: EngineSettings,
        destinations: Destinations,
        ids: SchemaIds,
        max_bytes: int,
        producer: AckedProducer,
    ) -> None:
        self.engine = engine
        self.destinations = destinations
        self.ids = ids
        self.max_bytes = max_bytes
        self.producer = producer
        self.books: dict[int, PartitionBook] = {}

    def forget(self) -> None:
        """Drop every cached partition (after a rebalance): rebuilt from the table on use."""
        self.books.clear()

    def book(self, partition: int, table: TableAccess) -> PartitionBook:
        book = self.books.get(partition)
        if book is None:
            book = PartitionBook.restore(partition, table.read, table.scan, self.engine)
            self.books[partition] = book
        return book

    @property
    def dirty(self) -> int:
        return sum(book.dirty for book in self.books.values())

    async def process(self, partition: int, batch: UsageBatch, table: TableAccess) -> Applied:
        """Apply one usage batch and send what it produced; nothing is stored yet."""
        book = self.book(partition, table)
        book.check_continuity(batch.from_offset)
        topic, source = batch.source_topic, batch.source_partition
        messages = [
            InputMessage(topic, source, m.offset, m.timestamp_ms, m.key, m.value, m.size)
            for m in batch.messages
        ]
        applied = book.apply(messages, self.ids, self.max_bytes)
        outgoing = [self._output(o, applied) for o in applied.outputs]
        outgoing += [self._dead_letter(r, m) for r, m in applied.rejections]
        await self.producer.send_all(outgoing)
        _count(applied, messages)
        metrics.APPLIED_OFFSET.labels(str(source)).set(book.head_offset)
        return applied

    async def flush(self, table: TableAccess) -> int:
        """Store every partition's changes, phase by phase (partition.py); the records written."""
        written = 0
        started = time.monotonic()
        for partition, book in sorted(self.books.items()):
            flush = book.flush()
            if flush is None:
                continue
            for phase in flush.phases:
                records = [
                    Outgoing(self.destinations.changelog, key.encode(), value, partition)
                    for key, value in phase
                ]
                offsets = await self.producer.send_all(records)
                table.store(
                    partition, [(k, v, o) for (k, v), o in zip(phase, offsets, strict=True)]
                )
            written += flush.writes
            metrics.STATES_WRITTEN.inc(flush.states)
        metrics.CHANGELOG_WRITES.inc(written)
        metrics.FLUSH_SECONDS.observe(time.monotonic() - started)
        metrics.FLUSH_RECORDS.observe(written)
        return written

    def _output(self, output: Output, applied: Applied) -> Outgoing:
        record = OutputRecord(
            output.id,
            output.webhook_type,
            output.object_type,
            output.external_subscription_id,
            output.external_customer_id,
            output.body,
        )
        key = (output.external_subscription_id or output.external_customer_id or "").encode()
        timestamp = int(applied.records[-1].at.timestamp() * 1000)
        value = encode_output(record, ids=self.ids)
        return Outgoing(self.destinations.outputs, key or None, value, None, timestamp)

    def _dead_letter(self, rejection: Rejection, message: InputMessage | None) -> Outgoing:
        original = (message.value or b"") if message else dumps(rejection.payload).encode()
        note = rejection.message
        size = max(len(original), message.size if message else 0)
        if size > DEAD_LETTER_ORIGINAL_BYTES:
            note += f" (original of {size} bytes, first {DEAD_LETTER_ORIGINAL_BYTES} kept)"
            original = original[:DEAD_LETTER_ORIGINAL_BYTES]
        letter = DeadLetter(
            reason=rejection.reason.value,
            message=note,
            source_topic=message.topic if message else "",
            source_partition=message.partition if message else -1,
            source_offset=message.offset if message else -1,
            original=original,
            external_subscription_id=rejection.external_subscription_id,
        )
        key = (rejection.external_subscription_id or "").encode() or None
        timestamp = message.timestamp_ms if message else int(time.time() * 1000)
        value = encode_dead_letter(letter, ids=self.ids)
        return Outgoing(self.destinations.dead_letters, key, value, None, timestamp)


def _count(applied: Applied, messages: Sequence[InputMessage]) -> None:
    counts = applied.counts
    metrics.BATCH_SIZE.observe(len(messages))
    metrics.REDELIVERED.inc(applied.skipped)
    for kind, number in Counter(record.kind for record in applied.records).items():
        metrics.EVENTS_IN.labels(kind).inc(number)
    metrics.ACCEPTED.inc(counts.get("accepted", 0))
    metrics.DUPLICATES.inc(counts.get("duplicates", 0))
    metrics.UNCHARGED.inc(counts.get("uncharged", 0))
    metrics.THRESHOLDS.inc(counts.get("thresholds", 0))
    metrics.CREDIT_NOTES.inc(counts.get("credit_notes", 0))
    for rejection, _ in applied.rejections:
        metrics.DEAD_LETTERS.labels(rejection.reason.value).inc()
    for output in applied.outputs:
        if output.webhook_type == "invoice.created":
            metrics.INVOICES.labels(output.body["invoice"]["invoice_type"]).inc()
    now_ms = time.time() * 1000
    observe = metrics.LATENCY.observe
    for message in messages:
        observe(max(now_ms - message.timestamp_ms, 0.0) / 1000)
