"""Sending records and knowing that the broker has them: the worker's producers, and the HTTP
API's (which answers a client only once its records are on the broker).

Faust's table writes send their changelog records fire-and-forget: a send that fails (the
broker away past the request timeout) is only logged from a callback, and the producer's
`flush` returns once nothing moved for 100 ms, so offsets can be committed over state that
never reached the changelog — the loss seen when the broker was killed (docs/crash-safety.md).
Here every record is produced with an idempotent confluent-kafka producer (acks=all, order
kept per partition across retries); `send` returns a future that resolves once the broker has
acknowledged every record given to it, or fails with `DeliveryFailed`. A thread of its own
serves the delivery reports, so the event loop never blocks on the broker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from pipeline.kernel.errors import TollgateError


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


class _Sending:
    """One `send`: its records' offsets, filled in by delivery reports."""

    __slots__ = ("failures", "future", "loop", "offsets", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[list[int]] = loop.create_future()
        self.offsets = [-1] * count
        self.remaining = count
        self.failures: list[str] = []

    def report(self, index: int) -> Any:
        def delivered(error: KafkaError | None, message: Message) -> None:  # poller thread
            if error is not None:
                self.failures.append(f"{message.topic()}[{message.partition()}]: {error}")
            else:
                self.offsets[index] = message.offset()  # type: ignore[assignment]
            self.remaining -= 1
            if self.remaining == 0:
                self.loop.call_soon_threadsafe(self._settle)

        return delivered

    def _settle(self) -> None:
        if self.future.done():
            return
        if self.failures:
            detail = "; ".join(self.failures[:3])
            self.future.set_exception(
                DeliveryFailed(
                    f"the broker did not acknowledge {len(self.failures)} of "
                    f"{len(self.offsets)} records: {detail}"
                )
            )
        else:
            self.future.set_result(self.offsets)


class AckedProducer:
    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        max_message_bytes: int,
        message_timeout_ms: int = 300_000,
    ) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "partitioner": "murmur2_random",
                "message.max.bytes": max_message_bytes,
                # Retries go on for as long as the broker may be away; the stall guard ends a
                # worker that stays stuck waiting (docs/crash-safety.md).
                "message.timeout.ms": message_timeout_ms,
                "log_level": 3,
            }
        )
        self._outstanding: set[asyncio.Future[list[int]]] = set()
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None

    def send(self, records: Sequence[Outgoing]) -> asyncio.Future[list[int]]:
        """Produce `records`; the future gives their offsets, in order, once all are
        acknowledged."""
        loop = asyncio.get_running_loop()
        sending = _Sending(loop, len(records))
        if not records:
            sending.future.set_result([])
            return sending.future
        self._start_poller()
        produce = self._producer.produce
        for index, record in enumerate(records):
            kwargs: dict[str, Any] = {"on_delivery": sending.report(index)}
            if record.partition is not None:
                kwargs["partition"] = record.partition
            if record.timestamp_ms is not None:
                kwargs["timestamp"] = record.timestamp_ms
            while True:
                try:
                    produce(record.topic, value=record.value, key=record.key, **kwargs)
                    break
                except BufferError:  # queue full: the poller is draining it
                    self._closed.wait(0.01)
        self._outstanding.add(sending.future)
        sending.future.add_done_callback(self._outstanding.discard)
        return sending.future

    async def send_all(self, records: Sequence[Outgoing]) -> list[int]:
        return await self.send(records)

    async def drain(self) -> None:
        """Wait until everything sent so far is acknowledged; `DeliveryFailed` if not."""
        if self._outstanding:
            await asyncio.gather(*list(self._outstanding))

    def close(self) -> None:
        self._closed.set()
        self._producer.flush(10.0)

    def _start_poller(self) -> None:
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="delivery-reports", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)
