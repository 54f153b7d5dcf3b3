"""The worker's HTTP API on loopback: access checks per second and their latency, local and
forwarded, while usage events stream in.

One run, isolated (its own topics, groups and run folder, removed at the end):
1. The catalogue: a tokens metric, a metered feature (a quota), a plan entitling it, and
   SUBSCRIPTIONS subscriptions; `tollgate intake` and one `tollgate worker` start.
2. Events stream in at `--events-rate` per second from a producer thread for the whole run;
   the worker's applied offsets give the billing throughput meanwhile.
3. Local, one worker: access checks are sent open-loop at `--rate` per second (each at its
   scheduled instant, so a slow answer delays none of the next ones: no coordinated omission)
   for `--seconds`; p50/p99/max latency from the scheduled instant to the answer.
4. Capacity: `--concurrency` clients ask back to back for `--seconds`: checks per second.
5. A second worker joins; once the group is settled, the same open-loop run against the first
   worker for subscriptions the second one owns (forwarded: two HTTP hops), and for those it
   owns itself (local), in the same window.

The worker's own view (its `tollgate_api_request_seconds` histogram, arrival to answer) is shown
beside the client's: the difference is the client, the loopback and the machine's scheduler.

Target (issue): p99 < 10 ms for a local access check at 1,000 requests/s. Prints progress on
stderr, a table, then one JSON object as its last line. `make bench-api`, or
`python -m benchmarks api --rate 500 --seconds 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks.bench_pipeline import Bench, BenchError, applied, free_port
from pipeline.clients.metrics_text import (
    bucket_deltas,
    histogram_buckets,
    histogram_quantile,
    scrape,
)
from pipeline.clients.producer import UsageProducer
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics

KEY = "bench-api-key"
SUBSCRIPTIONS = 1000
METRIC = "tokens"
SERVED_BY = "X-Tollgate-Worker"
API_HISTOGRAM = "tollgate_api_request_seconds"
CLIENT_LATE: list[float] = []  # per open-loop run: p99 of the client's own sending delay


def publish_catalog(producer: UsageProducer, subscriptions: int) -> None:
    producer.send_definition(
        "billable_metric", {"code": METRIC, "aggregation_type": "sum_agg", "field_name": METRIC}
    )
    producer.send_definition(
        "feature",
        {
            "code": "api",
            "privileges": [{"code": "max_tokens", "value_type": "integer"}],
            "quota": {"billable_metric_code": METRIC, "privilege_code": "max_tokens"},
        },
    )
    producer.send_definition(
        "plan",
        {
            "code": "bench-api",
            "interval": "monthly",
            "amount_cents": 0,
            "amount_currency": "USD",
            "charges": [
                {
                    "billable_metric_code": METRIC,
                    "charge_model": "standard",
                    "properties": {"amount": "0.001"},
                }
            ],
            "entitlements": [{"feature_code": "api", "privileges": {"max_tokens": 10**12}}],
        },
    )
    for index in range(subscriptions):
        producer.send_subscription(
            {
                "external_id": f"sub-{index}",
                "external_customer_id": f"cus-{index}",
                "plan_code": "bench-api",
            }
        )
    producer.flush()


def stream_events(bootstrap: str, prefix: str, rate: float, stop: Any) -> None:
    """Usage events at a steady rate until `stop` is set (a child process of its own, so that
    producing does not compete with the access checks' client for the interpreter)."""
    producer = UsageProducer(bootstrap, Topics.with_prefix(prefix))
    started, sent = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            producer.send_event(
                {
                    "transaction_id": f"tx-{sent}",
                    "external_subscription_id": f"sub-{sent % SUBSCRIPTIONS}",
                    "code": METRIC,
                    "properties": {METRIC: 1 + sent % 300},
                }
            )
            sent += 1
        producer.poll(0.005)
    producer.flush()


class EventStream:
    def __init__(self, settings: Settings, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self.process = context.Process(
            target=stream_events,
            args=(settings.kafka_bootstrap, settings.topic_prefix, rate, self.stop_event),
            name="events",
            daemon=True,
        )

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.process.join(30)


def server_side(port: int, before: list[tuple[float, float]]) -> dict[str, float | None]:
    """p50/p99 (ms) of the worker's own request timing since `before` (its histogram)."""
    delta = bucket_deltas(before, histogram_buckets(scrape(port), API_HISTOGRAM))

    def ms(q: float) -> float | None:
        value = histogram_quantile(delta, q)
        return None if value is None else round(value * 1000, 2)

    return {"server_p50_ms": ms(0.5), "server_p99_ms": ms(0.99)}


def _url(base: str, external_id: str) -> str:
    return f"{base}/api/v1/subscriptions/{external_id}/access?feature_code=api"


async def _check(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as answer:
        body = await answer.read()
        if answer.status != 200:
            raise BenchError(f"access check answered {answer.status}: {body[:200]!r}")
        return answer.headers.get(SERVED_BY, "")


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {KEY}"},
        connector=aiohttp.TCPConnector(limit=concurrency),
    )


async def open_loop(
    base: str, subscriptions: Sequence[str], rate: float, seconds: float
) -> list[float]:
    """Latencies (seconds) of checks scheduled at `rate`/s, each from its scheduled instant.

    A dispatcher starts each check at its instant (only the checks in flight exist as tasks),
    and the client's own delay in starting them is recorded too (`CLIENT_LATE`): a client that
    falls behind would otherwise pass for a slow server."""
    latencies: list[float] = []
    late: list[float] = []
    in_flight: set[asyncio.Task[None]] = set()
    async with _session(256) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1
        total = int(rate * seconds)

        async def one(index: int, scheduled: float) -> None:
            await _check(session, _url(base, subscriptions[index % len(subscriptions)]))
            latencies.append(loop.time() - scheduled)

        for index in range(total):
            scheduled = start + index / rate
            wait = scheduled - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            late.append(loop.time() - scheduled)
            task = asyncio.ensure_future(one(index, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    ordered = sorted(late)
    CLIENT_LATE.append(ordered[int(0.99 * (len(ordered) - 1))])
    return latencies


async def closed_loop(base: str, subscriptions: Sequence[str], clients: int, seconds: float) -> int:
    """Checks answered by `clients` back-to-back clients in `seconds`."""
    done = 0
    async with _session(clients) as session:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds

        async def client(offset: int) -> None:
            nonlocal done
            index = offset
            while loop.time() < end:
                await _check(session, _url(base, subscriptions[index % len(subscriptions)]))
                done += 1
                index += clients

        await asyncio.gather(*(client(i) for i in range(clients)))
    return done


async def owners(base: str, subscriptions: Sequence[str]) -> dict[str, str]:
    async with _session(16) as session:
        served = await asyncio.gather(*(_check(session, _url(base, s)) for s in subscriptions))
    return dict(zip(subscriptions, served, strict=True))


def figures(latencies: list[float], seconds: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 2)

    return {
        "checks": len(ordered),
        "per_second": round(len(ordered) / seconds, 1),
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
        "client_send_delay_p99_ms": round(CLIENT_LATE[-1] * 1000, 2) if CLIENT_LATE else None,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def wait_ready(
    bench: Bench, bases: Sequence[str], processes: Sequence[Any], timeout: float
) -> None:
    """Until every worker answers for every subscription (the group settled, state recovered)."""
    deadline = time.monotonic() + timeout

    async def ready() -> bool:
        try:
            for base in bases:
                found = await owners(base, [f"sub-{i}" for i in range(0, SUBSCRIPTIONS, 37)])
                if len(set(found.values())) != len(bases):
                    return False
        except (BenchError, aiohttp.ClientError):
            return False
        return True

    while not asyncio.run(ready()):
        for process in processes:
            if process.poll() is not None:
                raise BenchError(f"a process exited:\n{bench.log_tail(process)}")
        if time.monotonic() > deadline:
            raise BenchError(f"the workers did not all answer within {timeout:.0f} s")
        time.sleep(1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench.create(Settings.from_env(), None, sys.stderr)
    env = {"TOLLGATE_API_KEYS": KEY}
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    stream: EventStream | None = None
    try:
        from pipeline.clients.topic_admin import ensure_topics_for

        ensure_topics_for(bench.settings)
        with UsageProducer(bench.settings.kafka_bootstrap, bench.topics) as producer:
            publish_catalog(producer, SUBSCRIPTIONS)
        bench.say(f"catalogue: {SUBSCRIPTIONS} subscriptions with a metered feature")
        intake = bench.start(
            ["-m", "pipeline.cli", "intake"], "intake", TOLLGATE_METRICS_PORT=str(free_port())
        )
        first = bench.start(
            ["-m", "pipeline.cli", "worker", "--clock", "wall"],
            "worker-0",
            TOLLGATE_API_PORT=str(ports[0]),
            **env,
        )
        wait_ready(bench, bases[:1], [intake, first], 180)
        stream = EventStream(bench.settings, args.events_rate)
        stream.start()
        subs = [f"sub-{i}" for i in range(SUBSCRIPTIONS)]
        bench.say(
            f"events streaming at {args.events_rate:,.0f}/s; "
            f"local access checks at {args.rate:,.0f}/s"
        )
        applied_before, t0 = applied(bench.worker_port), time.monotonic()
        timed = histogram_buckets(scrape(bench.worker_port), API_HISTOGRAM)
        local = figures(
            asyncio.run(open_loop(bases[0], subs, args.rate, args.seconds)), args.seconds
        )
        local.update(server_side(bench.worker_port, timed))
        billed = (applied(bench.worker_port) - applied_before) / (time.monotonic() - t0)
        bench.say(
            f"  local: p50 {local['p50_ms']} ms, p99 {local['p99_ms']} ms "
            f"(in the worker: p99 {local['server_p99_ms']} ms); "
            f"billed {billed:,.0f} events/s"
        )
        bench.say(f"capacity: {args.concurrency} clients back to back")
        capacity = (
            asyncio.run(closed_loop(bases[0], subs, args.concurrency, args.seconds)) / args.seconds
        )
        bench.say(f"  {capacity:,.0f} checks/s")

        bench.say("a second worker joins")
        second = bench.start(
            ["-m", "pipeline.cli", "worker", "--clock", "wall"],
            "worker-1",
            TOLLGATE_API_PORT=str(ports[1]),
            TOLLGATE_METRICS_PORT=str(free_port()),
            # its own RocksDB folder: two workers cannot open the same one
            TOLLGATE_RUN_DIR=str(bench.run_dir / "worker-1"),
            **env,
        )
        wait_ready(bench, bases, [intake, first, second], 180)
        owned = asyncio.run(owners(bases[0], subs))
        remote = [s for s, url in owned.items() if url.rstrip("/") == bases[1]]
        mine = [s for s, url in owned.items() if url.rstrip("/") == bases[0]]
        bench.say(
            f"  worker 0 owns {len(mine)}, worker 1 owns {len(remote)}; "
            f"forwarded checks at {args.rate:,.0f}/s"
        )
        timed = histogram_buckets(scrape(bench.worker_port), API_HISTOGRAM)
        forwarded = figures(
            asyncio.run(open_loop(bases[0], remote, args.rate, args.seconds)), args.seconds
        )
        forwarded.update(server_side(bench.worker_port, timed))
        bench.say(f"  forwarded: p50 {forwarded['p50_ms']} ms, p99 {forwarded['p99_ms']} ms")
        timed = histogram_buckets(scrape(bench.worker_port), API_HISTOGRAM)
        local_two = figures(
            asyncio.run(open_loop(bases[0], mine, args.rate, args.seconds)), args.seconds
        )
        local_two.update(server_side(bench.worker_port, timed))
        bench.say(
            f"  local (two workers): p50 {local_two['p50_ms']} ms, p99 {local_two['p99_ms']} ms"
        )
        return {
            "benchmark": "api",
            "rate": args.rate,
            "seconds": args.seconds,
            "events_rate": args.events_rate,
            "events_billed_per_second": round(billed, 1),
            "local": local,
            "capacity_checks_per_second": round(capacity, 1),
            "concurrency": args.concurrency,
            "forwarded": forwarded,
            "local_two_workers": local_two,
            "target_p99_ms": 10.0,
            "target_met": local["p99_ms"] < 10.0,
        }
    finally:
        if stream is not None:
            stream.stop()
        bench.close()


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("local, one worker", result["local"]),
        ("forwarded (2 hops)", result["forwarded"]),
        ("local, two workers", result["local_two_workers"]),
    ]
    print(
        f"access checks at {result['rate']:,.0f}/s for {result['seconds']:g} s, "
        f"events at {result['events_rate']:,.0f}/s"
    )
    print(
        f"{'case':<22}{'checks/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'worker p50':>12}{'worker p99':>12}"
    )
    for name, f in rows:
        print(
            f"{name:<22}{f['per_second']:>10,.0f}{f['p50_ms']:>9}{f['p99_ms']:>9}{f['max_ms']:>9}"
            f"{f['server_p50_ms']!s:>12}{f['server_p99_ms']!s:>12}"
        )
    print(
        f"capacity ({result['concurrency']} clients back to back): "
        f"{result['capacity_checks_per_second']:,.0f} checks/s"
    )
    print(f"events billed meanwhile: {result['events_billed_per_second']:,.0f}/s")
    print(f"target p99 < 10 ms locally at 1,000/s: {'met' if result['target_met'] else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks api", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="access checks per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measured run")
    parser.add_argument(
        "--events-rate", type=float, default=2000.0, help="usage events per second meanwhile"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="clients of the capacity run")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except BenchError as error:
        print(f"bench-api: {error}", file=sys.stderr)
        return 1
    print_table(result)
    print(json.dumps(result))
    return 0
