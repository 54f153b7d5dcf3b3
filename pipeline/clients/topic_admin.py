"""Creating tollgate's topics with their configurations (schemas/topics.yaml).

`ensure_topics` is idempotent: the `tollgate` commands that produce or read call it, and so does
the worker at start, so that whichever starts first creates the topics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import DEFAULT_MAX_BYTES

TEN_YEARS_MS: Final = 10 * 365 * 86_400_000
RETENTION_BYTES: Final = 8 << 30
"""Per partition, for the topics whose retention is by size (see `topic_specs`)."""
ACCEPTED_BYTES: Final = 16 << 20
"""What the usage-events topic accepts: oversized messages must reach the worker to be
dead-lettered (with the first part of the original), not bounce off the broker unseen."""
HEADROOM: Final = 64 * 1024
"""Room above the worker's decoding limit for an oversized message (dead-lettered, not lost)."""


class TopicError(TollgateError):
    """The topics could not be listed or created."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str]


def admin_client(bootstrap: str, **extra: Any) -> AdminClient:
    """An AdminClient that stays quiet while the broker is unreachable."""
    config = {
        "bootstrap.servers": bootstrap,
        "log_level": 0,
        "socket.connection.setup.timeout.ms": 2000,
        **extra,
    }
    return AdminClient(config)


def batch_message_bytes(batch_bytes: int, max_message_bytes: int) -> int:
    """The largest usage batch: the intake closes a batch once it holds `batch_bytes`, so one
    holds at most that plus one more message of at most `max_message_bytes` (a larger one
    travels cut to its first part), plus framing."""
    return batch_bytes + max_message_bytes + HEADROOM


def topic_specs(
    topics: Topics,
    partitions: int,
    *,
    max_message_bytes: int = DEFAULT_MAX_BYTES,
    batch_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[TopicSpec, ...]:
    """Each topic with its partition count and configuration, as schemas/topics.yaml says.

    The usage-events topic takes messages somewhat above `max_message_bytes` (the largest the
    worker decodes), so that an oversized one reaches the worker and is dead-lettered, and the
    dead-letters topic takes such a message with its origin around it.
    """
    # Record timestamps are billing time (`at`), which may lie months back in a backfill:
    # time-based retention would delete such records on arrival, and segments would roll on
    # every append. These topics are bounded by size instead.
    by_size = {
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        "retention.bytes": str(RETENTION_BYTES),
        "segment.ms": str(TEN_YEARS_MS),
    }
    return (
        TopicSpec(
            topics.usage_events,
            partitions,
            {
                **by_size,
                "max.message.bytes": str(max(ACCEPTED_BYTES, max_message_bytes + HEADROOM)),
            },
        ),
        TopicSpec(
            topics.usage_batches,
            partitions,
            {
                **by_size,
                "max.message.bytes": str(batch_message_bytes(batch_bytes, max_message_bytes)),
            },
        ),
        TopicSpec(topics.subscriptions, partitions, {**by_size, "retention.bytes": "-1"}),
        TopicSpec(topics.catalog, 1, {"cleanup.policy": "compact"}),
        TopicSpec(topics.outputs, partitions, by_size),
        TopicSpec(
            topics.dead_letters,
            1,
            {**by_size, "max.message.bytes": str(max_message_bytes + 2 * HEADROOM)},
        ),
    )


def ensure_topics(
    admin: AdminClient,
    topics: Topics,
    partitions: int,
    *,
    max_message_bytes: int = DEFAULT_MAX_BYTES,
    batch_bytes: int = DEFAULT_MAX_BYTES,
    replication_factor: int = -1,
    timeout: float = 30.0,
) -> list[str]:
    """Create whichever of the topics is missing and wait until each has its leaders.

    Idempotent: topics that exist (even created concurrently) are left as they are. Returns the
    names created. `replication_factor` -1 takes the broker's `default.replication.factor`.
    """
    specs = topic_specs(
        topics, partitions, max_message_bytes=max_message_bytes, batch_bytes=batch_bytes
    )
    existing = _topic_names(admin, timeout)
    missing = [spec for spec in specs if spec.name not in existing]
    if not missing:
        return []
    new = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=replication_factor,
            config=dict(spec.config),
        )
        for spec in missing
    ]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    created = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicError(f"could not create topic {name}: {error}") from None
        created.append(name)
    _wait_for_leaders(admin, created, time.monotonic() + timeout)
    return created


def ensure_topics_for(settings: Settings) -> list[str]:
    """`ensure_topics` with the settings' broker, topic prefix, partitions and message limit."""
    return ensure_topics(
        admin_client(settings.kafka_bootstrap),
        Topics.with_prefix(settings.topic_prefix),
        settings.partitions,
        max_message_bytes=settings.max_message_bytes,
        batch_bytes=settings.intake_batch_bytes,
    )


def _topic_names(admin: AdminClient, timeout: float) -> set[str]:
    try:
        return set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise TopicError(f"Kafka does not answer a metadata request: {exc}") from None


def _wait_for_leaders(admin: AdminClient, names: list[str], deadline: float) -> None:
    waiting = set(names)
    while waiting:
        metadata = admin.list_topics(timeout=max(deadline - time.monotonic(), 1.0))
        for name in list(waiting):
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                continue
            if all(p.leader >= 0 for p in topic.partitions.values()):
                waiting.discard(name)
        if waiting and time.monotonic() > deadline:
            raise TopicError(f"topics without a leader after creation: {sorted(waiting)}")
        if waiting:
            time.sleep(0.1)
