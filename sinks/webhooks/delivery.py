"""The delivery loop of `tollgate sink webhooks`: POST due outbox rows, signed, several at once.

HTTP is aiohttp's client: on this machine it sends about 3,000 small POSTs a second with 16 in
flight to a local receiver, where httpx managed about 200.

One coroutine owns the database (claims, results, gauges, each a short transaction run in a
worker thread); the HTTP attempts run as tasks, at most `concurrency` at a time. Each attempt
POSTs the stored body unchanged with fresh Standard Webhooks headers (signing.py) and the
same `webhook-id` every time. On stop, the loop claims nothing more, lets the attempts in flight
finish (each bounded by the timeout), records them, and returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import aiohttp

from sinks.common import metrics
from sinks.common.db import Database, Stopped
from sinks.common.runtime import Activity, Clock
from sinks.webhooks import retry
from sinks.webhooks.outbox import Due, exchange, outbox_stats
from sinks.webhooks.retry import Outcome
from sinks.webhooks.signing import webhook_headers

log = logging.getLogger("tollgate.sinks.delivery")

STATS_EVERY = 5.0
"""Seconds between two refreshes of the outbox gauges."""
ANSWER_BYTES = 200
"""Bytes of a non-2xx answer kept in `last_error`."""
LINGER = 0.005
"""Seconds to wait for more attempts to end once one has, to record them together."""


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    schedule: tuple[float, ...]
    timeout: float
    concurrency: int
    poll_interval: float

    @property
    def lease(self) -> timedelta:
        """How long a claimed row stays invisible to other processes: the attempt's timeout,
        twice over, plus 5 s to record the result."""
        return timedelta(seconds=2 * self.timeout + 5)


@dataclass(slots=True)
class DeliveryStats:
    attempts: int = 0
    delivered: int = 0
    failed: int = 0


async def attempt(
    session: aiohttp.ClientSession, due: Due, config: DeliveryConfig, clock: Clock
) -> Outcome:
    """One signed POST; never raises for what the receiver or the network does."""
    attempted_at = clock()
    timestamp = int(attempted_at.timestamp())
    headers = webhook_headers(
        due.webhook_id, timestamp, due.body, due.secrets, lago=due.lago_signature
    )
    result = partial(
        retry.outcome,
        attempts_before=due.attempts,
        attempted_at=attempted_at,
        schedule=config.schedule,
    )
    try:
        async with session.post(
            due.url, data=due.body.encode("utf-8"), headers=headers, allow_redirects=False
        ) as response:
            status = response.status
            answer = await response.content.read(ANSWER_BYTES) if not 200 <= status < 300 else b""
    except TimeoutError:
        return result(
            status_code=None, failure=retry.TIMEOUT, error=f"no answer within {config.timeout:g} s"
        )
    except aiohttp.ClientError as error:
        problem = f"{type(error).__name__}: {error}"
        return result(status_code=None, failure=retry.CONNECTION_ERROR, error=problem)
    error_text = None
    if not 200 <= status < 300:
        error_text = f"HTTP {status}: {answer.decode('utf-8', 'replace')}"
    return result(status_code=status, error=error_text)


async def deliver(
    db: Database,
    config: DeliveryConfig,
    *,
    stop: threading.Event,
    activity: Activity,
    clock: Clock,
) -> DeliveryStats:
    """Run until `stop` is set or `activity` expires, then drain what is in flight.

    Each turn is one transaction: record the attempts that finished, claim due rows for the
    free slots (when at least a quarter of them is free, or none is in flight).
    """
    stats = DeliveryStats()
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    timeout = aiohttp.ClientTimeout(total=config.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        in_flight: dict[asyncio.Task[Outcome], Due] = {}
        finished: list[tuple[Due, Outcome]] = []
        next_stats = 0.0
        try:
            while True:
                stopping = stop.is_set() or activity.expired()
                if stopping and not in_flight and not finished:
                    break
                limit = 0 if stopping else _claimable(config.concurrency, len(in_flight))
                if finished or limit:
                    claimed = await _exchange(db, config, clock, finished, limit)
                    _count(finished, stats)
                    finished = []
                    for due in claimed:
                        activity.touch()
                        in_flight[asyncio.create_task(attempt(session, due, config, clock))] = due
                if in_flight:
                    done = await _finished(set(in_flight), config.poll_interval)
                    finished = [(in_flight.pop(task), task.result()) for task in done]
                else:
                    await asyncio.sleep(config.poll_interval)
                if time.monotonic() >= next_stats:
                    await _refresh_gauges(db, clock)
                    next_stats = time.monotonic() + STATS_EVERY
        except Stopped:
            log.info("stopped while PostgreSQL was away; unrecorded attempts will be made again")
            for task in in_flight:
                task.cancel()
    return stats


def _claimable(concurrency: int, in_flight: int) -> int:
    free = concurrency - in_flight
    return free if free >= max(1, concurrency // 4) or not in_flight else 0


async def _finished(
    tasks: set[asyncio.Task[Outcome]], timeout: float
) -> set[asyncio.Task[Outcome]]:
    """The attempts that end within `timeout`, waiting a few ms more after the first one so
    that their results share a transaction."""
    done, pending = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if done and pending:
        more, _ = await asyncio.wait(pending, timeout=LINGER)
        done |= more
    return done


async def _exchange(
    db: Database,
    config: DeliveryConfig,
    clock: Clock,
    finished: Sequence[tuple[Due, Outcome]],
    limit: int,
) -> list[Due]:
    work = partial(exchange, finished=finished, now=clock(), limit=limit, lease=config.lease)
    return await asyncio.to_thread(db.transaction, work)


def _count(finished: Sequence[tuple[Due, Outcome]], stats: DeliveryStats) -> None:
    for due, outcome in finished:
        stats.attempts += 1
        metrics.DELIVERY_ATTEMPTS.labels(outcome.metric_outcome, outcome.status_class).inc()
        if outcome.delivered:
            stats.delivered += 1
            latency = (outcome.attempted_at - due.event_at).total_seconds()
            metrics.DELIVERY_LATENCY.observe(max(latency, 0.0))
        elif outcome.status == "failed":
            stats.failed += 1
            log.warning(
                "webhook %s to %s failed after %d attempts: %s",
                due.webhook_id, due.url, due.attempts + 1, outcome.error,
            )  # fmt: skip


async def _refresh_gauges(db: Database, clock: Clock) -> None:
    numbers = await asyncio.to_thread(db.transaction, partial(outbox_stats, now=clock()))
    metrics.OUTBOX_DEPTH.set(numbers.pending)
    metrics.OLDEST_PENDING_AGE.set(numbers.oldest_pending_age)
    metrics.FAILED_DELIVERIES.set(numbers.failed)
