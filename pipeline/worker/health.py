"""The worker's `/healthz` and `/readyz` (pipeline/health.py serves them beside `/metrics`).

Alive: Faust's event loop turns (a timer on it beats every second; a loop blocked for
`LOOP_STALL_SECONDS` is a process to restart). Ready: the worker joined its group, and the
partitions it was given are recovered from their changelogs and consumed (no rebalance or
recovery in progress). A worker with no partition (more workers than partitions) is ready:
it stands by.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import make_wsgi_app

from pipeline.kernel.health import Health, serve_or_report
from pipeline.kernel.settings import Settings

BEAT_INTERVAL = 1.0
LOOP_STALL_SECONDS = 120.0


def worker_health(app: Any, clock: Callable[[], float] = time.monotonic) -> Health:
    """Checks over a built (not yet started) Faust app; adds the loop's heartbeat timer."""
    beats = [clock()]

    @app.timer(interval=BEAT_INTERVAL)  # type: ignore[misc]
    async def heartbeat() -> None:
        beats[0] = clock()

    def loop_turns() -> str | None:
        silent = clock() - beats[0]
        if silent > LOOP_STALL_SECONDS:
            return f"event loop silent for {silent:.0f} s"
        return None

    return Health().alive_when("event_loop", loop_turns).ready_when("partitions", _consuming(app))


def _consuming(app: Any) -> Callable[[], str | None]:
    def check() -> str | None:
        if not app.rebalancing_count:
            return "not in the consumer group yet"
        if app.rebalancing:
            return "rebalancing"
        if app.in_recovery or not app.tables.recovery.completed.is_set():
            return "recovering state from the changelogs"
        return None

    return check


def serve_worker_health(app: Any, settings: Settings, echo: Callable[[str], None]) -> None:
    """`/metrics`, `/healthz`, `/readyz` on TOLLGATE_METRICS_HOST:PORT."""
    health = worker_health(app)
    serve_or_report(health, make_wsgi_app(), settings.metrics_host, settings.metrics_port, echo)
