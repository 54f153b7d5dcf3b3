"""Where a subscription's state lives, for the HTTP API: Faust's table routing over the worker's
partition books.

A subscription's records go to partition murmur2(external id) of the input topics (the Java
clients' partitioner, which confluent-kafka's `murmur2_random` and aiokafka's default share),
and the ledger table's changelog partition of the same number holds its state. Faust's
partition assignor tells every member which worker (by its advertised API URL, Faust's
`canonical_url`) holds each changelog partition: that is the owner. The owner answers from its
`PartitionBook`, restoring it from the table first if no batch has loaded it yet — never while a
rebalance or a recovery is in progress, when the table may be behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import murmur2

from pipeline.api.directory import Here, Location, Nowhere, There
from pipeline.billing.engine import Ledger
from pipeline.worker.runner import Runner, TableAccess


def partition_of(external_id: str, partitions: int) -> int:
    """The partition a record keyed by `external_id` goes to (Java's murmur2 partitioner)."""
    hashed: int = murmur2(external_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def _same(url: str, other: str) -> bool:
    return url.rstrip("/") == other.rstrip("/")


class WorkerDirectory:
    def __init__(
        self,
        app: Any,  # the faust.App
        table: Any,  # the ledger table
        runner: Runner,
        access: TableAccess,
        *,
        partitions: int,
        own_url: str,
        wall_clock: bool,
    ) -> None:
        self.app, self.table, self.runner, self.access = app, table, runner, access
        self.partitions, self.own_url, self.wall_clock = partitions, own_url, wall_clock

    def _owners(self) -> dict[int, str]:
        """Changelog partition → the API URL of the worker holding it (Faust's assignor)."""
        owners: dict[int, str] = {}
        for url, topics in self.app.router.table_metadata(self.table.name).items():
            for numbers in topics.values():
                for number in numbers:
                    owners[number] = str(url)
        return owners

    def _busy(self) -> str | None:
        app = self.app
        if not app.rebalancing_count:
            return "the worker has not joined its group yet; retry"
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return "partitions are being reassigned or recovered; retry"
        return None

    def locate(self, external_subscription_id: str) -> Location:
        busy = self._busy()
        if busy is not None:
            return Nowhere(busy)
        partition = partition_of(external_subscription_id, self.partitions)
        owner = self._owners().get(partition)
        if owner is None:
            return Nowhere(f"no worker holds partition {partition} yet; retry")
        if not _same(owner, self.own_url):
            return There(owner)
        return self._here(partition)

    def local(self) -> Sequence[Here]:
        if self._busy() is not None:
            return []
        mine = sorted(p for p, url in self._owners().items() if _same(url, self.own_url))
        return [self._here(partition) for partition in mine]

    def peers(self) -> Sequence[str]:
        return sorted({url for url in self._owners().values() if not _same(url, self.own_url)})

    def _here(self, partition: int) -> Here:
        book = self.runner.book(partition, self.access)
        return Here(book.ledger, self._now(book.ledger))

    def _now(self, ledger: Ledger) -> datetime:
        """The instant access is evaluated at: the wall clock, never behind the pipeline
        clock (with `--clock records`, the pipeline clock alone, as the worker's pushes)."""
        clock = ledger.clock
        if not self.wall_clock:
            return clock or datetime.now(UTC)
        wall = datetime.now(UTC)
        return wall if clock is None or clock < wall else clock
