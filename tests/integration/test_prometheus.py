"""The dashboard and the alert rules against a live pipeline: a real Prometheus scrapes an
intake, a worker and both sinks while demo traffic flows (with a malformed event, a malformed
output and a dead webhook receiver among it), and every dashboard query and every rule
expression is evaluated through Prometheus's HTTP API. Each must return data; a rule whose
condition is false in a healthy run must have data behind each metric selector it uses. The
processes' `/healthz` and `/readyz` answer 200 once they work.

With TOLLGATE_DASHBOARD_FIGURE=path, traffic runs for two and a half minutes and the
dashboard's panels are drawn from the run into that SVG file (docs/figures/dashboard.svg in
the README)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from pipeline.clients.topic_admin import ensure_topics_for
from pipeline.kernel.health import LIVENESS_PATH, READINESS_PATH
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.local.demo import publish_catalog, send_traffic
from pipeline.local.demo_receiver import Receiver
from sinks.common.db import connect
from sinks.common.migrate import migrate
from sinks.webhooks.admin import add_endpoint
from sinks.webhooks.signing import new_secret
from tests.integration import dashboard_figure
from tests.integration.prometheus_server import ALERTS, ROOT, Prometheus, free_port

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tollgate.json"
SELECTOR = re.compile(r"\b((?:tollgate|process)_[a-z_]+|up)\b(\{[^}]*\})?")
PROCESSES = {
    "intake": ["intake"],
    "worker": ["worker", "--clock", "wall"],
    "sink-invoices": ["sink", "invoices"],
    "sink-webhooks": ["sink", "webhooks"],
}


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def dashboard_queries() -> list[tuple[str, str]]:
    return [(p["title"], target["expr"]) for p in dashboard_panels() for target in p["targets"]]


def rule_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


class Pipeline:
    """Worker and sinks as processes on this test's topics, groups, schema and ports."""

    def __init__(self, base: Settings, schema: str, folder: Path) -> None:
        self.run = uuid.uuid4().hex[:10]
        self.settings = Settings.from_env(
            {
                **base.as_env(),
                "TOLLGATE_TOPIC_PREFIX": f"prom-{self.run}.",
                "TOLLGATE_WORKER_APP_ID": f"prom-{self.run}-worker",
                "TOLLGATE_INTAKE_GROUP": f"prom-{self.run}-intake",
                "TOLLGATE_DATABASE_SCHEMA": schema,
                "TOLLGATE_RUN_DIR": str(folder / "run"),
                "TOLLGATE_METRICS_HOST": "127.0.0.1",
                "TOLLGATE_TICK_INTERVAL": "1",
                "TOLLGATE_WORKER_SESSION_TIMEOUT": "10",
                "TOLLGATE_WEBHOOK_RETRY_SCHEDULE": "0,0.5",  # the dead receiver fails at once
                "TOLLGATE_WEBHOOK_POLL_INTERVAL": "0.2",
            }
        )
        self.folder = folder
        self.ports = {name: free_port() for name in PROCESSES}
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.settings.topic_prefix)

    def start(self) -> None:
        for name, args in PROCESSES.items():
            if args[0] == "sink":
                args = [*args, "--group", f"prom-{self.run}-{name}"]
            env = {
                **os.environ,
                **self.settings.as_env(),
                "TOLLGATE_METRICS_PORT": str(self.ports[name]),
                "TOLLGATE_API_PORT": str(free_port()),
            }
            with (self.folder / f"{name}.log").open("wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "pipeline.cli", *args],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n" + (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
            for name in PROCESSES
        )


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):  # refused, reset or timed out: not serving yet
        return 0


