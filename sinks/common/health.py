"""A sink's `/healthz` and `/readyz` (pipeline/health.py serves them beside `/metrics`).

Alive: the process answers. Ready: PostgreSQL accepts a connection to the sinks' schema and
answers a query, checked at most every `CHECK_INTERVAL` seconds on a connection of the check's
own (the sink's connection belongs to its loop's thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from prometheus_client import make_wsgi_app

from pipeline.kernel.errors import TollgateError
from pipeline.kernel.health import Check, Health, serve
from sinks.common.db import connect

log = logging.getLogger("tollgate.sinks")

CHECK_INTERVAL = 5.0


def database_answers(
    url: str, schema: str, *, monotonic: Callable[[], float] = time.monotonic
) -> Check:
    """None while PostgreSQL answers on `schema`; else why not. Cached for CHECK_INTERVAL."""
    last: list[tuple[float, str | None]] = []

    def check() -> str | None:
        now = monotonic()
        if last and now - last[0][0] < CHECK_INTERVAL:
            return last[0][1]
        problem: str | None = None
        try:
            with connect(url, schema, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as error:
            problem = f"PostgreSQL does not answer: {str(error).strip() or type(error).__name__}"
        last[:] = [(now, problem)]
        return problem

    return check


def serve_sink_health(host: str, port: int, database: Check) -> None:
    """`/metrics`, `/healthz`, `/readyz` on host:port (port 0: none)."""
    if not port:
        return
    try:
        serve(Health().ready_when("postgresql", database), make_wsgi_app(), host, port)
    except OSError as error:
        raise TollgateError(
            f"cannot serve metrics on port {port} ({error.strerror}): each process on a host "
            "needs its own port, set with --metrics-port or TOLLGATE_METRICS_PORT (0: none)"
        ) from None
    log.info("metrics on http://%s:%d/metrics, health on /healthz and /readyz", host, port)
