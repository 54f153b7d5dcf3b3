"""The intake's `/healthz` and `/readyz` (pipeline/health.py serves them beside `/metrics`).

Alive: its loop turns (it takes a lag reading every second; a loop silent for
`LOOP_STALL_SECONDS` is a process to restart). Ready: the group gave it its partitions once (an
intake without partitions, beyond the partition count, stands by and is ready too). Both read
the loop's own flags: nothing here calls the Kafka client from the server's thread.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import make_wsgi_app

from pipeline.intake.stage import Intake
from pipeline.kernel.health import Health, serve_or_report
from pipeline.kernel.settings import Settings

LOOP_STALL_SECONDS = 120.0


def intake_health(intake: Intake) -> Health:
    clock = intake.clock
    started = clock()

    def turning() -> str | None:
        if not intake.running:
            return "stopping"
        silent = clock() - max(intake.last_turn, started)
        return f"loop silent for {silent:.0f} s" if silent > LOOP_STALL_SECONDS else None

    def joined() -> str | None:
        return None if intake.joined else "not in the consumer group yet"

    return Health().alive_when("loop", turning).ready_when("group", joined)


def serve_intake_health(intake: Intake, settings: Settings, echo: Callable[[str], None]) -> None:
    """`/metrics`, `/healthz`, `/readyz` on TOLLGATE_METRICS_HOST:PORT."""
    health = intake_health(intake)
    serve_or_report(health, make_wsgi_app(), settings.metrics_host, settings.metrics_port, echo)
