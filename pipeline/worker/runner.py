"""The agent's body, kept free of Faust: apply a usage batch, send its outputs and wait for the
broker; write changed state at most once per flush interval (see partition.py for the order)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pipeline.billing.context import EngineSettings
from pipeline.billing.rejections import Reason, Rejection
from pipeline.billing.webhooks import Output
from pipeline.clients.delivery import AckedProducer, Outgoing
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
from pipeline.worker.partition import Applied, Flush, PartitionBook
from pipeline.worker.records import InputMessage

log = logging.getLogger("tollgate.worker")

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
        changelog: AckedProducer,
    ) -> None:
        self.engine = engine
        self.destinations = destinations
        self.ids = ids
        self.max_bytes = max_bytes
        self.producer = producer  # outputs and dead letters
        self.changelog = changelog  # state
        self.books: dict[int, PartitionBook] = {}

    def forget(self) -> None:
        """Drop every cached partition (after a rebalance): rebuilt from the table on use."""
        self.books.clear()

    def book(self, partition: int, table: TableAccess) -> PartitionBook:
        book = self.books.get(partition)
        if book is None:
            book = PartitionBook.restore(partition, table.read, table.scan, self.engine)
            self.books[partition] = book
            gc.freeze()  # what was restored lives long: out of the collector's scans
        return book

    @property
    def dirty(self) -> int:
        return sum(book.dirty for book in self.books.values())

    def process(self, partition: int, batch: UsageBatch, table: TableAccess) -> Applied:
        """Apply one usage batch and send what it produced (acknowledged before any state
        that depends on it is written: `write` drains the producer first)."""
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
        sent = self.producer.send(outgoing)
        timestamps = [m.timestamp_ms for m in messages]
        sent.add_done_callback(lambda done: _observe_latency(done, timestamps))
        count_metrics(applied, messages)
        metrics.APPLIED_OFFSET.labels(str(source)).set(book.head_offset)
        return applied

    def stage_partition(self, partition: int) -> Flush | None:
        """One partition's writes since its last flush (partition.py), None when there is
        nothing new or the partition is not held; the book counts them as stored from here on,
        so `write` must carry them out or the process must end."""
        book = self.books.get(partition)
        return None if book is None else book.flush()

    async def write(self, staged: list[tuple[int, Flush]], table: TableAccess) -> int:
        """Write staged flushes phase by phase — every partition's phase 1, acknowledged, then
        every phase 2, then every head — and apply each acknowledged record to the local store.
        First, every output sent so far must be acknowledged: state never runs ahead of the
        outputs it produced. Returns the records written."""
        started = time.monotonic()
        await self.producer.drain()
        depth = max((len(flush.phases) for _, flush in staged), default=0)
        for index in range(depth):
            parts = [(p, f.phases[index]) for p, f in staged if index < len(f.phases)]
            records = [
                Outgoing(self.destinations.changelog, key.encode(), value, partition)
                for partition, phase in parts
                for key, value in phase
            ]
            offsets = iter(await self.changelog.send_all(records))
            for partition, phase in parts:
                table.store(partition, [(k, v, next(offsets)) for k, v in phase])
        written = sum(flush.writes for _, flush in staged)
        metrics.STATES_WRITTEN.inc(sum(flush.states for _, flush in staged))
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


def count_metrics(applied: Applied, messages: Sequence[InputMessage]) -> None:
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
    metrics.ALERTS.inc(counts.get("alerts_triggered", 0))
    for rejection, message in applied.rejections:
        metrics.DEAD_LETTERS.labels(rejection.reason.value).inc()
        if rejection.reason is Reason.INTERNAL_ERROR:  # a bug, contained: say so
            where = message.ref if message else "-"
            log.error("dead-lettered %s: %s", where, rejection.message)
    for output in applied.outputs:
        if output.webhook_type == "invoice.created":
            metrics.INVOICES.labels(output.body["invoice"]["invoice_type"]).inc()
        elif output.webhook_type == "subscription.access_changed":
            metrics.ACCESS_CHANGES.labels(output.body["access"]["reason"]).inc()


def _observe_latency(sent: asyncio.Future[list[int]], timestamps: list[int]) -> None:
    """Record timestamp → outputs acknowledged, for each message of a batch."""
    if sent.cancelled() or sent.exception() is not None:
        return  # the next flush's drain raises it and ends the process
    now_ms = time.time() * 1000
    observe = metrics.LATENCY.observe
    for timestamp_ms in timestamps:
        observe(max(now_ms - timestamp_ms, 0.0) / 1000)
