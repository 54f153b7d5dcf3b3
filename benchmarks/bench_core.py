"""Engine throughput: 1,000 subscriptions on threshold plans, 1,000,000 events, one process.

Prints progress, then figures, and as its last line one JSON object:
`{"events": N, "seconds": s, "events_per_s": r, "us_per_event": u, "peak_rss_mib": m, ...}`.
Run with `make bench-core` (or `python -m benchmarks core --events 200000`).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

from pipeline.billing.engine import Ledger, Record
from pipeline.tooling import compiled_engine

START = datetime(2025, 1, 1, tzinfo=UTC)


def catalog_records() -> list[Record]:
    metric = {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "tokens"}
    calls = {"code": "calls", "aggregation_type": "count_agg"}
    plan = {
        "code": "ai-pro",
        "interval": "monthly",
        "amount_cents": 2000,
        "amount_currency": "USD",
        "charges": [
            {
                "billable_metric_code": "tokens",
                "charge_model": "graduated",
                "properties": {
                    "graduated_ranges": [
                        {
                            "from_value": 0,
                            "to_value": 1000000,
                            "per_unit_amount": "0.00002",
                            "flat_amount": "0",
                        },
                        {
                            "from_value": 1000000,
                            "to_value": None,
                            "per_unit_amount": "0.00001",
                            "flat_amount": "0",
                        },
                    ]
                },
            },
            {
                "billable_metric_code": "calls",
                "charge_model": "standard",
                "properties": {"amount": "0.001"},
            },
        ],
        "usage_thresholds": [
            {"amount_cents": 1000},
            {"amount_cents": 5000},
            {"amount_cents": 10000, "recurring": True},
        ],
    }
    return [
        Record(START, "billable_metric", metric),
        Record(START, "billable_metric", calls),
        Record(START, "plan", plan),
    ]


def subscription_records(count: int) -> list[Record]:
    return [
        Record(
            START,
            "subscription",
            {"external_id": f"sub-{i}", "external_customer_id": f"cus-{i}", "plan_code": "ai-pro"},
        )
        for i in range(count)
    ]


def event_records(count: int, subscriptions: int) -> Iterator[Record]:
    """Events spread over ~60 days so periods close during the run, made as they are consumed
    (the worker decodes events one batch at a time; it never holds a million of them)."""
    step = timedelta(days=60) / count
    for i in range(count):
        at = START + step * i
        metric = "tokens" if i % 4 else "calls"
        payload = {
            "transaction_id": f"tx-{i}",
            "external_subscription_id": f"sub-{(i * 7919) % subscriptions}",
            "code": metric,
            "properties": {"tokens": 350 + i % 900},
        }
        yield Record(at, "event", payload, f"bench:{i}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=500, help="records per Ledger.run call")
    args = parser.parse_args(argv)
    engine = compiled_engine.in_use()
    print(
        f"{engine} engine: {args.events:,} events for {args.subscriptions:,} subscriptions…",
        file=sys.stderr,
    )
    ledger = Ledger()
    for record in catalog_records() + subscription_records(args.subscriptions):
        ledger.step(record)
    events = event_records(args.events, args.subscriptions)
    outputs = 0
    done = 0
    next_report = report_every = max(args.events // 10, 1)
    seconds = cpu = 0.0
    while done < args.events:
        batch = list(islice(events, args.batch))  # made outside the timed region
        started, cpu_started = time.perf_counter(), time.process_time()
        outputs += len(ledger.run(batch).outputs)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        done += len(batch)
        if done >= next_report:
            print(f"  {done:>10,} events  {done / seconds:>10,.0f} events/s", file=sys.stderr)
            next_report += report_every
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "bench": "core",
        "engine": engine,
        "events": args.events,
        "subscriptions": args.subscriptions,
        "batch": args.batch,
        "outputs": outputs,
        "seconds": round(seconds, 3),
        "events_per_s": round(args.events / seconds),
        "us_per_event": round(seconds / args.events * 1e6, 3),
        "cpu_us_per_event": round(cpu / args.events * 1e6, 3),
        "peak_rss_mib": round(peak_mib, 1),
    }
    print(json.dumps(result))
    return 0
