"""pipeline/health.py: `/healthz`, `/readyz` and `/metrics` from one real server on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import make_wsgi_app

from pipeline.kernel.health import LIVENESS_PATH, METRICS_PATH, READINESS_PATH, Health, serve
from sinks.common.health import database_answers


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Flags:
    def __init__(self) -> None:
        self.alive: str | None = None
        self.ready: str | None = "not yet"


@pytest.fixture
def served() -> Iterator[tuple[int, Flags]]:
    flags = Flags()
    health = Health().alive_when("loop", lambda: flags.alive)
    health.ready_when("work", lambda: flags.ready)
    server = serve(health, make_wsgi_app(), "127.0.0.1", 0)
    yield server.server_port, flags
    server.shutdown()
    server.server_close()


def test_readiness_follows_its_checks(served: tuple[int, Flags]) -> None:
    port, flags = served
    status, body = _get(port, READINESS_PATH)
    assert status == 503
    assert json.loads(body) == {"status": "failing", "checks": {"loop": "ok", "work": "not yet"}}
    flags.ready = None
    status, body = _get(port, READINESS_PATH)
    assert (status, json.loads(body)["status"]) == (200, "ok")


def test_a_process_that_is_not_alive_is_not_ready_either(served: tuple[int, Flags]) -> None:
    port, flags = served
    flags.ready = None
    flags.alive = "event loop silent for 300 s"
    assert _get(port, LIVENESS_PATH)[0] == 503
    status, body = _get(port, READINESS_PATH)
    assert status == 503
    assert json.loads(body)["checks"]["loop"] == "event loop silent for 300 s"


def test_a_check_that_raises_is_a_failing_check(served: tuple[int, Flags]) -> None:
    port, _ = served
    health = Health().ready_when("boom", lambda: str(1 / 0))
    server = serve(health, make_wsgi_app(), "127.0.0.1", 0)
    try:
        status, body = _get(server.server_port, READINESS_PATH)
    finally:
        server.shutdown()
        server.server_close()
    assert status == 503
    assert json.loads(body)["checks"]["boom"] == "ZeroDivisionError: division by zero"
    assert _get(port, LIVENESS_PATH)[0] == 200


def test_metrics_are_served_beside_health(served: tuple[int, Flags]) -> None:
    port, _ = served
    status, body = _get(port, METRICS_PATH)
    assert status == 200
    assert b"# TYPE python_info gauge" in body or b"process_start_time_seconds" in body


def test_an_unreachable_database_makes_a_sink_unready() -> None:
    check = database_answers("postgresql://nobody:secret@127.0.0.1:1/none", "public")
    problem = check()
    assert problem is not None and problem.startswith("PostgreSQL does not answer")
    assert "secret" not in problem
