"""The intake's consumer loop: usage-events → usage batches, on confluent-kafka.

Offsets: a partition's source offsets are committed only once the batch holding them is
acknowledged by the broker (idempotent producer, acks=all), so a crash re-reads at most the
batches in flight; the worker skips what it has applied already (by source offset). A delivery
that fails for good stops the intake with an error: what follows it in that partition must not
be committed over a hole.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from pipeline.intake import metrics
from pipeline.intake.packer import Bounds, PackedBatch, Packer
from pipeline.kernel.errors import TollgateError
from pipeline.wire import SchemaIds, encode_framed_batch

log = logging.getLogger(__name__)

LAG_EVERY = 1.0  # seconds between lag readings
COMMIT_EVERY = 0.2  # seconds between offset commits while batches are acknowledged


class DeliveryFailed(TollgateError):
    """A usage batch was not acknowledged by the broker: the intake must start over from its
    last committed offsets."""


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    bootstrap: str
    group: str
    source_topic: str
    batch_topic: str
    bounds: Bounds
    batch_message_bytes: int
    ids: SchemaIds
    client_id: str = "tollgate-intake"


class Intake:
    def __init__(self, config: IntakeConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.packer = Packer(config.bounds)
        self.running = True
        self._acked: dict[int, int] = {}  # partition → next source offset to commit
        self._committed: dict[int, int] = {}
        self._assigned: set[int] = set()
        self._failure: str | None = None
        self._last_commit = self._last_lag = 0.0
        self.joined = False  # the group assigned this intake its partitions (maybe none) once
        self.consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap,
                "group.id": config.group,
                "client.id": config.client_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.message.max.bytes": config.batch_message_bytes,
                "log_level": 3,
            }
        )
        self.producer = Producer(
            {
                "bootstrap.servers": config.bootstrap,
                "client.id": config.client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "message.max.bytes": config.batch_message_bytes,
                "log_level": 3,
            }
        )

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self.consumer.subscribe(
            [self.config.source_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while self.running:
                self.step()
            self._finish()
        finally:
            self.consumer.close()

    def step(self) -> None:
        """Read what is there (waiting at most until the oldest open batch falls due), pack it,
        send the batches that closed or fell due, and commit what the broker acknowledged."""
        now = self.clock()
        deadline = self.packer.next_deadline()
        wait = 0.1 if deadline is None else min(max(deadline - now, 0.0), 0.1)
        messages = self.consumer.consume(self.config.bounds.max_messages, timeout=wait)
        now = self.clock()
        add, send = self.packer.add, self._send
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
                continue
            _, timestamp_ms = message.timestamp()
            closed = add(
                message.partition(),  # type: ignore[arg-type]
                message.offset(),  # type: ignore[arg-type]
                timestamp_ms,
                message.key(),
                message.value(),
                now,
            )
            if closed is not None:
                send(closed)
        metrics.MESSAGES.inc(len(messages))
        for batch in self.packer.due(now):
            send(batch)
        self.producer.poll(0)
        self._check()
        if now - self._last_commit >= COMMIT_EVERY:
            self._commit(asynchronous=True)
        if now - self._last_lag >= LAG_EVERY:
            self._record_lag()

    @property
    def last_turn(self) -> float:
        """When the loop last took its lag reading (every LAG_EVERY seconds while it turns)."""
        return self._last_lag

    def stop(self, *_: Any) -> None:
        self.running = False

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- sending and committing -----------------------------------------------------------

    def _send(self, batch: PackedBatch) -> None:
        value = encode_framed_batch(
            self.config.source_topic,
            batch.partition,
            batch.from_offset,
            batch.count,
            batch.frames,
            ids=self.config.ids,
        )

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                self._failure = (
                    f"usage batch of partition {batch.partition} (source offsets "
                    f"{batch.from_offset}..{batch.last_offset}) not acknowledged: {error}"
                )
                return
            self._acked[batch.partition] = batch.last_offset + 1
            metrics.BATCHES.inc()
            metrics.BATCH_MESSAGES.observe(batch.count)
            metrics.BATCH_BYTES.observe(len(batch.frames))
            metrics.LINGER.observe(max(self.clock() - batch.opened_at, 0.0))

        while True:
            try:
                self.producer.produce(
                    self.config.batch_topic,
                    value=value,
                    partition=batch.partition,
                    timestamp=batch.timestamp_ms,
                    on_delivery=delivered,
                )
                return
            except BufferError:  # the producer's queue is full: let deliveries drain it
                self.producer.poll(0.05)
                self._check()

    def _check(self) -> None:
        if self._failure is not None:
            raise DeliveryFailed(self._failure)

    def _commit(self, *, asynchronous: bool) -> None:
        self._last_commit = self.clock()
        offsets = [
            TopicPartition(self.config.source_topic, p, offset)
            for p, offset in self._acked.items()
            if p in self._assigned and self._committed.get(p) != offset
        ]
        if not offsets:
            return
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:  # e.g. broker away: the next commit carries it
            log.warning("intake: offset commit failed (%s); retried with the next", error)
            return
        for tp in offsets:
            self._committed[tp.partition] = tp.offset

    def _finish(self) -> None:
        """Stopping: send what is packed, wait for the broker, commit for good."""
        for batch in self.packer.drain():
            self._send(batch)
        self._flush()
        self._commit(asynchronous=False)

    def _flush(self) -> None:
        while self.producer.flush(1.0) > 0:
            self._check()
        self._check()

    # -- group membership -----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = consumer.committed(partitions, timeout=30)
        for tp in committed:
            position = tp.offset
            if position < 0:  # nothing committed: reading starts at the earliest offset
                position, _ = consumer.get_watermark_offsets(tp, timeout=30)
            self.packer.start(tp.partition, position)
            self._assigned.add(tp.partition)
            self._committed[tp.partition] = position
            self._acked.pop(tp.partition, None)
        self.joined = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Hand over cleanly: batches in flight are acknowledged and their offsets committed;
        what was packed but not sent is read again by the partition's next owner."""
        self._flush()
        self._commit(asynchronous=False)
        for tp in partitions:
            self.packer.stop(tp.partition)
            self._assigned.discard(tp.partition)
            self._acked.pop(tp.partition, None)
            self._committed.pop(tp.partition, None)

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("intake: %s", error)

    def _record_lag(self) -> None:
        self._last_lag = self.clock()
        tps = [TopicPartition(self.config.source_topic, p) for p in sorted(self._assigned)]
        if not tps:
            return
        for tp in self.consumer.position(tps):
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                metrics.LAG.labels(str(tp.partition)).set(max(high - tp.offset, 0))
