"""One partition's billing: its ledger, what it has applied, and what must be stored.

Crash safety without Kafka transactions (docs/crash-safety.md):
- outputs carry deterministic ids, so sending one twice is harmless;
- the shell sends a batch's outputs and waits for the broker's acknowledgement *before* it writes
  the states that batch produced (`Batch.writes`), in this order: subscription states, the roster,
  the catalogue definitions it changed, the partition head — a crash leaves a prefix of them;
- each stored state carries the offset of the last message it has absorbed, so a redelivered
  message is recognised and skipped, per subscription and per partition.
Framework-free: the Faust agent hands in messages and carries out the writes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.billing.context import EngineSettings
from pipeline.billing.engine import Ledger, Record, Transition
from pipeline.billing.rejections import Rejection
from pipeline.billing.state import (
    dump_clock,
    dump_definition,
    dump_subscription,
    load_catalog,
    load_clock,
    load_subscription,
)
from pipeline.billing.webhooks import Output
from pipeline.wire import SchemaIds
from pipeline.worker.records import InputMessage, decode_message

_OFFSET = struct.Struct(">q")


def head_key(partition: int) -> str:
    return f"head/{partition}"


def roster_key(partition: int) -> str:
    return f"roster/{partition}"


def definition_prefix(partition: int) -> str:
    return f"def/{partition}/"


def definition_key(partition: int, kind: str, key: str) -> str:
    """One catalogue definition as this partition knows it: written when it changes, so the
    catalogue costs nothing per batch however many customers it holds."""
    return f"{definition_prefix(partition)}{kind}\x1f{key}"


def subscription_key(external_id: str) -> str:
    return f"sub/{external_id}"


SEEN_PREFIX = "seen\x1f"


def seen_key(external_id: str, offset: int) -> str:
    """The transaction ids one batch accepted for one subscription: the de-duplication window
    is stored as such increments, so a batch writes what it added, not the whole window."""
    return f"{SEEN_PREFIX}{external_id}\x1f{offset:020d}"


@dataclass(frozen=True, slots=True)
class SeenIncrement:
    offset: int
    newest: int  # acceptance time (pipeline clock, seconds) of its youngest id


def _stamp(offset: int, payload: bytes) -> bytes:
    return _OFFSET.pack(offset) + payload


def _unstamp(value: bytes) -> tuple[int, bytes]:
    return _OFFSET.unpack_from(value)[0], value[_OFFSET.size :]


@dataclass(slots=True)
class Batch:
    """What applying a batch produced; `writes` must wait for the outputs' acknowledgement."""

    outputs: list[Output] = field(default_factory=list)
    rejections: list[tuple[Rejection, InputMessage | None]] = field(default_factory=list)
    writes: list[tuple[str, bytes | None]] = field(default_factory=list)  # None: delete
    counts: dict[str, int] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    skipped: int = 0


