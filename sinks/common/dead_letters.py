"""Outputs a sink cannot use go to the dead-letter topic, with their original bytes and origin.

Reasons: `malformed` (the bytes do not decode as an output) and `invalid` (an output the sink
cannot store). The broker's acknowledgement is awaited before the batch commits its offsets, so
a dead letter is never lost (it may be written twice if the sink dies right after).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from pipeline.kernel.errors import TollgateError
from pipeline.wire import DeadLetter, encode_dead_letter
from sinks.common import metrics

log = logging.getLogger("tollgate.sinks.dead_letters")

FLUSH_TIMEOUT = 30.0


class SinkError(TollgateError):
    """The sink cannot go on (a fatal Kafka error, a dead letter that could not be written)."""


@dataclass(frozen=True, slots=True)
class Unusable:
    message: Message
    reason: str
    text: str


def write_dead_letters(
    producer: Producer, unusable: Sequence[Unusable], source: str, topic: str, sink: str
) -> None:
    """Produce one dead letter per message and wait until the broker has them all."""
    if not unusable:
        return
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(error)

    for item in unusable:
        message, key = item.message, item.message.key()
        subscription = key.decode("utf-8", "replace") if isinstance(key, bytes) else None
        record = DeadLetter(
            reason=item.reason,
            message=item.text,
            source_topic=source,
            source_partition=message.partition() or 0,
            source_offset=message.offset() or 0,
            original=message.value() or b"",
            external_subscription_id=subscription,
        )
        producer.produce(topic, key=key, value=encode_dead_letter(record), on_delivery=on_delivery)
        log.warning(
            "dead letter (%s) from %s [%s] @ %s: %s",
            item.reason, source, message.partition(), message.offset(), item.text,
        )  # fmt: skip
        metrics.DEAD_LETTERS.labels(sink, item.reason).inc()
    if producer.flush(FLUSH_TIMEOUT) or failures:
        raise SinkError(
            f"could not write to the dead-letter topic {topic}: {failures or 'timed out'}"
        )
