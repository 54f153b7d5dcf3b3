"""`tollgate sink invoices` on the real broker and PostgreSQL: one row per invoice id whatever
is redelivered or killed, dead letters for bad messages, PostgreSQL restarts survived."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.kernel.settings import Settings
from pipeline.local.devstack.postgres import Postgres, find_bindir
from pipeline.local.settings import StackSettings
from pipeline.wire import OutputRecord, decode_dead_letter, loads
from tests.integration.sinks_support import (
    Slice,
    outputs_of,
    publish,
    stack_slice,
    stop,
    wait_for,
)
from tests.integration.webhook_receiver import Receiver, Route, receiver
from tests.lago_compat import assert_parses_with_lago_client

__all__ = ["receiver", "stack_slice"]  # fixtures, used by name

pytestmark = pytest.mark.integration

TIMELINES = ("ai_tokens_recurring.jsonl", "seats_credit_note.jsonl", "api_graduated_override.jsonl")
GARBAGE = b"not an avro output"


def _expected(records: list[OutputRecord]) -> tuple[dict[str, dict[str, object]], set[str]]:
    invoices = {
        r.body["invoice"]["lago_id"]: r.body["invoice"]
        for r in records
        if r.webhook_type == "invoice.created"
    }
    notes = {
        r.body["credit_note"]["lago_id"] for r in records if r.webhook_type == "credit_note.created"
    }
    return invoices, notes


def _stored_offsets(stack: Slice) -> int:
    return int(stack.scalar("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets") or 0)


def _dead_letters(stack: Slice) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.settings.kafka_bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(stack.topics.dead_letters, 0), timeout=10
        )
        consumer.assign([TopicPartition(stack.topics.dead_letters, 0, low)])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < high - low and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value() or b"")
        return values
    finally:
        consumer.close()


def test_each_invoice_is_stored_once_across_redelivery_and_kill_9(stack_slice: Slice) -> None:
    stack = stack_slice
    records = outputs_of(*TIMELINES)
    invoices, notes = _expected(records)
    # The same outputs ten times over (a worker replaying after a crash, twice a producer
    # retry...), with one message that is not an output at all.
    messages: list[OutputRecord | bytes] = [*records * 5, GARBAGE, *records * 5]
    publish(stack.settings.kafka_bootstrap, stack.topics.outputs, messages)
    group = stack.group("invoices")
    sink = ("sink", "invoices", "--idle-exit", "5", "--batch-size", "7", "--group", group)

    first = stack.start(*sink, name="first")
    wait_for(
        lambda: stack.scalar("SELECT count(*) FROM invoices"), timeout=60, what="a first batch"
    )
    first.kill()  # SIGKILL: no chance to finish the batch or close anything
    first.wait(10)
    assert _stored_offsets(stack) < len(messages), "the sink finished before it was killed"

    second = stack.start(*sink, name="second")
    metrics = _scrape(stack.settings.metrics_port)
    assert second.wait(60) == 0, stack.log_text("second")

    assert _stored_offsets(stack) == len(messages)
    stored = dict(stack.query("SELECT lago_id::text, body::text FROM invoices"))
    assert set(stored) == set(invoices)
    for lago_id, body in stored.items():
        assert loads(body) == invoices[lago_id]
    assert {row[0] for row in stack.query("SELECT lago_id::text FROM credit_notes")} == notes
    fees = sum(len(invoice["fees"]) for invoice in invoices.values())  # type: ignore[arg-type]
    assert stack.scalar("SELECT count(*) FROM invoice_fees") == fees
    applied = sum(len(i["applied_usage_thresholds"]) for i in invoices.values())  # type: ignore[arg-type]
    assert stack.scalar("SELECT count(*) FROM applied_usage_thresholds") == applied
    assert stack.scalar(
        "SELECT count(*) FROM invoices WHERE event_at > now() - interval '5 minutes'"
    ) == len(invoices)

    letters = [decode_dead_letter(value) for value in _dead_letters(stack)]
    assert letters, "the malformed message was not dead-lettered"
    assert {(d.reason, d.original, d.source_topic) for d in letters} == {
        ("malformed", GARBAGE, stack.topics.outputs)
    }
    assert "tollgate_sink_duplicates_skipped_total" in metrics
    assert 'tollgate_sink_rows_written_total{sink="invoices",table="invoices"}' in metrics
    assert "sink invoices:" in stack.log_text("second")


def test_the_invoice_commands_read_what_the_sink_stored(stack_slice: Slice) -> None:
    stack = stack_slice
    records = outputs_of("seats_credit_note.jsonl")
    invoices, _ = _expected(records)
    # Each output twice in a row: duplicates inside one batch are skipped too.
    twice = [record for record in records for _ in range(2)]
    publish(stack.settings.kafka_bootstrap, stack.topics.outputs, twice)
    sink = stack.start(
        "sink", "invoices", "--idle-exit", "2", "--metrics-port", "0", "--group", stack.group("i")
    )
    assert sink.wait(60) == 0, stack.log_text()

    listed = [
        json.loads(line) for line in stack.tollgate("invoices", "list", "--json").splitlines()
    ]
    assert {invoice["lago_id"] for invoice in listed} == set(invoices)
    table = stack.tollgate("invoices", "list", "--customer", "gamma")
    first = next(i for i in invoices.values() if i["sequential_id"] == 1)
    assert first["number"] in table and "66.00" in table
    assert stack.tollgate("invoices", "list", "--customer", "nobody").count("\n") == 1
    shown = stack.tollgate("invoices", "show", str(first["number"]))
    assert "Credit notes" in shown and "Usage thresholds crossed" in shown
    as_json = json.loads(stack.tollgate("invoices", "show", str(first["lago_id"]), "--json"))
    assert as_json["number"] == first["number"]
    for invoice in listed:  # what is stored still reads with Lago's own client (spec §10)
        assert_parses_with_lago_client({"object_type": "invoice", "invoice": invoice})


def test_the_sinks_ride_out_a_postgresql_restart(
    stack_slice: Slice, settings: Settings, receiver: Receiver
) -> None:
    stack = stack_slice
    postgres = Postgres(StackSettings.from_env())
    bindir = find_bindir()
    if postgres.managed_pid() is None or bindir is None:
        pytest.skip("PostgreSQL was not started by `tollgate dev up` from this run folder")
    records = outputs_of(*TIMELINES)
    invoices, _ = _expected(records)
    _, secret = stack.add_endpoint(receiver.url("/hook"))
    receiver.routes["/hook"] = route = Route(secret, lambda n: "ok")
    receiver.start()
    half = len(records) // 2
    fast = {"TOLLGATE_WEBHOOK_POLL_INTERVAL": "0.1", "TOLLGATE_SINK_BATCH_WAIT": "0.1"}
    sinks = [
        stack.start("sink", "invoices", "--batch-size", "2", "--metrics-port", "0",
                    "--group", stack.group("i"), name="invoices"),
        stack.start("sink", "webhooks", "--batch-size", "2", "--metrics-port", "0",
                    "--group", stack.group("w"), name="webhooks", **fast),
    ]  # fmt: skip
    try:
        publish(stack.settings.kafka_bootstrap, stack.topics.outputs, records[:half])
        wait_for(lambda: _stored_offsets(stack) == 2 * half, timeout=60, what="the first half")

        # Publish the second half while the server restarts under the sinks.
        late = threading.Thread(
            target=publish,
            args=(stack.settings.kafka_bootstrap, stack.topics.outputs, records[half:]),
        )
        _restart_postgres(postgres, bindir, start_meanwhile=late)
        late.join(30)

        everything = 2 * len(records)
        wait_for(lambda: _stored_offsets(stack) == everything, timeout=90, what="every output")
        wait_for(lambda: len(route.accepted) == len(records), timeout=60, what="every webhook")
    finally:
        for sink in sinks:
            assert stop(sink) == 0, stack.log_text("invoices") + stack.log_text("webhooks")
    assert {row[0] for row in stack.query("SELECT lago_id::text FROM invoices")} == set(invoices)
    assert set(route.accepted) == {record.id for record in records}
    assert route.bad_signatures == []
    assert "PostgreSQL unavailable" in stack.log_text("invoices")
    assert "PostgreSQL unavailable" in stack.log_text("webhooks")


def _restart_postgres(
    postgres: Postgres, bindir: Path, *, start_meanwhile: threading.Thread
) -> None:
    """`pg_ctl restart -m fast` on the local stack's cluster, as the user that owns it."""
    owner = postgres.data_dir.stat().st_uid
    command = [str(bindir / "pg_ctl"), "-D", str(postgres.data_dir), "restart", "-m", "fast", "-w"]
    if os.geteuid() == 0 and owner != 0:
        import pwd

        command = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--", *command]
    restart = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start_meanwhile.start()
    _, err = restart.communicate(timeout=60)
    assert restart.returncode == 0, err


def _scrape(port: int) -> str:
    def get() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                text: str = response.read().decode()
                return text if "tollgate_sink_rows_written_total{" in text else None
        except OSError:
            return None

    return wait_for(get, timeout=30, what=f"/metrics on port {port}")