@pytest.fixture
def pipeline(
    settings: Settings,
    kafka_admin: AdminClient,
    database_url: str,
    new_schema: str,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    live = Pipeline(settings, new_schema, tmp_path)
    ensure_topics_for(live.settings)
    migrate(database_url, new_schema, echo=lambda _: None)
    try:
        yield live
    finally:
        live.stop()
        prefixes = (live.settings.topic_prefix, live.settings.worker_app_id)
        mine = [t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
        if mine:
            for future in kafka_admin.delete_topics(mine, operation_timeout=30).values():
                future.result()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.secret = new_secret(os.urandom(24))
    receiver.start()
    yield receiver
    receiver.stop()


def register_endpoints(live: Pipeline, receiver: Receiver) -> None:
    """The demo receiver, and one where nothing listens (failed deliveries)."""
    settings = live.settings
    with connect(settings.database_url, settings.database_schema, autocommit=True) as conn:
        for url, secret in (
            (receiver.url, receiver.secret),
            (f"http://127.0.0.1:{free_port()}/gone", new_secret(os.urandom(24))),
        ):
            add_endpoint(conn, url, secret=secret, event_types=None, lago_signature=False)


def publish_garbage(live: Pipeline) -> None:
    """One malformed usage event (the worker dead-letters it) and one malformed output (each
    sink dead-letters it)."""
    producer = Producer({"bootstrap.servers": live.settings.kafka_bootstrap})
    producer.produce(live.topics.usage_events, key=b"nobody", value=b"\x00 not an event")
    producer.produce(live.topics.outputs, key=b"nobody", value=b"\x00 not an output")
    assert producer.flush(30) == 0


def wait_ready(live: Pipeline, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    waiting = set(PROCESSES)
    while waiting and time.monotonic() < deadline:
        for name in sorted(waiting):
            if get_status(f"http://{live.target(name)}{READINESS_PATH}") == 200:
                waiting.discard(name)
        if any(process.poll() is not None for process in live.processes):
            break
        time.sleep(0.5)
    assert not waiting, f"not ready: {sorted(waiting)}\n{live.logs()}"
    for name in PROCESSES:
        assert get_status(f"http://{live.target(name)}{LIVENESS_PATH}") == 200, name


def missing_data(prometheus: Prometheus) -> list[str]:
    """Every dashboard query and rule expression that has no data yet, described."""
    missing = [
        f"panel {title!r}: {expr}"
        for title, expr in dashboard_queries()
        if not prometheus.query(expr)
    ]
    for alert, expr in rule_expressions():
        if prometheus.query(expr):
            continue  # the condition holds: data by definition
        for match in SELECTOR.finditer(expr):
            if not prometheus.query(match.group(0)):
                missing.append(f"alert {alert}: selector {match.group(0)} has no data")
    return missing


def test_every_dashboard_query_and_alert_expression_returns_data(
    pipeline: Pipeline, receiver: Receiver, tmp_path: Path
) -> None:
    figure = os.environ.get("TOLLGATE_DASHBOARD_FIGURE")
    started = time.time()
    register_endpoints(pipeline, receiver)
    pipeline.start()
    prometheus = Prometheus(
        tmp_path,
        {
            "tollgate-intake": [pipeline.target("intake")],
            "tollgate-worker": [pipeline.target("worker")],
            "tollgate-sinks": [pipeline.target("sink-invoices"), pipeline.target("sink-webhooks")],
        },
    )
    prometheus.start()
    try:
        wait_ready(pipeline)
        names = publish_catalog(pipeline.settings, pipeline.run, 12)
        publish_garbage(pipeline)
        stop = threading.Event()
        sent = send_traffic(
            pipeline.settings,
            names,
            seconds=150 if figure else 15,
            rate=100,
            stop=stop,
            progress=lambda _: None,
        )
        assert sent >= 1000

        deadline = time.monotonic() + 120
        while missing := missing_data(prometheus):
            if time.monotonic() > deadline:
                pytest.fail(
                    "no data for:\n  " + "\n  ".join(missing) + f"\n{pipeline.logs()}",
                    pytrace=False,
                )
            time.sleep(2)

        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        assert len(rules) == len(rule_expressions())
        assert all(rule["health"] == "ok" for rule in rules), rules
        targets = prometheus.api("targets")["activeTargets"]
        assert {target["health"] for target in targets} == {"up"}, targets
        assert receiver.seen, "no webhook reached the receiver"
        if figure:
            panels = dashboard_panels()
            dashboard_figure.write(Path(figure), prometheus, panels, started, time.time())
    finally:
        prometheus.stop()
    assert all(process.poll() is None for process in pipeline.processes), pipeline.logs()
