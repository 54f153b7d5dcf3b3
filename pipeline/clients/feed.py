"""`tollgate feed FILE`: publish a timeline (spec §9), or plain Lago events, to the live input.

Each timeline line is read with `pipeline.replay.parse_record`, exactly as `tollgate replay`
reads it, and sent with its `at` as the Kafka timestamp: definitions to the catalog topic and
every usage-events partition, subscriptions and terminations keyed by external id, alerts and
invoice payments keyed by their external subscription id, events keyed
by external subscription id (Avro when it carries the event exactly, else JSON; an event given
as a raw string goes out as those very bytes), ticks to every partition. A line without `type`
and `at` is a plain Lago event, sent with the time of sending.

The live output equals the replay output because every partition's clock moves exactly as the
replay's single clock does: before a keyed record whose `at` is later than any before it, a tick
with that `at` goes to every partition (a definition or a tick, written to every partition,
moves every clock itself), and a last tick at the latest `at` ends the feed, so that the worker
has seen everything. `ticks=False` sends only what the file holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TextIO, cast

from pipeline.billing.engine import Record
from pipeline.clients.producer import (
    UsageProducer,
    ensure_topics_for,
    event_key,
    json_bytes,
    timestamp_ms,
)
from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.replay import TimelineError, parse_record
from pipeline.wire import (
    DEFAULT_SCHEMA_IDS,
    SchemaIds,
    WireError,
    decode_usage_event,
    encode_usage_event,
)
from pipeline.wire.jsontext import loads

_BROADCAST: Final = frozenset({"tick", "billable_metric", "plan", "customer"})
_DEFINITIONS: Final = frozenset({"billable_metric", "plan", "customer"})


@dataclass(slots=True)
class FeedStats:
    records: int = 0  # lines sent: timeline records and plain events
    events: int = 0
    definitions: int = 0
    subscriptions: int = 0  # upserts and terminations
    alerts: int = 0  # usage alert records
    payments: int = 0  # invoice payment records
    ticks: int = 0  # tick records of the file
    clock_ticks: int = 0  # ticks added before a clock advance, and the last one
    json_fallbacks: int = 0  # events sent as JSON because Avro would not carry them exactly
    problems: int = 0
    latest: datetime | None = field(default=None, repr=False)

    def describe(self) -> str:
        return (
            f"{self.records} records (events: {self.events}, definitions: {self.definitions}, "
            f"subscription records: {self.subscriptions}, alerts: {self.alerts}, "
            f"payments: {self.payments}, "
            f"ticks: {self.ticks}), "
            f"clock ticks added: {self.clock_ticks}, problems: {self.problems}"
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _exact_avro(event: dict[str, Any], ids: SchemaIds) -> bytes | None:
    """The Avro encoding of `event` if decoding it gives back the same event, else None."""
    try:
        value = encode_usage_event(event, ids=ids)
        return value if decode_usage_event(value, ids=ids) == event else None
    except WireError:
        return None


class Feeder:
    """Turns lines into records on the producer; `feed_line` returns a problem or None."""

    def __init__(
        self,
        producer: UsageProducer,
        *,
        ticks: bool = True,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.producer = producer
        self.ticks = ticks
        self.stats = FeedStats()
        self._clock = clock
        self._clock_ms: int | None = None  # the latest `at` of a timeline record, in ms

    def feed_line(self, text: str, number: int) -> str | None:
        if not text.strip():
            return None
        try:
            document = loads(text)
        except ValueError as error:
            return str(error)
        if isinstance(document, dict) and "type" not in document and "at" not in document:
            return self._plain_event(document)
        try:
            record = parse_record(text, number)
        except TimelineError as error:
            return str(error)
        return self._timeline_record(document, record)

    def finish(self) -> None:
        """The last tick, at the latest `at`, to every partition."""
        if self.ticks and self.stats.latest is not None:
            self._tick(self.stats.latest)

    # -- records ---------------------------------------------------------------------------------

    def _timeline_record(self, document: dict[str, Any], record: Record) -> str | None:
        try:
            at_ms = timestamp_ms(record.at)
        except ValueError as error:
            return f"at: {error}"
        advance = self._clock_ms is None or at_ms > self._clock_ms
        if advance:
            self._clock_ms = at_ms
            self._note_time(record.at)
        broadcast = record.kind in _BROADCAST
        if advance and self.ticks and not broadcast:
            self._tick(record.at)
        try:
            self._send(document, record)
        except WireError as error:
            if advance and self.ticks and broadcast:
                self._tick(record.at)  # the clock still moves, as in replay
            return f"not sent: {error.message}"
        self.stats.records += 1
        return None

    def _send(self, document: dict[str, Any], record: Record) -> None:
        kind, at, payload = record.kind, record.at, cast(Any, record.payload)
        if kind == "event":
            raw = document.get("event")
            if isinstance(raw, str):  # raw bytes, sent as they are (a `malformed` test)
                key = event_key(payload) if isinstance(payload, dict) else None
                value = raw.encode("utf-8", "surrogatepass")
                self.producer.send_raw_event(value, key=key, at=at)
            else:
                self._event(payload, at)
            self.stats.events += 1
        elif kind == "tick":
            self.producer.tick(at, source="feed")
            self.stats.ticks += 1
        elif kind == "subscription":
            self.producer.send_subscription(payload, at=at)
            self.stats.subscriptions += 1
        elif kind == "terminate_subscription":
            self.producer.terminate_subscription(payload, at)
            self.stats.subscriptions += 1
        elif kind == "alert":
            self.producer.send_alert(payload, at=at)
            self.stats.alerts += 1
        elif kind == "invoice_payment":
            self.producer.send_payment(payload, at=at)
            self.stats.payments += 1
        else:
            self.producer.send_definition(kind, payload, at)
            self.stats.definitions += 1

    def _plain_event(self, document: dict[str, Any]) -> str | None:
        at = self._clock()
        inner = document.get("event")
        event = inner if len(document) == 1 and isinstance(inner, dict) else document
        try:
            self._event(event if self.producer.avro else document, at)
        except ValueError as error:
            return f"not sent: {error}"
        self._note_time(at)
        self.stats.events += 1
        self.stats.records += 1
        return None

    def _event(self, event: Any, at: datetime) -> None:
        """Avro when it carries the event exactly; otherwise its JSON text, which the worker
        decodes to the very event replay sees (an event.error webhook echoes it): Avro always
        has `properties`, writes integer ids and numeric timestamps as text and drops unknown
        fields, and cannot hold an event whose ids are missing or of the wrong type."""
        key = event_key(event) if isinstance(event, dict) else None
        if self.producer.avro and isinstance(event, dict):
            value = _exact_avro(event, self.producer.schema_ids)
            if value is not None:
                self.producer.send_raw_event(value, key=key, at=at)
                return
            self.stats.json_fallbacks += 1
        self.producer.send_raw_event(json_bytes(event, "event"), key=key, at=at)

    def _tick(self, at: datetime) -> None:
        self.producer.tick(at, source="feed")
        self.stats.clock_ticks += 1

    def _note_time(self, at: datetime) -> None:
        latest = self.stats.latest
        if latest is None or at > latest:
            self.stats.latest = at


# --- the command --------------------------------------------------------------------------------


def parse_rate(text: str) -> float:
    """`"500"` or `"500/s"` → 500.0 records per second; `ValueError` unless above 0."""
    number = text.strip().removesuffix("/s").strip()
    try:
        rate = float(number)
    except ValueError:
        raise ValueError(
            f"expected records per second such as 500 or 500/s, got {text!r}"
        ) from None
    if not 0 < rate < float("inf"):
        raise ValueError(f"the rate must be above 0, got {text!r}")
    return rate


def feed(
    lines: Iterable[str],
    feeder: Feeder,
    *,
    name: str,
    err: TextIO,
    rate: float | None = None,
    progress_every: float = 5.0,
    monotonic: Callable[[], float] = time.monotonic,
) -> FeedStats:
    """Feed every line, reporting bad ones on `err` as `name:line: message` and going on;
    progress every `progress_every` seconds; `rate` caps the records sent per second. Ends with
    the last tick and a flush (`ProduceError` if a delivery failed)."""
    producer, stats = feeder.producer, feeder.stats
    started = last_report = monotonic()
    for number, text in enumerate(lines, start=1):
        problem = feeder.feed_line(text, number)
        if problem is not None:
            stats.problems += 1
            err.write(f"{name}:{number}: {problem}\n")
        if rate is not None:
            _wait_until(started + stats.records / rate, producer, monotonic)
        now = monotonic()
        if now - last_report >= progress_every:
            producer.check()
            last_report = now
            err.write(f"feed: {stats.records} records sent, {_per_second(stats, now - started)}\n")
    feeder.finish()
    producer.flush()
    elapsed = monotonic() - started
    err.write(
        f"fed {name}: {stats.describe()}; {producer.delivered} messages delivered "
        f"in {elapsed:.1f} s ({_per_second(stats, elapsed)})\n"
    )
    return stats


def _wait_until(moment: float, producer: UsageProducer, monotonic: Callable[[], float]) -> None:
    """Serve delivery reports until `moment` (poll returns early when it serves one)."""
    while (left := moment - monotonic()) > 0:
        producer.poll(left)


def _per_second(stats: FeedStats, elapsed: float) -> str:
    return f"{stats.records / elapsed:,.0f} records/s" if elapsed > 0 else "- records/s"


def run_file(
    path: str,
    producer: UsageProducer,
    *,
    ticks: bool = True,
    rate: float | None = None,
    err: TextIO,
    progress_every: float = 5.0,
) -> FeedStats:
    """One file through `feed`."""
    with open(path, encoding="utf-8") as lines:
        feeder = Feeder(producer, ticks=ticks)
        return feed(lines, feeder, name=path, err=err, rate=rate, progress_every=progress_every)


def run(
    settings: Settings,
    path: str,
    *,
    err: TextIO,
    rate: str | None = None,
    ticks: bool = True,
    avro: bool = True,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
) -> FeedStats:
    """`tollgate feed`: create the topics if needed, then feed `path`."""
    try:
        per_second = None if rate is None else parse_rate(rate)
    except ValueError as error:
        raise TollgateError(f"--rate: {error}") from None
    topics = Topics.with_prefix(settings.topic_prefix)
    limit = settings.max_message_bytes
    ensure_topics_for(settings)
    producer = UsageProducer(
        settings.kafka_bootstrap, topics, schema_ids=ids, avro=avro, max_message_bytes=limit
    )
    with producer:
        return run_file(path, producer, ticks=ticks, rate=per_second, err=err)
