"""The live pipeline on the local stack: sustained throughput, its ceiling, and latency.

One run, isolated: its own topic prefix, group ids and RocksDB state in a temporary run folder,
all removed at the end (the child processes are stopped even on Ctrl-C). It measures two cases,
each from an empty deployment: 1,000 subscriptions, then 100,000.

1. Topics; the catalogue (a sum metric, a plan with a standard charge and thresholds, fixed and
   recurring) and M subscriptions, through `UsageProducer`.
2. N Avro usage events produced up front as fast as possible (keyed by subscription, timestamped
   now): the backlog.
3. Ceiling: a bare confluent-kafka consumer drains that backlog, decoding each message with
   `decode_ledger_input` (no engine, no state, no outputs).
4. Throughput, the whole path: `tollgate intake` and one `tollgate worker --clock records` drain
   the backlog (intake → usage batches → worker → outputs acknowledged). Progress is the
   worker's `tollgate_worker_applied_offset`; the rate is taken over the middle 80% of the
   backlog (start-up and the tail left out), and so is each process's CPU time
   (/proc/<pid>/stat). Changelog records written per event and the worker's peak RSS come from
   the same run.
5. Latency (1,000 subscriptions): the pipeline caught up, `rate` events/s are sent for
   `LATENCY_SECONDS`, each with the time of sending as its timestamp; p50/p99 come from the
   worker's own histogram `tollgate_worker_latency_seconds` (record timestamp → outputs
   acknowledged by the broker), scraped before and after, from the bucket differences. When the
   sustained rate reached 20,000 events/s, again at 20,000/s.

A slow pipeline does not make the run long: each drain has a time budget, past which its rate is
that of the middle of what it did (`worker_drained: false`); a latency quantile that falls among
events still unprocessed CATCH_UP_BUDGET seconds after the last send is null (saturated).

Prints progress on stderr, a table, then as its last line one JSON object. Run with
`make bench-pipeline` or `python -m benchmarks pipeline --events 30000 --rate 500`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, TextIO

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from pipeline.clients.metrics_text import (
    bucket_deltas,
    counter,
    histogram_buckets,
    histogram_quantile,
    mean,
    scrape,
)
from pipeline.clients.producer import UsageProducer
from pipeline.clients.topic_admin import admin_client, ensure_topics_for
from pipeline.kernel.errors import TollgateError
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import decode_ledger_input

ROOT = Path(__file__).resolve().parent.parent
LATENCY_SECONDS = 30.0
LATENCY_HISTOGRAM = "tollgate_worker_latency_seconds"
BATCH_HISTOGRAM = "tollgate_intake_batch_messages"  # messages per usage batch
APPLIED = "tollgate_worker_applied_offset"
LARGE_SUBSCRIPTIONS = 100_000
HIGH_RATE = 20_000.0  # the second latency phase, when the sustained rate reaches it
METRIC = "tokens"
PLAN = "bench-plan"
SAMPLE_EVERY = 0.2  # seconds between two looks at the committed offsets
MIDDLE = 0.8  # share of the backlog the rate is taken over
# Time budgets (seconds, from the process's start), so that a slow worker still gives figures
# within minutes: past its budget a phase is measured on the part of the backlog it committed.
WORKER_BUDGET = 120.0
CATCH_UP_BUDGET = 30.0  # after the latency phase's last event


class BenchError(TollgateError):
    """The benchmark could not run to the end (a process died, a phase timed out)."""


# --- pure figures (tests/unit/test_bench_percentiles.py) ------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # monotonic seconds
    done: int  # messages done
    cpu: tuple[float | None, ...]  # CPU seconds so far of each process followed


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    end: float
    first: float  # messages done at `start`
    last: float
    cpu: tuple[float | None, ...]  # CPU seconds each process spent between `start` and `end`

    @property
    def rate(self) -> float:
        return (self.last - self.first) / (self.end - self.start)

    def cpu_per_message(self, index: int = 0) -> float | None:
        cpu = self.cpu[index] if index < len(self.cpu) else None
        return None if cpu is None else cpu / (self.last - self.first)

    def cores(self, index: int = 0) -> float | None:
        cpu = self.cpu[index] if index < len(self.cpu) else None
        return None if cpu is None else cpu / (self.end - self.start)


def middle_window(samples: Sequence[Sample], total: int, middle: float = MIDDLE) -> Window | None:
    """The stretch in which the middle `middle` share of `total` messages was done.

    Progress moves in steps: each step is placed at the first sample that shows it, and the
    moments the share's bounds were passed are interpolated between steps. Before the first
    step the processes were starting: a bound that falls there moves up to the first step.
    None with fewer than two steps."""
    steps: list[Sample] = []
    for sample in samples:
        if sample.done > (steps[-1].done if steps else 0):
            steps.append(sample)
    if len(steps) < 2:
        return None
    low = max(total * (1 - middle) / 2, steps[0].done)
    high = min(total * (1 + middle) / 2, steps[-1].done)
    if high <= low:
        low, high = steps[0].done, steps[-1].done
    start, end = _time_at(steps, low), _time_at(steps, high)
    if end <= start:
        return None
    processes = len(samples[0].cpu) if samples else 0
    cpu = tuple(_cpu_between(samples, index, start, end) for index in range(processes))
    return Window(start, end, low, high, cpu)


def _time_at(steps: Sequence[Sample], done: float) -> float:
    for before, after in pairwise(steps):
        if before.done <= done <= after.done:
            share = (done - before.done) / (after.done - before.done)
            return before.at + share * (after.at - before.at)
    return steps[0].at if done <= steps[0].done else steps[-1].at


def _cpu_between(samples: Sequence[Sample], index: int, start: float, end: float) -> float | None:
    first, last = _cpu_at(samples, index, start), _cpu_at(samples, index, end)
    return None if first is None or last is None else last - first


def _cpu_at(samples: Sequence[Sample], index: int, at: float) -> float | None:
    for before, after in pairwise(samples):
        if before.at <= at <= after.at:
            low, high = before.cpu[index], after.cpu[index]
            if low is None or high is None:
                return None
            if after.at == before.at:
                return low
            return low + (high - low) * (at - before.at) / (after.at - before.at)
    return None


# --- the deployment under test -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its threads, from /proc (Linux); else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Bench:
    """One isolated deployment: topic prefix, group ids, run folder, child processes."""

    settings: Settings
    run_dir: Path
    tag: str
    err: TextIO
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    intake_port: int = field(default_factory=lambda: free_port())

    @property
    def worker_port(self) -> int:
        return self.settings.metrics_port

    @classmethod
    def create(cls, base: Settings, partitions: int | None, err: TextIO) -> Bench:
        tag = f"bench-{uuid.uuid4()}"
        base.run_dir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=base.run_dir))
        env = {
            **base.as_env(),
            "TOLLGATE_TOPIC_PREFIX": f"{tag}.",
            "TOLLGATE_WORKER_APP_ID": f"{tag}-worker",
            "TOLLGATE_INTAKE_GROUP": f"{tag}-intake",
            "TOLLGATE_WORKER_STORE": "rocksdb://",
            "TOLLGATE_RUN_DIR": str(run_dir),
            "TOLLGATE_METRICS_PORT": str(free_port()),
            "TOLLGATE_API_PORT": str(free_port()),
        }
        if partitions is not None:
            env["TOLLGATE_PARTITIONS"] = str(partitions)
        return cls(Settings.from_env(env), run_dir, tag, err)

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.settings.topic_prefix)

    def say(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def start(self, args: list[str], name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.settings.as_env(), **extra_env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=log)
        self.processes.append(process)
        self.logs[process.pid] = log_path
        return process

    def log_tail(self, process: subprocess.Popen[bytes]) -> str:
        path = self.logs.get(process.pid)
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop every child, delete the topics and groups, remove the run folder."""
        for process in self.processes:
            self.stop(process)
        admin = admin_client(self.settings.kafka_bootstrap)
        try:
            names = [name for name in admin.list_topics(timeout=10).topics if self.tag in name]
            if names:
                for future in admin.delete_topics(names, operation_timeout=30).values():
                    with contextlib.suppress(KafkaException):
                        future.result()
            if self.groups:
                for future in admin.delete_consumer_groups(self.groups).values():
                    with contextlib.suppress(KafkaException):
                        future.result()
        except KafkaException as exc:
            self.say(f"could not delete the topics of {self.tag}: {exc}")
        else:
            self.say(f"deleted {len(names)} topics and the consumer groups of {self.tag}")
        shutil.rmtree(self.run_dir, ignore_errors=True)


