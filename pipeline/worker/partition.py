"""One partition's billing: its ledger, what it has applied, and what must be stored.

Crash safety without Kafka transactions (docs/crash-safety.md):
- outputs carry deterministic ids, so sending one twice is harmless; the shell sends a batch's
  outputs and waits for the broker's acknowledgement before anything the batch changed is
  written;
- changed state stays in memory and is written by `flush` (at most once per flush interval,
  Kafka Streams' record cache): however many events touched a subscription since the last
  flush, its state is one record;
- a flush is written in three phases, each acknowledged before the next starts: (1) the
  de-duplication window records and changed catalogue definitions, (2) subscription states and
  the roster, (3) the partition head — so a crash leaves phase 1, 2 or 3 incomplete and every
  phase before it whole;
- each stored state carries the source offset of the last message it has absorbed, so a
  redelivered message is recognised and skipped, per subscription and per partition.
Framework-free: the Faust agent hands in messages and carries out the writes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.billing.context import EngineSettings
from pipeline.billing.engine import Ledger, Record
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
from pipeline.kernel.errors import TollgateError
from pipeline.wire import SchemaIds
from pipeline.worker.records import InputMessage, decode_message

_OFFSET = struct.Struct(">q")
WINDOW_IDS_PER_RECORD = 4000
"""A flush's accepted transaction ids are stored in records of at most this many ids (≈ 200 kB),
well under the changelog topic's message size limit."""

Write = tuple[str, bytes | None]  # (key, value); None deletes


class Gap(TollgateError):
    """A batch starts beyond the next source offset this partition expects: messages in between
    were never applied, and billing on would bill without them."""


def head_key(partition: int) -> str:
    return f"head/{partition}"


def roster_key(partition: int) -> str:
    return f"roster/{partition}"


def definition_prefix(partition: int) -> str:
    return f"def/{partition}/"


def definition_key(partition: int, kind: str, key: str) -> str:
    """One catalogue definition as this partition knows it: written when it changes, so the
    catalogue costs nothing per flush however many customers it holds."""
    return f"{definition_prefix(partition)}{kind}\x1f{key}"


def subscription_key(external_id: str) -> str:
    return f"sub/{external_id}"


def window_prefix(partition: int) -> str:
    return f"seen/{partition}/"


def window_key(partition: int, offset: int, chunk: int) -> str:
    """The transaction ids that one flush accepted, for every subscription of the partition
    (`{subscription: {id: accepted at}}`): the de-duplication window costs one record per
    flush, not one per subscription."""
    return f"{window_prefix(partition)}{offset:020d}/{chunk:04d}"


@dataclass(frozen=True, slots=True)
class WindowRecord:
    key: str
    newest: int  # acceptance time (pipeline clock, seconds) of its youngest id


def _stamp(offset: int, payload: bytes) -> bytes:
    return _OFFSET.pack(offset) + payload


def _unstamp(value: bytes) -> tuple[int, bytes]:
    return _OFFSET.unpack_from(value)[0], value[_OFFSET.size :]


