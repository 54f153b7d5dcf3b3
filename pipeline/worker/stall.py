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

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EXIT_STALLED = 75  # EX_TEMPFAIL: try again

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Progress:
    offset: int  # last offset applied (-1: none since the partition was assigned)
    since: float  # when it last moved, or when the partition was assigned


@dataclass(slots=True)
class StallWatch:
    """Fed by the agent (`applied`), read by the guard thread (`stalled`)."""

    after: float
    _partitions: dict[int, _Progress] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def applied(self, partition: int, offset: int, now: float) -> None:
        """The agent applied messages of `partition` up to `offset`."""
        with self._lock:
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
        with self._lock:
            for partition in list(self._partitions):
                if partition not in assigned:
                    del self._partitions[partition]  # re-measured from its next assignment
            found = {}
            for partition in sorted(assigned):
                progress = self._partitions.setdefault(partition, _Progress(-1, now))
                next_offset = (
                    progress.offset + 1 if progress.offset >= 0 else committed.get(partition)
                )
                waiting = ends.get(partition, 0) - max(next_offset or 0, 0)
                if waiting <= 0:
                    progress.since = now  # nothing to do is not a stall
                elif now - progress.since >= self.after:
                    found[partition] = waiting
            return found


class BrokerView:
    """What the broker says of this worker: the usage-batches partitions its group gave to the
    member with `client_id`, their end offsets and committed offsets. Asked directly, because a
    stuck Faust consumer can hold a stale picture of its own assignment and high watermarks."""

    def __init__(self, bootstrap: str, group: str, client_id: str, topic: str) -> None:
        self.bootstrap, self.group, self.client_id, self.topic = bootstrap, group, client_id, topic
        self._admin: Any = None
        self._consumer: Any = None

    def read(self) -> tuple[set[int], dict[int, int], dict[int, int]]:
        from confluent_kafka import Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient

        if self._admin is None:  # the consumer never subscribes: it asks, it does not join
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
            config = {"bootstrap.servers": self.bootstrap, "group.id": self.group}
            self._consumer = Consumer({**config, "enable.auto.commit": False})
        group = self._admin.describe_consumer_groups([self.group])[self.group].result(timeout=10)
        assigned = {
            tp.partition
            for member in group.members
            if member.client_id == self.client_id and member.assignment is not None
            for tp in member.assignment.topic_partitions
            if tp.topic == self.topic
        }
        tps = [TopicPartition(self.topic, p) for p in sorted(assigned)]
        ends = {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        committed = {tp.partition: tp.offset for tp in self._consumer.committed(tps, timeout=10)}
        return assigned, ends, committed


def start_guard(
    watch: StallWatch, view: BrokerView, exit: Callable[[int], None] = os._exit
) -> threading.Thread:
    """A daemon thread, apart from Faust's event loop (which it watches), that checks every
    quarter of `watch.after` (at most 15 s) and ends the process on a stall."""

    def run() -> None:
        interval = min(watch.after / 4, 15.0)
        while True:
            time.sleep(interval)
            try:
                assigned, ends, committed = view.read()
            except Exception as error:  # the broker is away: no verdict this time
                log.warning("stall check skipped: %s", error)
                continue
            stalled = watch.stalled(assigned, ends, committed, time.monotonic())
            if stalled:
                waiting = ", ".join(f"partition {p}: {n} messages" for p, n in stalled.items())
                log.error(
                    "no progress for %.0f s with messages waiting (%s): exiting with code %d "
                    "for a restart",
                    watch.after,
                    waiting,
                    EXIT_STALLED,
                )
                sys.stderr.flush()
                exit(EXIT_STALLED)  # as safe as a crash: state never runs ahead of outputs
                return

    thread = threading.Thread(target=run, name="stall-guard", daemon=True)
    thread.start()
    return thread
