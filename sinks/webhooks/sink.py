"""`tollgate sink webhooks`: the intake loop (outputs topic → outbox rows, outbox.py) in a
thread, and the delivery loop (outbox → signed POSTs, delivery.py) on asyncio in the
main thread. Either can be switched off, to scale deliveries apart from the topic's partitions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from pipeline.kernel.settings import Settings
from sinks.common.consumer import BatchWriter, LoopConfig, LoopStats, consume_outputs
from sinks.common.db import Database
from sinks.common.runtime import Activity, Clock
from sinks.webhooks.delivery import DeliveryConfig, DeliveryStats, deliver
from sinks.webhooks.outbox import OutboxWriter, Queued

log = logging.getLogger("tollgate.sinks.webhooks")


@dataclass(frozen=True, slots=True)
class WebhookRun:
    intake: LoopStats | None
    delivery: DeliveryStats | None


def delivery_config(settings: Settings) -> DeliveryConfig:
    return DeliveryConfig(
        schedule=settings.webhook_retry_schedule,
        timeout=settings.webhook_timeout,
        concurrency=settings.webhook_concurrency,
        poll_interval=settings.webhook_poll_interval,
    )


def run(
    settings: Settings,
    loop: LoopConfig | None,
    *,
    deliveries: bool,
    stop: threading.Event,
    activity: Activity,
    clock: Clock,
) -> WebhookRun:
    """Run the intake (unless `loop` is None) and the deliveries (if asked) until stopped."""
    intake = _Intake(settings, loop, stop, activity, clock) if loop is not None else None
    if intake is not None:
        intake.start()
    delivered: DeliveryStats | None = None
    try:
        if deliveries:
            db = Database(
                settings.database_url, settings.database_schema, stop=stop, sink="webhooks"
            )
            try:
                coroutine = deliver(
                    db, delivery_config(settings), stop=stop, activity=activity, clock=clock
                )
                delivered = asyncio.run(coroutine)
            finally:
                db.close()
    finally:
        if intake is not None:
            if deliveries:
                stop.set()  # the intake stops with the deliveries
            intake.wait()
    return WebhookRun(intake.stats if intake is not None else None, delivered)


class _Intake(threading.Thread):
    """The consume loop in a thread; an error in it stops the process and is raised again."""

    def __init__(
        self,
        settings: Settings,
        loop: LoopConfig,
        stop: threading.Event,
        activity: Activity,
        clock: Clock,
    ) -> None:
        super().__init__(name="webhook-intake", daemon=True)
        self.settings, self.loop, self.stop, self.activity, self.clock = (
            settings, loop, stop, activity, clock,
        )  # fmt: skip
        self.stats: LoopStats | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        schedule = self.settings.webhook_retry_schedule
        writer: BatchWriter[Queued] = OutboxWriter(schedule[0])
        settings = self.settings
        db = Database(
            settings.database_url, settings.database_schema, stop=self.stop, sink="webhooks"
        )
        try:
            self.stats = consume_outputs(
                self.loop, db, writer, stop=self.stop, activity=self.activity, clock=self.clock
            )
        except BaseException as error:
            log.error("intake loop failed: %r", error)
            self.error = error
            self.stop.set()
        finally:
            db.close()

    def wait(self) -> None:
        """Join in short steps (signals stay handled), then raise what the loop raised."""
        while self.is_alive():
            self.join(0.5)
        if self.error is not None:
            raise self.error
