"""The worker's composition root: the Faust app, its topics, table, agents and ticker.

Money-safe Faust settings: `at_least_once` (never `exactly_once`: open bugs), agent
`concurrency=1` (more can commit past an in-flight message). Values are raw bytes, decoded by our
own code, so a malformed message reaches our error path instead of crashing the stream.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import _current_event  # where Faust looks for the event a table read is for
from faust.types import TP

from pipeline.api.service import build_api
from pipeline.billing.context import EngineSettings
from pipeline.clients.delivery import AckedProducer, Outgoing
from pipeline.clients.topic_admin import HEADROOM, batch_message_bytes
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import decode_usage_batch, encode_tick, schema_ids_from_env
from pipeline.worker import metrics
from pipeline.worker.directory import WorkerDirectory
from pipeline.worker.runner import Destinations, Runner, TableAccess
from pipeline.worker.stall import StallWatch
from pipeline.worker.supervision import die, supervised

CLOCKS = ("wall", "records")


def engine_settings(settings: Settings) -> EngineSettings:
    """The same semantics as `tollgate replay`; the window is stored a record per flush
    (partition.py), so the engine keeps a journal of the ids it accepts."""
    return EngineSettings.of(settings.allowed_lateness, settings.dedupe_window_days, journal=True)


def faust_settings(settings: Settings, store: str | None = None) -> dict[str, Any]:
    """The worker's Faust app settings (also those of the benchmark's empty-bodied app)."""
    return {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "store": store or settings.worker_store,
        "datadir": str(settings.run_dir / "state" / settings.worker_app_id),
        "processing_guarantee": "at_least_once",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": 1,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_max_request_size": 4 * 1024 * 1024,
        "broker_commit_interval": 1.0,
        # One message is a usage batch of up to a few MiB: fetch such a message whole, and
        # buffer few of them (Faust's default of 4,096 messages would be gigabytes).
        "consumer_max_fetch_size": batch_message_bytes(
            settings.intake_batch_bytes, settings.max_message_bytes
        ),
        "stream_buffer_maxsize": 64,
        # A killed worker keeps its partitions until its session times out.
        "broker_session_timeout": settings.worker_session_timeout,
        "broker_rebalance_timeout": settings.worker_session_timeout,
        "broker_heartbeat_interval": min(3.0, settings.worker_session_timeout / 10),
        "broker_request_timeout": max(90.0, settings.worker_session_timeout + 30),  # ≥ session
        # Faust's own web server stays off (its /table views would show the state to anyone):
        # the API (pipeline/api) is served by our own server on the same loop, and this URL,
        # which Faust's assignor shares with the group, is how the others reach it.
        "web_enabled": False,
        "canonical_url": settings.api_base_url,
        "autodiscover": False,
        # Unique per process, so that the stall guard finds this worker among the group's members.
        "broker_client_id": f"tollgate-worker-{os.getpid()}-{uuid.uuid4().hex[:8]}",
    }


def build_app(
    settings: Settings, *, clock: str = "wall", environ: dict[str, str] | None = None
) -> faust.App:
    """The worker app. `clock="records"` turns the wall-clock ticker off: only record
    timestamps move the billing clock (backfills, replays of history, tests)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}")
    topics = Topics.with_prefix(settings.topic_prefix)
    app = faust.App(settings.worker_app_id, **faust_settings(settings))
    # Topics carry bytes both ways; a key schema on the topic makes Faust drop key-less messages
    # (ticks, definitions) without a word, so only the value is declared.
    raw: dict[str, Any] = {"value_type": bytes, "value_serializer": "raw"}
    usage = app.topic(topics.usage_events, partitions=settings.partitions, **raw)
    batches = app.topic(topics.usage_batches, partitions=settings.partitions, **raw)
    subscriptions = app.topic(topics.subscriptions, partitions=settings.partitions, **raw)
    table = app.Table(
        "ledger",
        default=None,
        partitions=settings.partitions,
        key_type=bytes,  # the store (RocksDB) picks its codecs from these: raw bytes
        value_type=bytes,
        schema=faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        ),
    )
    ids = schema_ids_from_env(environ or {})
    batch_bytes = batch_message_bytes(settings.intake_batch_bytes, settings.max_message_bytes)

    def acked_producer(role: str) -> AckedProducer:
        return AckedProducer(
            settings.kafka_bootstrap,
            client_id=f"{app.conf.broker_client_id}-{role}",
            max_message_bytes=max(batch_bytes, settings.max_message_bytes + 2 * HEADROOM),
        )

    # Two producers, so that a flush being written never holds up a batch's outputs.
    producer, changelog = acked_producer("outputs"), acked_producer("changelog")
    runner = Runner(
        engine_settings(settings),
        Destinations(topics.outputs, topics.dead_letters, table.changelog_topic.get_topic_name()),
        ids,
        settings.max_message_bytes,
        producer,
        changelog,
    )
    access = TableAccess(
        lambda key: table.get(key.encode()), _scanner(table), _storer(table, app.conf.id)
    )
    watch = StallWatch(settings.worker_stall_timeout)
    flusher = Flusher(runner, access, settings.worker_flush_interval, settings.worker_flush_states)

    @app.agent(batches, concurrency=1)
    @supervised("the ledger agent")  # an agent that dies ends the process (supervision.py)
    async def ledger(stream: Any) -> None:  # a faust Stream
        """One usage batch at a time; acknowledged only once a flush has stored its effect."""
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            batch = decode_usage_batch(message.value, ids=ids, max_bytes=batch_bytes)
            with _writing_for(event):  # a partition restored from the table reads it
                runner.process(message.partition, batch, access)
            flusher.hold(manual, event)
            _record_lag(app, event)
            watch.applied(message.partition, message.offset, time.monotonic())
            flusher.flush_if_due()

    @app.agent(subscriptions, concurrency=1)
    @supervised("the forward_subscriptions agent")
    async def forward_subscriptions(stream: faust.StreamT[bytes]) -> None:
        """Subscription records sent to their own topic join the one ordered input (the same
        partition number: the two topics are co-partitioned), acknowledged before moving on."""
        async for event in stream.events():
            message = event.message
            forward = Outgoing(
                topics.usage_events,
                message.key,
                message.value,
                message.partition,
                int(message.timestamp * 1000),
            )
            await producer.send_all([forward])

    directory = WorkerDirectory(
        app,
        table,
        runner,
        access,
        partitions=settings.partitions,
        own_url=settings.api_base_url,
        wall_clock=clock == "wall",
    )
    api = build_api(settings, directory, ids, app.conf.broker_client_id)

    @app.task  # type: ignore[misc]
    @supervised("the HTTP API")
    async def serve_api() -> None:
        """The API listens from the start; until the partitions are recovered its reads
        answer 503 (directory.py)."""
        await api.start()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_api(sender: Any, **kwargs: Any) -> None:
        await api.stop()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        runner.forget()  # Faust waited for every held batch to be acknowledged: all is stored

    if clock == "wall":

        @app.timer(interval=settings.tick_interval, on_leader=True)  # type: ignore[misc]
        @supervised("the ticker")
        async def tick() -> None:
            """Quiet partitions still close their periods: every partition hears the clock."""
            for partition in range(settings.partitions):
                await usage.send(value=encode_tick("worker"), partition=partition)

    app.tollgate_runner = runner  # type: ignore[attr-defined]
    app.tollgate_watch = watch  # type: ignore[attr-defined]
    app.tollgate_api = api  # type: ignore[attr-defined]
    return app


