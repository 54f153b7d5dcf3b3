"""`tollgate outputs`: the webhook bodies on the outputs topic, one JSON object per line.

Each line is `dumps(record.body)`, the body a webhook delivers, character for character as the
worker wrote it: the same lines `tollgate replay` prints for the same records (in another order
across subscriptions). Without a group the reader assigns itself every partition and commits
nothing; with one it joins that consumer group and commits what it printed, so the next run
goes on from there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterable
from typing import Any, TextIO

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from pipeline.clients.producer import ensure_topics_for
from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import DEFAULT_SCHEMA_IDS, OutputRecord, SchemaIds, WireError, decode_output
from pipeline.wire.jsontext import dumps

OnBad = Callable[[str], None]


class OutputsError(TollgateError):
    """The outputs topic cannot be read."""


def iter_outputs(
    bootstrap: str,
    topic: str,
    *,
    idle_exit: float | None = None,
    from_beginning: bool = False,
    group: str | None = None,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
    on_bad: OnBad | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Generator[OutputRecord, None, None]:
    """Each output record as it arrives; stops once it has read to the end of every partition
    and then seen no message for `idle_exit` seconds, or never when it is None.

    A message that does not decode goes to `on_bad` as one line (where it is and why) and is
    skipped; without `on_bad` it raises `WireError`.
    """
    consumer = Consumer(_config(bootstrap, group, from_beginning))
    try:
        quiet = _start(consumer, topic, group, from_beginning, monotonic)
        while idle_exit is None or quiet.seconds() < idle_exit:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                quiet.reached_end(message.partition())
                continue
            quiet.reset()
            record = _decode(message, ids, on_bad)
            if record is not None:
                yield record
    finally:
        consumer.close()


def read_outputs(
    bootstrap: str,
    topic: str,
    *,
    idle_exit: float,
    from_beginning: bool = True,
    group: str | None = None,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
    on_bad: OnBad | None = None,
) -> list[OutputRecord]:
    """Every output record until the topic has been quiet for `idle_exit` seconds."""
    return list(
        iter_outputs(
            bootstrap,
            topic,
            idle_exit=idle_exit,
            from_beginning=from_beginning,
            group=group,
            ids=ids,
            on_bad=on_bad,
        )
    )


def run(
    settings: Settings,
    *,
    out: TextIO,
    err: TextIO,
    idle_exit: float | None = None,
    from_beginning: bool = False,
    group: str | None = None,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
) -> int:
    """`tollgate outputs`: bodies on `out`, notes on `err`; Ctrl-C ends it quietly. The topics
    are created if needed, so that it can be started before the worker."""
    ensure_topics_for(settings)

    def note(line: str) -> None:
        err.write(f"outputs: {line}\n")

    records = iter_outputs(
        settings.kafka_bootstrap,
        Topics.with_prefix(settings.topic_prefix).outputs,
        idle_exit=idle_exit,
        from_beginning=from_beginning,
        group=group,
        ids=ids,
        on_bad=note,
    )
    try:
        for record in records:
            out.write(dumps(record.body) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        records.close()
    return 0


def _config(bootstrap: str, group: str | None, from_beginning: bool) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group or f"tollgate-outputs-{uuid.uuid4().hex}",
        "enable.auto.commit": group is not None,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.partition.eof": True,
    }


class _Quiet:
    """Seconds without a message once every assigned partition has been read to its end; 0
    before (while partitions are being assigned, a group joined, old messages fetched), so that
    a slow start never counts as quiet."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._since: float | None = None
        self._reading: set[int] | None = None  # assigned partitions not read to their end yet

    def assigned(self, partitions: Iterable[int]) -> None:
        self._reading, self._since = set(partitions), None

    def reached_end(self, partition: int | None) -> None:
        if self._reading and partition is not None:
            self._reading.discard(partition)
            if not self._reading:
                self.reset()

    def reset(self) -> None:
        if self._reading is not None and not self._reading:
            self._since = self._monotonic()

    def seconds(self) -> float:
        return 0.0 if self._since is None else self._monotonic() - self._since


def _start(
    consumer: Consumer,
    topic: str,
    group: str | None,
    from_beginning: bool,
    monotonic: Callable[[], float],
) -> _Quiet:
    """Assign every partition (no group) or subscribe (a group); returns the idle clock."""
    try:
        metadata = consumer.list_topics(timeout=10)  # all topics: never auto-create this one
    except KafkaException as exc:
        raise OutputsError(f"Kafka does not answer: {exc}") from None
    if topic not in metadata.topics:
        raise OutputsError(f"topic {topic} does not exist (the worker or `tollgate feed` makes it)")
    quiet = _Quiet(monotonic)
    if group is None:
        offset = OFFSET_BEGINNING if from_beginning else OFFSET_END
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, offset) for p in partitions])
        quiet.assigned(partitions)
        return quiet

    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if from_beginning:  # an explicit request beats the group's committed offsets
            for partition in partitions:
                partition.offset = OFFSET_BEGINNING
        consumer.assign(partitions)
        quiet.assigned(partition.partition for partition in partitions)

    consumer.subscribe([topic], on_assign=on_assign)
    return quiet


def _decode(message: Message, ids: SchemaIds, on_bad: OnBad | None) -> OutputRecord | None:
    where = f"{message.topic()} [{message.partition()}] @ {message.offset()}"
    error = message.error()
    if error is not None:
        if error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise OutputsError(f"reading {where}: {error.str()}")
        if on_bad is not None:
            on_bad(f"{where}: {error.str()}")
        return None
    try:
        return decode_output(message.value(), ids=ids)
    except WireError as bad:
        if on_bad is None:
            raise WireError(bad.reason, f"{where}: {bad.message}") from None
        on_bad(f"{where}: skipped, {bad}")
        return None