class PartitionBook:
    def __init__(self, partition: int, ledger: Ledger) -> None:
        self.partition = partition
        self.ledger = ledger
        self.head_offset = -1
        self.offsets: dict[str, int] = {}  # per subscription: last offset its state absorbed
        self.roster: set[str] = set()
        self.increments: dict[str, list[SeenIncrement]] = {}  # stored window records

    @classmethod
    def restore(
        cls,
        partition: int,
        read: Callable[[str], bytes | None],
        scan: Callable[[str], Iterable[tuple[str, bytes]]],
        settings: EngineSettings,
    ) -> PartitionBook:
        """Continue from what the table holds for `partition` (empty: a new partition).
        `scan(prefix)` lists the table's records whose key starts with `prefix`."""
        head = read(head_key(partition))
        if head is None:
            return cls(partition, Ledger(settings))
        head_offset, head_bytes = _unstamp(head)
        clock = load_clock(head_bytes)
        catalog = load_catalog(value for _, value in scan(definition_prefix(partition)))
        roster_bytes = read(roster_key(partition)) or b""
        roster = {name for name in roster_bytes.decode().split("\n") if name}
        offsets: dict[str, int] = {}
        stored_states: dict[str, bytes] = {}
        for external_id in sorted(roster):
            stored = read(subscription_key(external_id))
            if stored is not None:
                offsets[external_id], stored_states[external_id] = _unstamp(stored)
        windows, increments = _windows(scan, offsets)
        states = [
            load_subscription(state, windows.get(external_id, {}))
            for external_id, state in stored_states.items()
        ]
        book = cls(partition, Ledger.restore(settings, clock, catalog, states))
        book.head_offset, book.offsets, book.roster = head_offset, offsets, roster
        book.increments = increments
        return book

    def apply(self, messages: Sequence[InputMessage], ids: SchemaIds, max_bytes: int) -> Batch:
        batch = Batch()
        by_ref: dict[str, InputMessage] = {}
        for message in messages:
            if message.offset <= self.head_offset:
                batch.skipped += 1
                continue
            decoded = decode_message(message, ids, max_bytes)
            owner = decoded.subscription
            if owner is not None and self.offsets.get(owner, -1) >= message.offset:
                batch.skipped += 1
                continue
            batch.records.append(decoded.record)
            by_ref[message.ref] = message
        if not batch.records:
            return batch
        transition = self.ledger.run(batch.records)
        batch.outputs = list(transition.outputs)
        batch.rejections = [(r, by_ref.get(r.ref)) for r in transition.rejections]
        batch.counts = dict(transition.counts)
        self._stage_writes(batch, transition, messages[-1].offset)
        return batch

    def _stage_window(
        self,
        batch: Batch,
        external_id: str,
        window: dict[str, int],
        accepted: list[str],
        forgotten: list[str],
        offset: int,
    ) -> None:
        """One record with the ids this batch accepted; records wholly out of the window go."""
        increments = self.increments.setdefault(external_id, [])
        if forgotten:
            oldest = min(window.values(), default=None)
            for increment in [i for i in increments if oldest is None or i.newest < oldest]:
                increments.remove(increment)
                batch.writes.append((seen_key(external_id, increment.offset), None))
        ids = {tid: window[tid] for tid in accepted if tid in window}
        if ids:
            batch.writes.append((seen_key(external_id, offset), json.dumps(ids).encode()))
            increments.append(SeenIncrement(offset, max(ids.values())))

    def _stage_writes(self, batch: Batch, transition: Transition, last_offset: int) -> None:
        grew = False
        for external_id in sorted(transition.touched):
            sub = self.ledger.subscriptions[external_id]
            accepted, forgotten = sub.take_journal()
            self._stage_window(batch, external_id, sub.seen, accepted, forgotten, last_offset)
            state = dump_subscription(sub, with_seen=False)
            batch.writes.append((subscription_key(external_id), _stamp(last_offset, state)))
            self.offsets[external_id] = last_offset
            if external_id not in self.roster:
                self.roster.add(external_id)
                grew = True
        if grew:
            roster = "\n".join(sorted(self.roster)).encode()
            batch.writes.append((roster_key(self.partition), roster))
        catalog = self.ledger.catalog
        for kind, key in sorted(transition.defined):
            definition = dump_definition(catalog, kind, key)
            batch.writes.append((definition_key(self.partition, kind, key), definition))
        head = dump_clock(self.ledger.clock)
        batch.writes.append((head_key(self.partition), _stamp(last_offset, head)))
        self.head_offset = last_offset


def _windows(
    scan: Callable[[str], Iterable[tuple[str, bytes]]], offsets: dict[str, int]
) -> tuple[dict[str, dict[str, int]], dict[str, list[SeenIncrement]]]:
    """Each subscription's de-duplication window, from its increments. An increment written by
    a batch whose subscription state was not (a crash between the writes) is ignored: that
    batch is redelivered and accepts those ids again."""
    windows: dict[str, dict[str, int]] = {}
    increments: dict[str, list[SeenIncrement]] = {}
    for key, value in scan(SEEN_PREFIX):
        external_id, offset_text = key[len(SEEN_PREFIX) :].rsplit("\x1f", 1)
        offset = int(offset_text)
        if external_id not in offsets or offset > offsets[external_id]:
            continue
        ids: dict[str, int] = json.loads(value)
        windows.setdefault(external_id, {}).update(ids)
        increments.setdefault(external_id, []).append(SeenIncrement(offset, max(ids.values())))
    return windows, increments
