"""Sending records and knowing that the broker has them: the worker's one producer.

Faust's table writes send their changelog records fire-and-forget: a send that fails (the
broker away past the request timeout) is only logged from a callback, and the producer's
`flush` returns once nothing moved for 100 ms, so offsets can be committed over state that
never reached the changelog — the loss seen when the broker was killed (docs/crash-safety.md).
Here every record is produced with an idempotent confluent-kafka producer (acks=all, order
kept per partition across retries) and `send_all` returns only when the broker acknowledged
every one of them, or raises `DeliveryFailed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from pipeline.errors import TollgateError


class DeliveryFailed(TollgateError):
    """The broker did not acknowledge a record: the worker must stop before it acknowledges
    input or writes state that depends on it."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    partition: int | None = None  # None: by key (murmur2, as the Java clients)
    timestamp_ms: int | None = None


class AckedProducer:
    def __init__(self, bootstrap: str, *, client_id: str, max_message_bytes: int) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "partitioner": "murmur2_random",
                "message.max.bytes": max_message_bytes,
                # Retries go on for as long as the broker may be away; the stall guard ends a
                # worker that stays stuck here (docs/crash-safety.md).
                "message.timeout.ms": 300_000,
                "log_level": 3,
            }
        )

    async def send_all(self, records: Sequence[Outgoing]) -> list[int]:
        """Produce `records` and wait for every acknowledgement; their offsets, in order."""
        if not records:
            return []
        offsets = [-1] * len(records)
        failures: list[str] = []

        def delivered(index: int) -> Any:
            def callback(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    failures.append(f"{message.topic()}[{message.partition()}]: {error}")
                else:
                    offsets[index] = message.offset()  # type: ignore[assignment]

            return callback

        produce, poll = self._producer.produce, self._producer.poll
        for index, record in enumerate(records):
            kwargs: dict[str, Any] = {"on_delivery": delivered(index)}
            if record.partition is not None:
                kwargs["partition"] = record.partition
            if record.timestamp_ms is not None:
                kwargs["timestamp"] = record.timestamp_ms
            while True:
                try:
                    produce(record.topic, value=record.value, key=record.key, **kwargs)
                    break
                except BufferError:  # queue full: serve deliveries, then try again
                    poll(0.05)
        loop = asyncio.get_running_loop()
        remaining = await loop.run_in_executor(None, self._producer.flush, 310.0)
        if failures or remaining:
            detail = "; ".join(failures[:3]) or f"{remaining} records still unacknowledged"
            raise DeliveryFailed(
                f"the broker did not acknowledge {len(failures) or remaining} "
                f"of {len(records)} records: {detail}"
            )
        return offsets

    def close(self) -> None:
        self._producer.flush(10.0)