@dataclass(slots=True)
class Applied:
    """What applying messages produced: outputs and dead letters to send now, nothing stored."""

    outputs: list[Output] = field(default_factory=list)
    rejections: list[tuple[Rejection, InputMessage | None]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Flush:
    """The writes that make the partition's stored state current, in phases: every write of a
    phase must be acknowledged before the next phase starts."""

    phases: tuple[tuple[Write, ...], ...]
    states: int  # subscription states written

    @property
    def writes(self) -> int:
        return sum(len(phase) for phase in self.phases)


class PartitionBook:
    def __init__(self, partition: int, ledger: Ledger) -> None:
        self.partition = partition
        self.ledger = ledger
        self.head_offset = -1  # last source offset applied (in memory)
        self.stored_offset = -1  # head offset as of the last flush
        self.offsets: dict[str, int] = {}  # per subscription: last offset its stored state absorbed
        self.roster: set[str] = set()
        self.window_records: list[WindowRecord] = []
        self._dirty: set[str] = set()
        self._defined: set[tuple[str, str]] = set()
        self._grew = False

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
        windows, records = _windows(scan(window_prefix(partition)), offsets)
        states = [
            load_subscription(state, windows.get(external_id, {}))
            for external_id, state in stored_states.items()
        ]
        book = cls(partition, Ledger.restore(settings, clock, catalog, states))
        book.head_offset = book.stored_offset = head_offset
        book.offsets, book.roster, book.window_records = offsets, roster, records
        return book

    @property
    def dirty(self) -> int:
        """Subscription states changed since the last flush."""
        return len(self._dirty)

    def check_continuity(self, from_offset: int) -> None:
        """Refuse a batch that continues from beyond the next offset this partition expects.

        A partition with no state yet accepts any start (a new deployment on an old topic)."""
        if self.head_offset >= 0 and from_offset > self.head_offset + 1:
            raise Gap(
                f"partition {self.partition}: a usage batch continues from source offset "
                f"{from_offset}, but offsets {self.head_offset + 1}..{from_offset - 1} were never "
                "applied here. The intake's committed offsets are ahead of this worker's state "
                "(a usage batch was lost, or the intake group was moved): set the intake "
                f"group's offset for this partition back to {self.head_offset + 1} "
                "(kafka-consumer-groups --reset-offsets) and restart."
            )

    def apply(self, messages: Sequence[InputMessage], ids: SchemaIds, max_bytes: int) -> Applied:
        applied = Applied()
        by_ref: dict[str, InputMessage] = {}
        for message in messages:
            if message.offset <= self.head_offset:
                applied.skipped += 1
                continue
            decoded = decode_message(message, ids, max_bytes)
            owner = decoded.subscription
            if owner is not None and self.offsets.get(owner, -1) >= message.offset:
                applied.skipped += 1
                continue
            applied.records.append(decoded.record)
            by_ref[message.ref] = message
        if messages and messages[-1].offset > self.head_offset:
            self.head_offset = messages[-1].offset  # applied, or found applied already
        if not applied.records:
            return applied
        transition = self.ledger.run(applied.records)
        applied.outputs = list(transition.outputs)
        applied.rejections = [(r, by_ref.get(r.ref)) for r in transition.rejections]
        applied.counts = dict(transition.counts)
        self._dirty.update(transition.touched)
        self._defined.update(transition.defined)
        return applied

    def flush(self) -> Flush | None:
        """The writes that store everything applied since the last flush (None: nothing new).
        The book counts them as stored at once: the shell must carry them out, or end."""
        if self.head_offset == self.stored_offset:
            return None
        offset = self.head_offset
        window: list[Write] = []
        states: list[Write] = []
        accepted: dict[str, dict[str, int]] = {}
        for external_id in sorted(self._dirty):
            sub = self.ledger.subscriptions[external_id]
            ids, _ = sub.take_journal()
            if ids:
                accepted[external_id] = {tid: sub.seen[tid] for tid in ids if tid in sub.seen}
            state = dump_subscription(sub, with_seen=False)
            states.append((subscription_key(external_id), _stamp(offset, state)))
            self.offsets[external_id] = offset
            if external_id not in self.roster:
                self.roster.add(external_id)
                self._grew = True
        window += self._window_writes(accepted, offset)
        catalog = self.ledger.catalog
        for kind, key in sorted(self._defined):
            window.append(
                (definition_key(self.partition, kind, key), dump_definition(catalog, kind, key))
            )
        if self._grew:
            states.append((roster_key(self.partition), "\n".join(sorted(self.roster)).encode()))
        head = [(head_key(self.partition), _stamp(offset, dump_clock(self.ledger.clock)))]
        self._dirty.clear()
        self._defined.clear()
        self._grew = False
        self.stored_offset = offset
        phases = tuple(tuple(phase) for phase in (window, states, head) if phase)
        return Flush(phases, len(states))

    def _window_writes(self, accepted: dict[str, dict[str, int]], offset: int) -> list[Write]:
        """New window records for what this flush accepted; deletions for records all of whose
        ids are older than the window (the engine no longer counts them as duplicates)."""
        writes: list[Write] = []
        clock = self.ledger.clock
        if clock is not None and self.window_records:
            horizon = int(clock.timestamp() - self.ledger.settings.dedupe_window.total_seconds())
            expired = [r for r in self.window_records if r.newest < horizon]
            if expired:
                self.window_records = [r for r in self.window_records if r.newest >= horizon]
                writes += [(r.key, None) for r in expired]
        chunk: dict[str, dict[str, int]] = {}
        count = number = 0
        for external_id, ids in accepted.items():
            for tid, at in ids.items():
                chunk.setdefault(external_id, {})[tid] = at
                count += 1
                if count == WINDOW_IDS_PER_RECORD:
                    writes.append(self._window_record(offset, number, chunk))
                    chunk, count, number = {}, 0, number + 1
        if chunk:
            writes.append(self._window_record(offset, number, chunk))
        return writes

    def _window_record(self, offset: int, number: int, chunk: dict[str, dict[str, int]]) -> Write:
        key = window_key(self.partition, offset, number)
        newest = max(at for ids in chunk.values() for at in ids.values())
        self.window_records.append(WindowRecord(key, newest))
        return key, json.dumps(chunk, separators=(",", ":")).encode()


def _windows(
    records: Iterable[tuple[str, bytes]], offsets: dict[str, int]
) -> tuple[dict[str, dict[str, int]], list[WindowRecord]]:
    """Each subscription's de-duplication window, from the window records. A record written
    by a flush whose subscription state did not land (a crash between the phases) is ignored
    for that subscription: the redelivered messages accept those ids again."""
    windows: dict[str, dict[str, int]] = {}
    stored: list[WindowRecord] = []
    for key, value in records:
        offset = int(key.rsplit("/", 2)[1])
        chunk: dict[str, dict[str, int]] = json.loads(value)
        newest = 0
        for external_id, ids in chunk.items():
            newest = max([newest, *ids.values()])
            if offset <= offsets.get(external_id, -1):
                windows.setdefault(external_id, {}).update(ids)
        stored.append(WindowRecord(key, newest))
    return windows, stored