class GroupWatch:
    """A consumer group's committed offsets on the usage-events topic (it joins nothing)."""

    def __init__(self, bench: Bench, group: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bench.settings.kafka_bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
            }
        )
        self.partitions = [
            TopicPartition(bench.topics.usage_events, p) for p in range(bench.settings.partitions)
        ]

    def committed(self) -> int:
        return sum(max(tp.offset, 0) for tp in self.consumer.committed(self.partitions, timeout=10))

    def high_watermarks(self) -> int:
        return sum(self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self.partitions)

    def close(self) -> None:
        self.consumer.close()


def applied(port: int) -> int:
    """usage-events messages the worker applied (outputs acknowledged), from its metrics."""
    try:
        metrics = scrape(port)
    except OSError:  # not serving yet
        return 0
    return sum(int(value) + 1 for name, _, value in metrics.get(APPLIED, []) if name == APPLIED)


def follow(
    bench: Bench,
    processes: Sequence[subprocess.Popen[bytes]],
    progress: Callable[[], int],
    total: int,
    label: str,
    deadline: float,
) -> list[Sample]:
    """Samples of `progress` and of each process's CPU until `total` is done or the `deadline`
    (monotonic) passes; raises `BenchError` if a process exits."""
    samples: list[Sample] = []
    next_report = time.monotonic() + 5
    while True:
        for process in processes:
            if process.poll() is not None:
                raise BenchError(
                    f"{label}: a process exited ({process.returncode}):\n{bench.log_tail(process)}"
                )
        done = progress()
        now = time.monotonic()
        samples.append(Sample(now, done, tuple(cpu_seconds(p.pid) for p in processes)))
        if done >= total:
            return samples
        if now > deadline:
            bench.say(f"  {label}: {done:,} of {total:,} done when its time was up")
            return samples
        if now >= next_report:
            bench.say(f"  {label}: {done:>9,} of {total:,} done")
            next_report = now + 5
        time.sleep(SAMPLE_EVERY)


