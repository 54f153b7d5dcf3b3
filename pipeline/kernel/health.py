"""`/metrics`, `/healthz` and `/readyz` on one port: what every long-running process serves.

- `/healthz`: the process is alive (its liveness checks pass). An orchestrator restarts a
  process that fails it.
- `/readyz`: the process does its job (worker: partitions assigned, recovered and consuming;
  sinks: PostgreSQL answers). An orchestrator sends no traffic to a process that fails it and
  a rolling update waits for it.
- `/metrics`: the metrics application the process hands in (prometheus_client's
  `make_wsgi_app()`; the kernel itself imports nothing beyond the standard library).

Each check returns None when all is well, or the problem in words. Both health answers are
JSON, ``{"status": "ok" | "failing", "checks": {name: "ok" | problem}}``, with status 200 or
503. The server runs in a daemon thread; checks run in that thread, so they only read state
(flags, timestamps) or do their own short I/O.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

METRICS_PATH = "/metrics"
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"

_NO_STORE = ("Cache-Control", "no-store")

Check = Callable[[], str | None]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Health:
    """The liveness and readiness checks of one process, by name."""

    def __init__(self) -> None:
        self.liveness: dict[str, Check] = {}
        self.readiness: dict[str, Check] = {}

    def alive_when(self, name: str, check: Check) -> Health:
        self.liveness[name] = check
        return self

    def ready_when(self, name: str, check: Check) -> Health:
        self.readiness[name] = check
        return self

    def live(self) -> tuple[bool, dict[str, str]]:
        return _run(self.liveness)

    def ready(self) -> tuple[bool, dict[str, str]]:
        """Ready only when alive, too: a process that should be restarted serves nothing."""
        alive, live_checks = self.live()
        ready, ready_checks = _run(self.readiness)
        return alive and ready, {**live_checks, **ready_checks}


def _run(checks: dict[str, Check]) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as error:  # a check that raises reports its failure, never the server
            problem = f"{type(error).__name__}: {error}"
        results[name] = problem or "ok"
    return all(result == "ok" for result in results.values()), results


def wsgi_app(health: Health, metrics: WSGIApp) -> WSGIApp:
    """The three endpoints as one WSGI application: `metrics` answers every other path."""
    answers = {LIVENESS_PATH: health.live, READINESS_PATH: health.ready}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = answers.get(environ.get("PATH_INFO", ""))
        if answer is None:
            return metrics(environ, start_response)
        ok, checks = answer()
        body = json.dumps({"status": "ok" if ok else "failing", "checks": checks}).encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), _NO_STORE])
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


def serve_or_report(
    health: Health, metrics: WSGIApp, host: str, port: int, echo: Callable[[str], None]
) -> None:
    """`serve`, printing where; a taken port is reported and the process runs on without the
    endpoints (the worker and the intake: a sink refuses to start instead)."""
    address = f"{host}:{port}"
    try:
        serve(health, metrics, host, port)
    except OSError as error:
        echo(f"metrics and health: {address} unavailable ({error}); set TOLLGATE_METRICS_PORT")
        return
    echo(f"metrics: http://{address}/metrics, health: /healthz, /readyz")


def serve(health: Health, metrics: WSGIApp, host: str, port: int) -> WSGIServer:
    """Serve the endpoints on host:port from a daemon thread; raises OSError when the port is
    taken. Returns the server (`shutdown()` stops it)."""
    kind = _Server6 if ":" in host else _Server
    app = wsgi_app(health, metrics)
    server = make_server(host, port, app, kind, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