class Flusher:
    """When changed state is written, and the acknowledgement of the batches it covers.

    Applying a batch and staging a flush are both synchronous, so a flush never sees half a
    batch; the writing runs in a task of its own while the agent applies the next batches, one
    flush at a time, in order. A failed write leaves the books believing they stored what they
    did not: the process ends (state never runs ahead of the changelog)."""

    def __init__(self, runner: Runner, access: TableAccess, interval: float, max_dirty: int):
        self.runner, self.access = runner, access
        self.interval, self.max_dirty = interval, max_dirty
        self._held: list[tuple[Any, Any]] = []  # (stream, event) applied, not yet stored
        self._since = 0.0  # when the oldest held batch was applied
        self._writing: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    def hold(self, stream: Any, event: Any) -> None:
        if not self._held:
            self._since = time.monotonic()
        self._held.append((stream, event))
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        """Quiet partitions' changes are stored too. A task of our own rather than a Faust
        timer: Faust stops its timers before its consumer, which then waits for every held
        batch to be acknowledged (at a rebalance and at shutdown) — this keeps flushing."""
        try:
            while True:
                await asyncio.sleep(max(self.interval / 4, 0.05))
                self.flush_if_due()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            die("the flush ticker", error)

    def flush_if_due(self) -> None:
        """Start a flush when one is due and none is being written."""
        if not self._held or (self._writing is not None and not self._writing.done()):
            return
        due = time.monotonic() - self._since >= self.interval
        if due or self.runner.dirty >= self.max_dirty:
            self._writing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        """The batches held so far are taken first; then each partition is staged on its own,
        letting the loop run in between (API requests, the agent): staging a partition is
        synchronous, so each partition's flush is whole, and a batch applied in between is
        held for the next flush, whether or not this one happens to store its effect."""
        try:
            held, self._held = self._held, []
            staged = []
            for partition in sorted(self.runner.books):
                flush = self.runner.stage_partition(partition)
                if flush is not None:
                    staged.append((partition, flush))
                await asyncio.sleep(0)
            await self.runner.write(staged, self.access)
            for stream, event in held:
                await stream.ack(event)
        except Exception as error:  # the books count the flush as stored: end, restart
            die("writing state (a flush)", error)


def _scanner(table: Any) -> Any:
    def scan(prefix: str) -> Iterator[tuple[str, bytes]]:
        wanted = prefix.encode()
        for key, value in list(table.items()):
            if key.startswith(wanted):
                yield key.decode(), value

    return scan


def _storer(table: Any, app_id: str) -> Any:
    """Acknowledged changelog records into the table's local store, through the same call
    Faust's recovery uses (which also records the changelog offset the store has reached)."""
    topic = table.changelog_topic.get_topic_name()

    def store(partition: int, records: Any) -> None:
        table.apply_changelog_batch(
            [_ChangelogEvent(topic, partition, k.encode(), v, o) for k, v, o in records]
        )

    return store


@dataclass(frozen=True, slots=True)
class _ChangelogMessage:
    topic: str
    partition: int
    key: bytes
    value: bytes | None
    offset: int

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class _ChangelogEvent:
    """What `Table.apply_changelog_batch` reads of a changelog event."""

    __slots__ = ("key", "message", "value")

    def __init__(self, topic: str, partition: int, key: bytes, value: bytes | None, offset: int):
        self.message = _ChangelogMessage(topic, partition, key, value, offset)
        self.key, self.value = key, value


def _record_lag(app: faust.App, event: Any) -> None:
    """Messages behind the partition's high watermark once this batch is applied."""
    message = event.message
    highwater = app.consumer.highwater(message.tp)
    if highwater is not None:
        metrics.LAG.labels(str(message.partition)).set(max(highwater - message.offset - 1, 0))


@contextmanager
def _writing_for(event: Any) -> Iterator[None]:
    """Make `event` the current one while a partition's state is read and written: Faust picks
    the changelog partition (and the RocksDB store) from the current event."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
