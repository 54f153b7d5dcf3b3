"""Shared by the sink tests: a private stack slice per test (topic prefix, consumer groups,
PostgreSQL schema), outputs from replayed timelines published the way the worker does, sink
subprocesses, and polling with a deadline."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.billing.webhooks import Output
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.replay import replay
from pipeline.wire import OutputRecord, encode_output
from sinks.common.db import connect
from sinks.common.migrate import migrate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TOLLGATE = Path(sys.executable).parent / "tollgate"

T = TypeVar("T")


@dataclass(frozen=True)
class Slice:
    """One test's own topics, schema and settings; `env` runs `tollgate` against them."""

    settings: Settings
    topics: Topics
    schema: str
    logs: Path
    started: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def group(self, kind: str) -> str:
        """A consumer group of this test's own (never the shared default ones)."""
        return f"{self.topics.outputs}.{kind}"

    def env(self, **overrides: str) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env(), **overrides}

    def query(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with connect(self.settings.database_url, self.schema, autocommit=True) as conn:
            return conn.execute(text, params).fetchall()  # type: ignore[arg-type]

    def scalar(self, text: str, params: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row; None while PostgreSQL does not answer."""
        try:
            rows = self.query(text, params)
        except psycopg.OperationalError:
            return None
        return rows[0][0] if rows else None

    def tollgate(self, *args: str, **env: str) -> str:
        """Run a short `tollgate` command to completion; its stdout."""
        result = subprocess.run(
            [str(TOLLGATE), *args], env=self.env(**env), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"tollgate {' '.join(args)}: {result.stderr}"
        return result.stdout

    def add_endpoint(self, url: str, *options: str) -> tuple[int, str]:
        """`tollgate webhooks add`: the new endpoint's id and secret."""
        out = self.tollgate("webhooks", "add", url, *options)
        found = re.search(r"^id\s+(\d+)$.*^secret\s+(whsec_\S+)$", out, flags=re.M | re.S)
        assert found, out
        return int(found[1]), found[2]

    def start(self, *args: str, name: str = "sink", **env: str) -> subprocess.Popen[bytes]:
        """Start a long-running `tollgate` command; its output goes to `<logs>/<name>.log`."""
        assert args[0] != "sink" or "--group" in args, "a sink under test needs its own --group"
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                [str(TOLLGATE), *args], env=self.env(**env), stdout=log, stderr=subprocess.STDOUT
            )
        self.started.append(process)
        return process

    def kill_leftovers(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    def log_text(self, name: str = "sink") -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def stack_slice(
    settings: Settings,
    kafka_admin: AdminClient,
    database_url: str,
    new_schema: str,
    tmp_path: Path,
) -> Iterator[Slice]:
    """Topics `<uuid prefix>outputs` (4 partitions) and `dead-letters`, a migrated schema."""
    prefix = f"test-{uuid.uuid4().hex[:12]}."
    topics = Topics.with_prefix(prefix)
    names = {topics.outputs: 4, topics.dead_letters: 1}
    futures = kafka_admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in names.items()],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result()
    mine = dataclasses.replace(
        settings, topic_prefix=prefix, database_schema=new_schema, metrics_port=_free_port()
    )
    migrate(database_url, new_schema, echo=lambda _: None)
    stack = Slice(mine, topics, new_schema, tmp_path)
    try:
        yield stack
    finally:
        stack.kill_leftovers()
        for future in kafka_admin.delete_topics(list(names), operation_timeout=30).values():
            future.result()


def outputs_of(*timelines: str, folder: Path = EXAMPLES) -> list[OutputRecord]:
    """The outputs replaying each example timeline (or one of `folder`) gives, as the worker
    publishes them."""
    records: list[OutputRecord] = []
    for name in timelines:
        with (folder / name).open(encoding="utf-8") as lines:
            records += [_record(item) for item in replay(lines) if isinstance(item, Output)]
    return records


def _record(output: Output) -> OutputRecord:
    return OutputRecord(
        output.id,
        output.webhook_type,
        output.object_type,
        output.external_subscription_id,
        output.external_customer_id,
        output.body,
    )


def publish(bootstrap: str, topic: str, messages: Iterable[OutputRecord | bytes]) -> None:
    """Produce each output (Avro, keyed by external subscription id) or raw bytes, in order."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"}
    )
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(error)

    for message in messages:
        if isinstance(message, bytes):
            producer.produce(topic, key=b"garbage", value=message, on_delivery=on_delivery)
        else:
            key = (message.external_subscription_id or "").encode()
            producer.produce(topic, key=key, value=encode_output(message), on_delivery=on_delivery)
    assert producer.flush(30) == 0 and not failures, failures


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(every)


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, then wait; kill if it does not exit in time. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the sink did not stop within {timeout:g} s of SIGTERM")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
