"""The agent's body, kept free of Faust: group a batch by partition, apply it, send the outputs,
wait for the broker, then write the state (in that order: see partition.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from pipeline.billing.context import EngineSettings
from pipeline.billing.rejections import Reason, Rejection
from pipeline.billing.webhooks import Output
from pipeline.wire import DeadLetter, OutputRecord, SchemaIds, encode_dead_letter, encode_output
from pipeline.wire.jsontext import dumps
from pipeline.worker import metrics
from pipeline.worker.partition import Batch, PartitionBook
from pipeline.worker.records import InputMessage

log = logging.getLogger("tollgate.worker")

# A dead letter repeats at most this much of the original message (the rest is counted).
DEAD_LETTER_ORIGINAL_BYTES = 512 * 1024

Send = Callable[[str, bytes | None, bytes, float], Awaitable[Awaitable[object]]]
"""(topic, key, value, timestamp seconds) → a future that resolves when the broker acks."""


@dataclass(frozen=True, slots=True)
class TableAccess:
    """The worker's state table as the runner needs it (Faust stays in app.py)."""

    read: Callable[[str], bytes | None]
    scan: Callable[[str], Iterable[tuple[str, bytes]]]
    write: Callable[[str, bytes | None], None]  # None deletes


@dataclass(frozen=True, slots=True)
class Destinations:
    outputs: str
    dead_letters: str


class Runner:
    def __init__(
        self,
        engine: EngineSettings,
        destinations: Destinations,
        ids: SchemaIds,
        max_bytes: int,
    ) -> None:
        self.engine = engine
        self.destinations = destinations
        self.ids = ids
        self.max_bytes = max_bytes
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

    async def process(
        self,
        partition: int,
        messages: Sequence[InputMessage],
        table: TableAccess,
        send: Send,
    ) -> Batch:
        batch = self.book(partition, table).apply(messages, self.ids, self.max_bytes)
        pending = [await self._send_output(send, o, batch) for o in batch.outputs]
        pending += [await self._send_dead_letter(send, r, m) for r, m in batch.rejections]
        await asyncio.gather(*pending)
        for key, value in batch.writes:
            table.write(key, value)
        self._count(batch, messages)
        return batch

    async def _send_output(self, send: Send, output: Output, batch: Batch) -> Awaitable[object]:
        record = OutputRecord(
            output.id,
            output.webhook_type,
            output.object_type,
            output.external_subscription_id,
            output.external_customer_id,
            output.body,
        )
        key = (output.external_subscription_id or output.external_customer_id or "").encode()
        timestamp = batch.records[-1].at.timestamp()
        return await send(self.destinations.outputs, key or None, encode_output(record), timestamp)

    async def _send_dead_letter(
        self, send: Send, rejection: Rejection, message: InputMessage | None
    ) -> Awaitable[object]:
        original = (message.value or b"") if message else dumps(rejection.payload).encode()
        note = rejection.message
        if len(original) > DEAD_LETTER_ORIGINAL_BYTES:
            note += f" (original of {len(original)} bytes, first {DEAD_LETTER_ORIGINAL_BYTES} kept)"
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
        timestamp = message.timestamp_ms / 1000 if message else time.time()
        return await send(
            self.destinations.dead_letters, key, encode_dead_letter(letter), timestamp
        )

    @staticmethod
    def _count(batch: Batch, messages: Sequence[InputMessage]) -> None:
        counts = batch.counts
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.REDELIVERED.inc(batch.skipped)
        for record in batch.records:
            metrics.EVENTS_IN.labels(record.kind).inc()
        metrics.ACCEPTED.inc(counts.get("accepted", 0))
        metrics.DUPLICATES.inc(counts.get("duplicates", 0))
        metrics.UNCHARGED.inc(counts.get("uncharged", 0))
        metrics.THRESHOLDS.inc(counts.get("thresholds", 0))
        metrics.CREDIT_NOTES.inc(counts.get("credit_notes", 0))
        for rejection, message in batch.rejections:
            metrics.DEAD_LETTERS.labels(rejection.reason.value).inc()
            if rejection.reason is Reason.INTERNAL_ERROR:  # a bug, contained: say so
                where = message.ref if message else "-"
                log.error("dead-lettered %s: %s", where, rejection.message)
        for output in batch.outputs:
            if output.webhook_type == "invoice.created":
                metrics.INVOICES.labels(output.body["invoice"]["invoice_type"]).inc()
        now = time.time()
        for message in messages:
            metrics.LATENCY.observe(max(now - message.timestamp_ms / 1000, 0.0))