# --- the phases ----------------------------------------------------------------------------------


def publish_catalog(producer: UsageProducer, subscriptions: int) -> None:
    """A sum metric, a plan charging it (standard) with a fixed and a recurring threshold, and
    `subscriptions` subscriptions on it, all timestamped now."""
    producer.send_definition(
        "billable_metric", {"code": METRIC, "aggregation_type": "sum_agg", "field_name": METRIC}
    )
    producer.send_definition(
        "plan",
        {
            "code": PLAN,
            "interval": "monthly",
            "amount_cents": 1500,
            "amount_currency": "USD",
            "charges": [
                {
                    "billable_metric_code": METRIC,
                    "charge_model": "standard",
                    "properties": {"amount": "0.001"},
                }
            ],
            "usage_thresholds": [
                {"amount_cents": 2000},
                {"amount_cents": 5000, "recurring": True},
            ],
        },
    )
    for index in range(subscriptions):
        producer.send_subscription(
            {
                "external_id": f"sub-{index}",
                "external_customer_id": f"cus-{index}",
                "plan_code": PLAN,
            }
        )
    producer.flush()


def usage_events(first: int, count: int, subscriptions: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(first)
    for index in range(first, first + count):
        yield {
            "transaction_id": f"tx-{index}",
            "external_subscription_id": f"sub-{rng.randrange(subscriptions)}",
            "code": METRIC,
            "properties": {METRIC: rng.randrange(1, 400)},
        }


def produce_backlog(bench: Bench, events: int, subscriptions: int) -> float:
    """Events/s at which the backlog was produced (and acknowledged)."""
    started = time.perf_counter()
    config = {"linger.ms": 20, "batch.size": 1 << 20, "queue.buffering.max.messages": 500_000}
    with UsageProducer(bench.settings.kafka_bootstrap, bench.topics, config=config) as producer:
        for count, event in enumerate(usage_events(0, events, subscriptions), 1):
            producer.send_event(event)
            if count % 50_000 == 0:
                bench.say(f"  produced {count:>9,} events")
        producer.flush(120)
    return events / (time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class Ceiling:
    messages: int
    rate: float
    cpu_per_message: float


def measure_ceiling(bench: Bench, total: int) -> Ceiling:
    """A bare consumer reads the usage-events topic from the start and decodes every message;
    timed from the first message to the last (the connection set-up left out)."""
    settings = bench.settings
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{bench.tag}-ceiling",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": settings.max_message_bytes + (1 << 20),
        }
    )
    topic = bench.topics.usage_events
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
    )
    count = 0
    started = cpu_started = 0.0
    deadline = time.monotonic() + 300
    try:
        while count < total:
            if time.monotonic() > deadline:
                raise BenchError(f"the ceiling consumer read {count:,} of {total:,} messages")
            messages = consumer.consume(1000, timeout=1.0)
            if messages and not count:
                started, cpu_started = time.perf_counter(), time.process_time()
            for message in messages:
                if message.error() is not None:
                    raise BenchError(f"the ceiling consumer failed: {message.error()}")
                decode_ledger_input(message.value(), max_bytes=settings.max_message_bytes)
            count += len(messages)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        consumer.close()
    return Ceiling(count, count / seconds, cpu / count)


