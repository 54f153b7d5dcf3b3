"""`tollgate demo` (what `make up` runs): the whole pipeline on the local stack, live.

The intake, a worker, both sinks and a local webhook receiver start; a demo catalogue (AI-token
plans with fixed and recurring thresholds, per-subscription overrides, a graduated API plan, a
usage alert on every subscription, features with a metered token allowance, payment terms) and
traffic from a thousand subscriptions go in, while half the customers pay their progressive
invoices and the others let them go overdue (demo_payments.py); progress shows events sent and
billed per second with the p99 from event to outputs acknowledged, thresholds crossed, invoices
written, alerts triggered, access changes and webhooks delivered; a summary is read back from
PostgreSQL, blocked subscriptions and why among it. Each run has its own topics and PostgreSQL
schema, so it starts clean. Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.clients.catalog_file import load_catalog_file
from pipeline.clients.metrics_text import (
    bucket_deltas,
    counter,
    histogram_buckets,
    histogram_quantile,
    scrape,
)
from pipeline.clients.producer import UsageProducer
from pipeline.clients.topic_admin import ensure_topics_for
from pipeline.kernel.commands import Echo
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.local.demo_access import by_reason
from pipeline.local.demo_api import announce, demo_key, show_access
from pipeline.local.demo_catalog import (
    METRIC_OF_PLAN,
    PAYMENT_GRACE_SECONDS,
    PLANS,
    demo_subscription,
    spend_alert,
)
from pipeline.local.demo_payments import PAYMENT_DELAY_SECONDS, Payer, PaymentSchedule
from pipeline.local.demo_receiver import Receiver
from pipeline.local.demo_summary import print_summary

CATALOG = Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml"
WORKER_METRICS_PORT = 9471  # the intake serves 9470, the sinks 9472 and 9473
PROCESSES = 4


def run(settings: Settings, *, seconds: float, subscriptions: int, rate: float, echo: Echo) -> None:
    run_id = uuid.uuid4().hex[:6]
    demo = Settings.from_env(
        {
            **settings.as_env(),
            "TOLLGATE_TOPIC_PREFIX": f"demo.{run_id}.",
            "TOLLGATE_WORKER_APP_ID": f"demo-{run_id}-worker",
            "TOLLGATE_INTAKE_GROUP": f"demo-{run_id}-intake",
            "TOLLGATE_DATABASE_SCHEMA": f"demo_{run_id}",
            "TOLLGATE_TICK_INTERVAL": "1",
            "TOLLGATE_API_KEYS": demo_key(settings),
        }
    )
    key = demo.api_key_list[0]
    echo(
        f"tollgate demo {run_id}: Kafka {demo.kafka_bootstrap}, PostgreSQL schema "
        f"{demo.database_schema}, logs in {demo.log_dir}"
    )
    from sinks.common.migrate import migrate

    migrate(demo.database_url, demo.database_schema, echo=lambda line: None)
    ensure_topics_for(demo)
    receiver = Receiver()
    receiver.start()
    _register(demo, receiver)
    live = LiveFigures(WORKER_METRICS_PORT)
    payer = Payer(demo, PaymentSchedule(PAYMENT_DELAY_SECONDS))
    with _processes(demo, run_id, echo) as alive:
        names = publish_catalog(demo, run_id, subscriptions)
        echo(
            f"catalogue: {len(names)} subscriptions on {', '.join(sorted(set(PLANS)))}; "
            f"sending {rate:.0f} events/s for {seconds:.0f} s (Ctrl-C stops)"
        )
        echo(
            f"payments: half the customers pay each progressive invoice "
            f"{PAYMENT_DELAY_SECONDS:.0f} s after it is written, the others never do "
            f"(ai-starter: overdue {PAYMENT_GRACE_SECONDS} s after issue)"
        )
        metered = [name for name, metric in names if metric == "llm_tokens"]  # ai_tokens' quota
        announce(demo, key, metered[0], echo)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        payer.start()
        try:
            sent = send_traffic(
                demo,
                names,
                seconds=seconds,
                rate=rate,
                stop=stop,
                progress=lambda n: _progress(demo, receiver, n, alive(), live, echo),
            )
            _settle(demo, receiver, stop, sent, alive, live, echo, payer.schedule)
        finally:
            payer.stop()
        echo("")
        blocked = print_summary(demo, receiver, payer.schedule, echo)
        echo("")
        asked = [items[0].subscription for items in by_reason(blocked).values()]
        show_access(demo, key, [*asked, *[n for n in metered[:3] if n not in asked]][:4], echo)
    receiver.stop()
    echo(
        f"demo {run_id} done. `tollgate invoices list` with TOLLGATE_DATABASE_SCHEMA="
        f"{demo.database_schema} shows its invoices; `make down` stops the stack."
    )


def _register(demo: Settings, receiver: Receiver) -> None:
    from sinks.common.db import connect
    from sinks.webhooks.admin import add_endpoint
    from sinks.webhooks.signing import new_secret

    receiver.secret = new_secret(os.urandom(24))
    with connect(demo.database_url, demo.database_schema, autocommit=True) as conn:
        add_endpoint(
            conn, receiver.url, secret=receiver.secret, event_types=None, lago_signature=False
        )


@contextmanager
def _processes(demo: Settings, run_id: str, echo: Echo) -> Iterator[Callable[[], int]]:
    """The intake, the worker and both sinks as child processes, stopped on the way out
    whatever happens."""
    commands = {
        "intake": ["intake"],
        "worker": ["worker", "--clock", "wall"],
        "sink-invoices": ["sink", "invoices"],
        "sink-webhooks": ["sink", "webhooks"],
    }
    demo.log_dir.mkdir(parents=True, exist_ok=True)
    children: list[tuple[subprocess.Popen[bytes], Any]] = []
    for offset, (name, args) in enumerate(commands.items()):
        port = WORKER_METRICS_PORT - 1 + offset
        env = {**os.environ, **demo.as_env(), "TOLLGATE_METRICS_PORT": str(port)}
        log = open(demo.log_dir / f"demo-{run_id}-{name}.log", "wb")  # noqa: SIM115
        child = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        children.append((child, log))
    try:
        yield lambda: sum(child.poll() is None for child, _ in children)
    finally:
        for child, _ in children:
            if child.poll() is None:
                child.terminate()
        for child, log in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            log.close()
        echo("intake, worker and sinks stopped")


def publish_catalog(demo: Settings, run_id: str, count: int) -> list[tuple[str, str]]:
    """Metrics, features, plans and customers from examples/catalog.yaml; `count` subscriptions
    of this run with their overrides and payment terms (demo_catalog.py), each with a usage
    alert. Returns (subscription, metric) pairs."""
    topics = Topics.with_prefix(demo.topic_prefix)
    subscriptions = []
    with UsageProducer(demo.kafka_bootstrap, topics) as producer:
        for item in load_catalog_file(CATALOG):
            if item.kind not in ("subscription", "alert"):  # this run makes its own
                producer.send_definition(item.kind, item.payload)
        for index in range(count):
            definition = demo_subscription(run_id, index)
            name = definition["external_id"]
            producer.send_subscription(definition)
            producer.send_alert(spend_alert(name))
            subscriptions.append((name, METRIC_OF_PLAN[definition["plan_code"]]))
    return subscriptions


def send_traffic(
    demo: Settings,
    names: list[tuple[str, str]],
    *,
    seconds: float,
    rate: float,
    stop: threading.Event,
    progress: Callable[[int], None],
) -> int:
    rng = random.Random(7)
    topics = Topics.with_prefix(demo.topic_prefix)
    sent = 0
    started = last = time.monotonic()
    with UsageProducer(demo.kafka_bootstrap, topics) as producer:
        while not stop.is_set() and (now := time.monotonic()) - started < seconds:
            due = int((now - started) * rate) - sent
            for _ in range(due):
                name, metric = names[rng.randrange(len(names))]
                field = "tokens" if metric == "llm_tokens" else "requests"
                amount = (
                    rng.randrange(50_000, 900_000) if field == "tokens" else rng.randrange(20, 400)
                )
                producer.send_event(
                    {
                        "transaction_id": uuid.uuid4().hex,
                        "external_subscription_id": name,
                        "code": metric,
                        "properties": {field: amount},
                    }
                )
                sent += 1
            producer.poll(0.05)
            if now - last >= 1.0:
                progress(sent)
                last = now
    return sent


def _counts(demo: Settings, receiver: Receiver) -> dict[str, int]:
    from sinks.common.db import connect

    with connect(demo.database_url, demo.database_schema, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM invoices),"
            " (SELECT count(*) FROM applied_usage_thresholds),"
            " (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'),"
            " (SELECT count(*) FROM triggered_alerts)"
        ).fetchone()
    assert row is not None
    return {
        "invoices": row[0],
        "thresholds": row[1],
        "pending": row[2],
        "alerts": row[3],
        "delivered": len(receiver.seen),
    }


class LiveFigures:
    """Events billed per second and the p99 from event to outputs acknowledged since the last
    look, and access changes so far, from the worker's own metrics."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.access_changes = 0
        self._at = time.monotonic()
        self._applied = 0.0
        self._buckets: list[tuple[float, float]] = []

    def line(self) -> str:
        try:
            metrics = scrape(self.port)
        except OSError:
            return "worker starting"
        now = time.monotonic()
        applied = counter(metrics, "tollgate_worker_messages_total")
        buckets = histogram_buckets(metrics, "tollgate_worker_latency_seconds")
        self.access_changes = round(counter(metrics, "tollgate_worker_access_changes_total"))
        rate = (applied - self._applied) / max(now - self._at, 1e-3)
        p99 = histogram_quantile(bucket_deltas(self._buckets, buckets), 0.99)
        self._at, self._applied, self._buckets = now, applied, buckets
        shown = "-" if p99 is None else f"{p99 * 1000:,.0f} ms"
        return f"billed {rate:>6,.0f}/s, p99 {shown:>8}"


def _progress(
    demo: Settings, receiver: Receiver, sent: int, alive: int, live: LiveFigures, echo: Echo
) -> None:
    counts = _counts(demo, receiver)
    figures = live.line()
    echo(
        f"  sent {sent:>8,} | {figures} | thresholds {counts['thresholds']:>5,} | "
        f"invoices {counts['invoices']:>5,} | alerts {counts['alerts']:>5,} | "
        f"access {live.access_changes:>5,} | webhooks {counts['delivered']:>5,}"
        + ("" if alive == PROCESSES else f" | {PROCESSES - alive} process(es) exited: see logs")
    )


def _settle(
    demo: Settings,
    receiver: Receiver,
    stop: threading.Event,
    sent: int,
    alive: Callable[[], int],
    live: LiveFigures,
    echo: Echo,
    payments: PaymentSchedule,
) -> None:
    """Let the worker and sinks finish what was sent (up to 60 s): counts stop moving and no
    payment is waiting to be made."""
    previous: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        time.sleep(2)
        counts = _counts(demo, receiver)
        _progress(demo, receiver, sent, alive(), live, echo)
        if counts == previous and counts["pending"] == 0 and payments.waiting == 0:
            return
        previous = counts
