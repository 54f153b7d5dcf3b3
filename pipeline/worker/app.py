"""The worker's composition root: the Faust app, its topics, table, agents and ticker.

Money-safe Faust settings: `at_least_once` (never `exactly_once`: open bugs), agent
`concurrency=1` (more can commit past an in-flight message). Values are raw bytes, decoded by our
own code, so a malformed message reaches our error path instead of crashing the stream.
"""

from __future__ import annotations

import os
import time
import uuid
import weakref
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event  # where Faust looks for the event a table write is for

from pipeline.billing.context import EngineSettings
from pipeline.settings import Settings
from pipeline.topics import Topics
from pipeline.wire import encode_tick, schema_ids_from_env
from pipeline.worker import metrics
from pipeline.worker.records import InputMessage
from pipeline.worker.runner import Destinations, Runner, TableAccess
from pipeline.worker.stall import StallWatch
from pipeline.worker.supervision import supervised

CLOCKS = ("wall", "records")


def engine_settings(settings: Settings) -> EngineSettings:
    # The window is stored a record per transaction id (partition.py).
    return settings.engine_settings(journal=True)


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
        # A killed worker keeps its partitions until its session times out.
        "broker_session_timeout": settings.worker_session_timeout,
        "broker_rebalance_timeout": settings.worker_session_timeout,
        "broker_heartbeat_interval": min(3.0, settings.worker_session_timeout / 10),
        "broker_request_timeout": max(90.0, settings.worker_session_timeout + 30),  # ≥ session
        "web_enabled": False,
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
    runner = Runner(
        engine_settings(settings),
        Destinations(topics.outputs, topics.dead_letters),
        schema_ids_from_env(environ or {}),
        settings.max_message_bytes,
    )

    def write(key: str, value: bytes | None) -> None:
        if value is None:
            table.pop(key.encode(), None)
        else:
            table[key.encode()] = value

    def scan(prefix: str) -> Iterator[tuple[str, bytes]]:
        wanted = prefix.encode()
        for key, value in list(table.items()):
            if key.startswith(wanted):
                yield key.decode(), value

    access = TableAccess(lambda key: table.get(key.encode()), scan, write)

    async def send(topic: str, key: bytes | None, value: bytes, timestamp: float) -> Any:
        return await app.topic(topic, **raw).send(key=key, value=value, timestamp=timestamp)

    watch = StallWatch(settings.worker_stall_timeout)

    @app.agent(usage, concurrency=1)
    @supervised("the ledger agent")  # an agent that dies ends the process (supervision.py)
    async def ledger(stream: Any) -> None:  # a faust Stream: `take_events` is not on StreamT
        within = settings.worker_batch_wait
        async for events in stream.take_events(settings.worker_batch_size, within=within):
            for partition, group in _by_partition(events).items():
                with _writing_for(group[-1]):
                    await runner.process(partition, [_message(e) for e in group], access, send)
                _record_lag(app, group[-1])
                watch.applied(partition, group[-1].message.offset, time.monotonic())

    @app.agent(subscriptions, concurrency=1)
    @supervised("the forward_subscriptions agent")
    async def forward_subscriptions(stream: faust.StreamT[bytes]) -> None:
        """Subscription records sent to their own topic join the one ordered input."""
        async for event in stream.events():
            message = event.message
            await usage.send(key=message.key, value=message.value, timestamp=message.timestamp)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        runner.forget()

    if clock == "wall":

        @app.timer(interval=settings.tick_interval, on_leader=True)  # type: ignore[misc]
        @supervised("the ticker")
        async def tick() -> None:
            """Quiet partitions still close their periods: every partition hears the clock."""
            for partition in range(settings.partitions):
                await usage.send(value=encode_tick("worker"), partition=partition)

    app.tollgate_runner = runner  # type: ignore[attr-defined]
    app.tollgate_watch = watch  # type: ignore[attr-defined]
    return app


def _record_lag(app: faust.App, event: Any) -> None:
    """Messages behind the partition's high watermark once this batch is applied."""
    message = event.message
    highwater = app.consumer.highwater(message.tp)
    if highwater is not None:
        metrics.LAG.labels(str(message.partition)).set(max(highwater - message.offset - 1, 0))


def _by_partition(events: Any) -> dict[int, list[Any]]:
    groups: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        groups[event.message.partition].append(event)
    return groups


def _message(event: Any) -> InputMessage:
    message = event.message
    return InputMessage(
        message.topic,
        message.partition,
        message.offset,
        int(message.timestamp * 1000),
        message.key,
        message.value,
    )


@contextmanager
def _writing_for(event: Any) -> Iterator[None]:
    """Make `event` the current one while a partition's state is read and written: Faust picks
    the changelog partition (and the RocksDB store) from the current event."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
