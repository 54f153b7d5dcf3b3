"""Packing one consumer's messages into usage batches: bounds and bookkeeping, no Kafka.

Per partition, messages accumulate in a `FrameWriter` until the batch holds `max_messages` or
`max_bytes`, or its first message has waited `linger` seconds. Each batch says where its
partition's reading continued from (`from_offset`), so the worker can tell an explainable jump
in offsets from a lost batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.wire import FrameWriter

ORIGINAL_PREFIX_BYTES = 512 * 1024
"""What travels of a message over the size limit: the worker dead-letters it as malformed,
keeping this much of the original, as it does for any oversized input."""


@dataclass(frozen=True, slots=True)
class PackedBatch:
    partition: int
    from_offset: int
    last_offset: int
    count: int
    frames: bytes
    timestamp_ms: int  # the last message's: the batch's own record timestamp
    opened_at: float  # when its first message arrived (monotonic seconds): linger measured


@dataclass(frozen=True, slots=True)
class Bounds:
    max_messages: int
    max_bytes: int
    linger: float
    max_message_bytes: int  # a larger message travels cut to its first ORIGINAL_PREFIX_BYTES


class _Open:
    __slots__ = ("from_offset", "opened_at", "timestamp_ms", "writer")

    def __init__(self, from_offset: int, opened_at: float) -> None:
        self.writer = FrameWriter()
        self.from_offset = from_offset
        self.opened_at = opened_at
        self.timestamp_ms = 0


class Packer:
    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self._next: dict[int, int] = {}  # partition → offset the next batch continues from
        self._open: dict[int, _Open] = {}

    def start(self, partition: int, position: int) -> None:
        """The consumer (re)starts reading `partition` at `position` (committed or earliest)."""
        self._next[partition] = position
        self._open.pop(partition, None)

    def stop(self, partition: int) -> None:
        """The partition was taken away: what was not sent is read again by its next owner."""
        self._next.pop(partition, None)
        self._open.pop(partition, None)

    def add(
        self,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        now: float,
    ) -> PackedBatch | None:
        """Add one message; returns the partition's batch when this message closed it."""
        batch = self._open.get(partition)
        if batch is None:
            start = self._next.get(partition, offset)
            batch = self._open[partition] = _Open(min(start, offset), now)
        size = len(value) if value is not None else 0
        if size > self.bounds.max_message_bytes and value is not None:
            value = value[:ORIGINAL_PREFIX_BYTES]
        batch.writer.add(offset, timestamp_ms, key, value, size)
        batch.timestamp_ms = timestamp_ms
        writer = batch.writer
        if writer.count >= self.bounds.max_messages or writer.bytes >= self.bounds.max_bytes:
            return self._close(partition)
        return None

    def due(self, now: float) -> list[PackedBatch]:
        """Batches whose first message has waited `linger` seconds."""
        late = [p for p, b in self._open.items() if now - b.opened_at >= self.bounds.linger]
        return [self._close(p) for p in late]

    def next_deadline(self) -> float | None:
        """When the oldest open batch falls due (monotonic seconds), if any is open."""
        if not self._open:
            return None
        return min(b.opened_at for b in self._open.values()) + self.bounds.linger

    def drain(self) -> list[PackedBatch]:
        return [self._close(p) for p in list(self._open)]

    def _close(self, partition: int) -> PackedBatch:
        batch = self._open.pop(partition)
        writer = batch.writer
        self._next[partition] = writer.last_offset + 1
        return PackedBatch(
            partition,
            batch.from_offset,
            writer.last_offset,
            writer.count,
            writer.getvalue(),
            batch.timestamp_ms,
            batch.opened_at,
        )