@dataclass(frozen=True, slots=True)
class Drain:
    window: Window
    done: int  # messages done at the end: the whole backlog, or less if time was up
    total: int

    @property
    def drained(self) -> bool:
        return self.done >= self.total


def drain(
    bench: Bench,
    processes: Sequence[subprocess.Popen[bytes]],
    progress: Callable[[], int],
    total: int,
    label: str,
    budget: float,
) -> Drain:
    """Follow `processes` draining the backlog for at most `budget` seconds from now (their
    start); the rate is that of the middle of what they did."""
    samples = follow(bench, processes, progress, total, label, time.monotonic() + budget)
    done = samples[-1].done
    window = middle_window(samples, min(done, total))
    if window is None:
        raise BenchError(f"{label}: too little progress in {budget:.0f} s to measure a rate")
    return Drain(window, done, total)


@dataclass(frozen=True, slots=True)
class Latency:
    events: int
    sent_per_s: float
    p50: float | None  # None: among the events not processed by the end
    p99: float | None
    behind_at_start: int  # messages the worker had still to process when the phase began
    unprocessed: int  # ... and when it ended
    cores: float | None


def measure_latency(
    bench: Bench,
    processes: Sequence[subprocess.Popen[bytes]],
    rate: float,
    first: int,
    subscriptions: int,
) -> Latency:
    """`processes`: the intake and the worker (the worker last: its cores are reported)."""
    port = bench.worker_port
    count = max(int(rate * LATENCY_SECONDS), 1)
    watch = GroupWatch(bench, f"{bench.tag}-probe")
    behind = watch.high_watermarks() - applied(port)
    before = histogram_buckets(scrape(port), LATENCY_HISTOGRAM)
    worker = processes[-1]
    cpu_before, sent = cpu_seconds(worker.pid), 0
    with UsageProducer(bench.settings.kafka_bootstrap, bench.topics) as producer:
        events = usage_events(first, count, subscriptions)
        started = time.monotonic()
        next_report = started + 5
        while sent < count:
            now = time.monotonic()
            due = min(count, int((now - started) * rate) + 1)
            for event in events:
                producer.send_event(event)  # timestamped now: the time of sending
                sent += 1
                if sent >= due:
                    break
            if now >= next_report:
                bench.say(f"  sent {sent:>9,} of {count:,} at {sent / (now - started):,.0f}/s")
                next_report = now + 5
            time.sleep(max(started + sent / rate - time.monotonic(), 0.001))
        sending = time.monotonic() - started
        cpu_sent = cpu_seconds(worker.pid)
        producer.flush()
    try:
        total = watch.high_watermarks()
        deadline = time.monotonic() + CATCH_UP_BUDGET
        follow(bench, processes, lambda: applied(port), total, "pipeline", deadline)
    finally:
        watch.close()
    delta = bucket_deltas(before, histogram_buckets(scrape(port), LATENCY_HISTOGRAM))
    observed = round(delta[-1][1]) if delta else 0
    unprocessed = max(behind + count - observed, 0)
    cores = None if cpu_before is None or cpu_sent is None else (cpu_sent - cpu_before) / sending
    return Latency(
        count,
        count / sending,
        histogram_quantile(delta, 0.5, unobserved=unprocessed),
        histogram_quantile(delta, 0.99, unobserved=unprocessed),
        behind,
        unprocessed,
        cores,
    )


# --- one run ---------------------------------------------------------------------------------


