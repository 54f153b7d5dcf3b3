"""Sink throughput on the local stack: invoices stored per second, webhooks delivered per second.

1. Invoices: N `invoice.created` outputs (the example invoices with fresh ids) are published to
   a private topic; `sinks.invoices.sink` stores them from a schema of its own. Timed from the
   first stored invoice to the last (the consumer group join is left out).
2. Webhooks: M outputs go through the intake into the outbox and are POSTed to a local aiohttp
   receiver answering 204, TOLLGATE_WEBHOOK_CONCURRENCY at a time. Timed from the first delivery
   to the last.

Everything it creates (topics, schema) is removed at the end. Prints figures, then one JSON
object as its last line. Run with `make bench-sinks` (or
`python -m benchmarks sinks --invoices 20000 --webhooks 5000`).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from aiohttp import web
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from pipeline.billing.webhooks import Output
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.replay import replay
from pipeline.wire import OutputRecord, encode_output
from sinks.common.consumer import LoopConfig
from sinks.common.db import Database, connect
from sinks.common.migrate import migrate
from sinks.common.runtime import Activity, wall_clock
from sinks.invoices import sink as invoice_sink
from sinks.webhooks import sink as webhook_sink

TIMELINE = "examples/ai_tokens_recurring.jsonl"


def invoice_outputs(count: int) -> list[OutputRecord]:
    """`count` distinct invoice.created outputs, cycling through the example's invoices."""
    with open(TIMELINE, encoding="utf-8") as lines:
        models = [o for o in replay(lines) if isinstance(o, Output) and o.object_type == "invoice"]
    records = []
    for n in range(count):
        model = models[n % len(models)]
        body = copy.deepcopy(model.body)
        invoice = body["invoice"]
        invoice["lago_id"] = str(uuid.uuid4())
        for fee in invoice["fees"]:
            fee["lago_id"] = str(uuid.uuid4())
        subscription = f"bench-{n % 1000}"
        records.append(
            OutputRecord(
                str(uuid.uuid4()), "invoice.created", "invoice", subscription, "bench", body
            )
        )
    return records


def publish(bootstrap: str, topic: str, records: list[OutputRecord]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 20}
    )
    for record in records:
        key = (record.external_subscription_id or "").encode()
        producer.produce(topic, key=key, value=encode_output(record))
        producer.poll(0)
    if producer.flush(60):
        raise SystemExit("could not publish the outputs")


def timed(count: Callable[[], int], target: int, runner: threading.Thread) -> float:
    """Seconds from the first counted row to the `target`-th, polling every 20 ms."""
    runner.start()
    deadline = time.monotonic() + 600
    first = None
    while time.monotonic() < deadline:
        done = count()
        if done and first is None:
            first = time.monotonic()
        if done >= target and first is not None:
            return time.monotonic() - first
        time.sleep(0.02)
    raise SystemExit(f"timed out: {count()} of {target}")


def bench_invoices(settings: Settings, count: int, batch: int) -> dict[str, Any]:
    records = invoice_outputs(count)
    publish(settings.kafka_bootstrap, Topics.with_prefix(settings.topic_prefix).outputs, records)
    stop = threading.Event()
    loop = _loop(settings, "invoices", batch)
    db = Database(settings.database_url, settings.database_schema, stop=stop)
    runner = threading.Thread(
        target=invoice_sink.run,
        args=(loop, db),
        kwargs={"stop": stop, "activity": Activity(None), "clock": wall_clock},
    )
    seconds = timed(lambda: _count(settings, "invoices"), count, runner)
    stop.set()
    runner.join()
    db.close()
    fees = _count(settings, "invoice_fees")
    return {
        "invoices": count,
        "fee_rows": fees,
        "batch_size": batch,
        "invoice_seconds": round(seconds, 2),
        "invoices_per_s": round(count / seconds),
    }


def bench_webhooks(settings: Settings, count: int, port: int) -> dict[str, Any]:
    received = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(status=204)

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    asyncio.run_coroutine_threadsafe(runner.setup(), loop).result()
    site = web.TCPSite(runner, "127.0.0.1", port)
    asyncio.run_coroutine_threadsafe(site.start(), loop).result()
    with connect(settings.database_url, settings.database_schema, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO webhook_endpoints (url, secret) VALUES (%s, %s)",
            (f"http://127.0.0.1:{port}/hook", "whsec_" + "A" * 44),
        )
    topic = f"{settings.topic_prefix}webhooks."
    hooks = dataclasses.replace(settings, topic_prefix=topic)
    _create_topics(hooks)
    publish(settings.kafka_bootstrap, Topics.with_prefix(topic).outputs, invoice_outputs(count))
    stop = threading.Event()
    sink = threading.Thread(
        target=webhook_sink.run,
        args=(hooks, _loop(hooks, "webhooks", 500)),
        kwargs={"deliveries": True, "stop": stop, "activity": Activity(None), "clock": wall_clock},
    )
    # The delivery loop runs asyncio in its own thread here (the CLI runs it on the main one).
    seconds = timed(lambda: received, count, sink)
    stop.set()
    sink.join()
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
    _delete_topics(hooks)
    return {
        "webhooks": count,
        "concurrency": settings.webhook_concurrency,
        "webhook_seconds": round(seconds, 2),
        "webhooks_per_s": round(count / seconds),
    }


def _loop(settings: Settings, kind: str, batch: int) -> LoopConfig:
    topics = Topics.with_prefix(settings.topic_prefix)
    return LoopConfig(
        settings.kafka_bootstrap,
        topics.outputs,
        topics.dead_letters,
        f"{topics.outputs}.bench-{kind}",
        batch,
        settings.sink_batch_wait,
    )


def _count(settings: Settings, table: str) -> int:
    with connect(settings.database_url, settings.database_schema, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        found = row.fetchone()
        return int(found[0]) if found else 0


def _create_topics(settings: Settings) -> None:
    topics = Topics.with_prefix(settings.topic_prefix)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    new = [NewTopic(topics.outputs, 4, 1), NewTopic(topics.dead_letters, 1, 1)]
    for future in admin.create_topics(new).values():
        future.result()


def _delete_topics(settings: Settings) -> None:
    topics = Topics.with_prefix(settings.topic_prefix)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.delete_topics([topics.outputs, topics.dead_letters]).values():
        future.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--webhooks", type=int, default=5_000)
    parser.add_argument("--port", type=int, default=18999, help="the local receiver's port")
    args = parser.parse_args(argv)
    base = Settings.from_env()
    run = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        base, topic_prefix=f"bench-{run}.", database_schema=f"bench_{run}", metrics_port=0
    )
    migrate(settings.database_url, settings.database_schema, echo=lambda _: None)
    _create_topics(settings)
    try:
        figures = bench_invoices(settings, args.invoices, args.batch_size)
        print(f"invoices: {figures['invoices_per_s']}/s", file=sys.stderr)
        figures |= bench_webhooks(settings, args.webhooks, args.port)
        print(f"webhooks: {figures['webhooks_per_s']}/s", file=sys.stderr)
    finally:
        _delete_topics(settings)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            schema = sql.Identifier(settings.database_schema)
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
    print(json.dumps(figures))
    return 0
