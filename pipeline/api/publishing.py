"""Publishing what a request asks for to the usage-events topic, answered once acknowledged.

Records are keyed by their subscription, with confluent-kafka's `murmur2_random` partitioner (as
every producer feeding the worker), so they join that subscription's ordered input. A record the
broker does not acknowledge within the timeout is a 503: the client retries, and a record that
landed after all is harmless (events are de-duplicated by transaction id; alert and payment
records are idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from pipeline.api.errors import unavailable
from pipeline.clients.delivery import AckedProducer, DeliveryFailed, Outgoing


class Publisher:
    def __init__(self, producer: AckedProducer, topic: str, timeout: float) -> None:
        self.producer, self.topic, self.timeout = producer, topic, timeout

    async def publish(self, records: Sequence[tuple[str, bytes]], at: datetime) -> None:
        """Send (key, value) records stamped `at`; return once the broker has all of them."""
        stamp = int(at.timestamp() * 1000)
        topic = self.topic
        outgoing = [Outgoing(topic, key.encode(), value, None, stamp) for key, value in records]
        try:
            await asyncio.wait_for(asyncio.shield(self.producer.send(outgoing)), self.timeout)
        except TimeoutError:
            raise unavailable(
                f"the broker did not acknowledge within {self.timeout:g} s; retry"
            ) from None
        except DeliveryFailed as error:
            raise unavailable(f"the broker refused the records: {error}; retry") from None

    def close(self) -> None:
        self.producer.close()