def run(
    base: Settings,
    *,
    events: int,
    subscriptions: int,
    rate: float,
    partitions: int | None,
    out: TextIO,
    err: TextIO,
    large_subscriptions: int = LARGE_SUBSCRIPTIONS,
) -> dict[str, Any]:
    """Both cases; the JSON's top-level figures are the first case's, `large` the second's."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_case(base, events, subscriptions, [rate], partitions, err)
        if large_subscriptions:
            large_events = max(events, 3 * large_subscriptions)
            large = run_case(base, large_events, large_subscriptions, [], partitions, err)
            result["large"] = {k: v for k, v in large.items() if k not in ("bench", "latency")}
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_table(result, out)
    print(json.dumps(result), file=out, flush=True)
    return result


def run_case(
    base: Settings,
    events: int,
    subscriptions: int,
    rates: list[float],
    partitions: int | None,
    err: TextIO,
) -> dict[str, Any]:
    bench = Bench.create(base, partitions, err)
    settings = bench.settings
    try:
        bench.say(
            f"{bench.tag}: {events:,} events, {subscriptions:,} subscriptions, "
            f"{settings.partitions} partitions, run folder {bench.run_dir}"
        )
        ensure_topics_for(settings)
        with UsageProducer(settings.kafka_bootstrap, bench.topics) as producer:
            publish_catalog(producer, subscriptions)
        produced = produce_backlog(bench, events, subscriptions)
        probe = GroupWatch(bench, f"{bench.tag}-probe")
        total = probe.high_watermarks()
        probe.close()
        bench.say(f"backlog: {total:,} messages ({produced:,.0f} events/s produced)")

        ceiling = measure_ceiling(bench, total)
        bench.say(f"ceiling: {ceiling.rate:,.0f} messages/s (consume + decode, one process)")

        bench.say("intake + worker: draining the backlog…")
        intake = bench.start(
            ["-m", "pipeline.cli", "intake"], "intake", TOLLGATE_METRICS_PORT=str(bench.intake_port)
        )
        worker = bench.start(["-m", "pipeline.cli", "worker", "--clock", "records"], "worker")
        stages = [intake, worker]
        port = bench.worker_port
        bench.groups += [settings.intake_group, settings.worker_app_id]
        drained = drain(bench, stages, lambda: applied(port), total, "pipeline", WORKER_BUDGET)
        sustained = drained.window
        bench.say(f"pipeline: {sustained.rate:,.0f} events/s sustained")
        worker_metrics, intake_metrics = scrape(port), scrape(bench.intake_port)
        writes = counter(worker_metrics, "tollgate_worker_changelog_writes_total")
        states = counter(worker_metrics, "tollgate_worker_states_written_total")
        rss = peak_rss(worker.pid)

        latencies: list[Latency] = []
        for phase_rate in [*rates, *([HIGH_RATE] if rates and sustained.rate >= HIGH_RATE else [])]:
            bench.say(f"latency: {phase_rate:,.0f} events/s for {LATENCY_SECONDS:.0f} s…")
            first = events + sum(latency.events for latency in latencies)
            latencies.append(measure_latency(bench, stages, phase_rate, first, subscriptions))
        final = scrape(port)
        for process in stages:
            bench.stop(process)
    finally:
        bench.close()

    result: dict[str, Any] = {
        "bench": "pipeline",
        "events": events,
        "subscriptions": subscriptions,
        "partitions": settings.partitions,
        "sustained_events_per_s": round(sustained.rate),
        "worker_cpu_us_per_event": _micro(sustained.cpu_per_message(1)),
        "worker_cpu_cores": _round(sustained.cores(1), 2),
        "intake_cpu_us_per_event": _micro(sustained.cpu_per_message(0)),
        "intake_cpu_cores": _round(sustained.cores(0), 2),
        "worker_drained": drained.drained,
        "worker_rss_mib": _round(None if rss is None else rss / 2**20, 1),
        "batch_messages_mean": _round(mean(intake_metrics, BATCH_HISTOGRAM), 1),
        "changelog_writes_per_event": _round(writes / max(drained.done, 1), 4),
        "states_written_per_event": _round(states / max(drained.done, 1), 4),
        "ceiling_events_per_s": round(ceiling.rate),
        "ceiling_cpu_us_per_event": _micro(ceiling.cpu_per_message),
        "ratio_to_ceiling": round(sustained.rate / ceiling.rate, 3),
        "thresholds_crossed": round(counter(final, "tollgate_worker_thresholds_crossed_total")),
    }
    if latencies:
        result.update(_latency_figures(rates[0], latencies[0]))
        result["latency"] = [
            {"rate": r, **_latency_figures(r, phase)}
            for r, phase in zip([*rates, HIGH_RATE], latencies, strict=False)
        ]
    return result


def _latency_figures(rate: float, latency: Latency) -> dict[str, Any]:
    return {
        "latency_rate": rate,
        "latency_sent_per_s": round(latency.sent_per_s),
        "latency_events": latency.events,
        "latency_behind_at_start": latency.behind_at_start,
        "latency_unprocessed": latency.unprocessed,
        "latency_worker_cores": _round(latency.cores, 2),
        "p50_ms": _round(None if latency.p50 is None else latency.p50 * 1000, 1),
        "p99_ms": _round(None if latency.p99 is None else latency.p99 * 1000, 1),
    }


def peak_rss(pid: int) -> int | None:
    """A process's peak resident set size in bytes (VmHWM, Linux); else None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _micro(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e6, 1)


