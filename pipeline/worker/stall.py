"""Noticing a partition the worker holds but no longer consumes.

After repeated rebalances faust-streaming can leave an assigned partition unfetched, with no
error and no end (its buffer-full and recovery pauses are the suspects). Billing must not stop
silently, so the worker compares, per partition it holds, the broker's end offset with the
last offset it applied; a partition with messages waiting that has not moved for `after`
seconds is stalled (`StallWatch`, given the broker's offsets by `BrokerOffsets`). The worker
then exits (code `EXIT_STALLED`), which is as safe as a crash (docs/crash-safety.md), and its
supervisor starts it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_STALLED = 75  # EX_TEMPFAIL: try again


@dataclass(slots=True)
class _Progress:
    offset: int  # last offset applied (-1: none since the partition was assigned)
    since: float  # when it last moved, or when the partition was assigned


@dataclass(slots=True)
class StallWatch:
    after: float
    _partitions: dict[int, _Progress] = field(default_factory=dict)

    def applied(self, partition: int, offset: int, now: float) -> None:
        """The agent applied messages of `partition` up to `offset`."""
        progress = self._partitions.get(partition)
        if progress is None or offset > progress.offset:
            self._partitions[partition] = _Progress(offset, now)

    def stalled(
        self, assigned: set[int], ends: dict[int, int], committed: dict[int, int], now: float
    ) -> dict[int, int]:
        """The assigned partitions that are stalled, with how many messages wait in each.

        `ends`: the broker's end offset per partition; `committed`: the group's committed
        offset (the next to read) for partitions this worker has applied nothing of yet.
        """
        for partition in list(self._partitions):
            if partition not in assigned:
                del self._partitions[partition]  # re-measured from its next assignment
        found = {}
        for partition in sorted(assigned):
            progress = self._partitions.setdefault(partition, _Progress(-1, now))
            next_offset = progress.offset + 1 if progress.offset >= 0 else committed.get(partition)
            waiting = ends.get(partition, 0) - max(next_offset or 0, 0)
            if waiting <= 0:
                progress.since = now  # nothing to do is not a stall
            elif now - progress.since >= self.after:
                found[partition] = waiting
        return found


class BrokerOffsets:
    """End and committed offsets of the usage-events partitions, asked of the broker directly:
    a partition Faust no longer fetches has no fresh high watermark in Faust."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self._consumer: Any = None

    def read(self, partitions: set[int]) -> tuple[dict[int, int], dict[int, int]]:
        """(end offsets, committed offsets) by partition; blocking, run it in a thread."""
        from confluent_kafka import Consumer, TopicPartition

        if self._consumer is None:  # never subscribes: it only asks, it does not join the group
            config = {"bootstrap.servers": self.bootstrap, "group.id": self.group}
            self._consumer = Consumer({**config, "enable.auto.commit": False})
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        ends = {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        committed = {tp.partition: tp.offset for tp in self._consumer.committed(tps, timeout=10)}
        return ends, committed