def print_table(result: dict[str, Any], out: IO[str]) -> None:
    def show(value: Any, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:,}{unit}"

    def quantile(latency: dict[str, Any], name: str) -> str:
        value = latency[f"{name}_ms"]
        return f"{name} > {CATCH_UP_BUDGET:.0f} s" if value is None else f"{name} {value:,} ms"

    def case(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
        part = "" if figures["worker_drained"] else f"; time up after {WORKER_BUDGET:.0f} s"
        return [
            (
                f"{figures['subscriptions']:,} subscriptions",
                f"{show(figures['sustained_events_per_s'])} events/s",
                f"middle 80% of {figures['events']:,} events; ratio to ceiling "
                f"{figures['ratio_to_ceiling']:.3f} (ceiling "
                f"{show(figures['ceiling_events_per_s'])}/s){part}",
            ),
            (
                "  CPU",
                f"worker {show(figures['worker_cpu_us_per_event'])} µs/event",
                f"{show(figures['worker_cpu_cores'])} cores; intake "
                f"{show(figures['intake_cpu_us_per_event'])} µs/event, "
                f"{show(figures['intake_cpu_cores'])} cores",
            ),
            (
                "  state",
                f"{show(figures['changelog_writes_per_event'])} writes/event",
                f"{show(figures['states_written_per_event'])} states/event; worker peak RSS "
                f"{show(figures['worker_rss_mib'])} MiB; "
                f"{show(figures['batch_messages_mean'])} messages per batch",
            ),
        ]

    rows = case(result)
    for latency in result.get("latency", []):
        unprocessed = latency["latency_unprocessed"]
        rows.append(
            (
                f"  latency at {latency['rate']:,g}/s",
                f"{quantile(latency, 'p50')}, {quantile(latency, 'p99')}",
                f"{latency['latency_events']:,} events sent at "
                f"{latency['latency_sent_per_s']:,}/s"
                + (f", {unprocessed:,} not processed" if unprocessed else "")
                + f"; worker {show(latency['latency_worker_cores'])} cores",
            )
        )
    if "large" in result:
        rows += case(result["large"])
    print(f"pipeline (intake + worker), {result['partitions']} partitions", file=out)
    for name, figure, note in rows:
        print(f"  {name:<24}{figure:<30}  {note}".rstrip(), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--subscriptions", type=int, default=1_000)
    parser.add_argument(
        "--large-subscriptions",
        type=int,
        default=LARGE_SUBSCRIPTIONS,
        help="subscriptions of the second case (0: skip it)",
    )
    parser.add_argument(
        "--rate", type=float, default=5_000, help="events/s sent during the latency phase"
    )
    parser.add_argument(
        "--partitions", type=int, help="partitions of the topics [default: TOLLGATE_PARTITIONS]"
    )
    args = parser.parse_args(argv)
    if min(args.events, args.subscriptions, args.partitions or 1) < 1 or args.rate <= 0:
        parser.error("--events, --subscriptions, --partitions and --rate must be positive")
    if args.large_subscriptions < 0:
        parser.error("--large-subscriptions must be 0 or more")
    try:
        run(
            Settings.from_env(),
            events=args.events,
            subscriptions=args.subscriptions,
            rate=args.rate,
            partitions=args.partitions,
            out=sys.stdout,
            err=sys.stderr,
            large_subscriptions=args.large_subscriptions,
        )
    except TollgateError as exc:
        sys.exit(f"error: {exc}")
    return 0
