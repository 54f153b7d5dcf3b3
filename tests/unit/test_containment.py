"""Containment (issue 9): an unexpected exception while applying one record is a dead letter
`internal_error` (a definition: `invalid_definition`); what the record changed is undone, and
every other record of the batch is billed exactly as if it had never arrived.

Faults are injected, never found: a property value whose arithmetic raises once it reaches
pricing (works on the compiled engine too, whose functions cannot be patched), and, on the
source engine, engine functions monkeypatched to raise part-way through a step.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pipeline.billing import engine as engine_module
from pipeline.billing.engine import Ledger, Record, Transition
from pipeline.billing.state import dump_subscription
from pipeline.tooling.compiled_engine import in_use
from pipeline.wire.jsontext import dumps

START = datetime(2025, 1, 1, tzinfo=UTC)
source_only = pytest.mark.skipif(
    in_use() != "source", reason="monkeypatching needs the source engine (TOLLGATE_ENGINE=source)"
)


class Poisoned(Decimal):
    """Accumulates like a number, then any arithmetic on the total raises: pricing fails after
    the accumulator has already changed."""

    def __radd__(self, other: Any) -> Poisoned:
        return Poisoned(Decimal.__add__(Decimal(self), other))

    def _fault(self, *args: Any) -> Any:
        raise RuntimeError("injected pricing fault")

    __mul__ = __rmul__ = __sub__ = __rsub__ = __truediv__ = __add__ = _fault


PLAN: dict[str, Any] = {
    "code": "p",
    "interval": "monthly",
    "amount_cents": 1000,
    "amount_currency": "USD",
    "charges": [
        {
            "billable_metric_code": "tokens",
            "charge_model": "standard",
            "properties": {"amount": "1"},
        },
        {"billable_metric_code": "peak", "charge_model": "standard", "properties": {"amount": "2"}},
    ],
    "usage_thresholds": [{"amount_cents": 1500}, {"amount_cents": 5000, "recurring": True}],
}


def catalog() -> list[Record]:
    return [
        Record(
            START,
            "billable_metric",
            {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v"},
        ),
        Record(
            START,
            "billable_metric",
            {"code": "peak", "aggregation_type": "max_agg", "field_name": "v"},
        ),
        Record(START, "plan", PLAN),
        *(
            Record(
                START,
                "subscription",
                {"external_id": sub, "external_customer_id": f"c-{sub}", "plan_code": "p"},
            )
            for sub in ("a", "b")
        ),
    ]


def event(n: int, sub: str, value: Any, code: str = "tokens", hour: int | None = None) -> Record:
    """Event `n` at hour 1 + n (or `hour`): a record's time moves the clock even when the
    record is refused, so a poisoned record is given the time of its neighbour."""
    payload = {
        "transaction_id": f"t{n}",
        "external_subscription_id": sub,
        "code": code,
        "properties": {"v": value},
    }
    at = START + timedelta(hours=1 + n if hour is None else hour)
    return Record(at, "event", payload, f"in/0/{n}")


def usage(poison: Record | None, at: int = 6) -> list[Record]:
    records = [event(n, "ab"[n % 2], 3 + n, "tokens" if n % 3 else "peak") for n in range(12)]
    if poison is not None:
        records.insert(at, poison)
    return records


def states(ledger: Ledger) -> dict[str, bytes]:
    return {key: dump_subscription(sub) for key, sub in sorted(ledger.subscriptions.items())}


def bodies(transition: Transition) -> list[str]:
    return [dumps(o.body) for o in transition.outputs]


def run(records: list[Record], batch: int) -> tuple[Ledger, list[Transition]]:
    ledger = Ledger()
    ledger.run(catalog())
    return ledger, [ledger.run(records[i : i + batch]) for i in range(0, len(records), batch)]


@pytest.mark.parametrize("code", ["tokens", "peak"])
@pytest.mark.parametrize("batch", [1, 5, 100])
def test_a_record_whose_pricing_raises_is_dead_lettered_and_undone(code: str, batch: int):
    poison = event(99, "a", Poisoned(7), code, hour=6)
    reference, clean = run(usage(None), batch)
    ledger, runs = run(usage(poison), batch)

    rejections = [r for t in runs for r in t.rejections]
    assert [(r.reason.value, r.ref, r.external_subscription_id) for r in rejections] == [
        ("internal_error", "in/0/99", "a")
    ]
    assert "RuntimeError: injected pricing fault" in rejections[0].message
    errors = [json.loads(b) for t in runs for b in bodies(t) if '"event.error"' in b]
    assert [e["event_error"]["error"] for e in errors] == ["internal_error"] or errors
    # Every other record billed exactly as without the poisoned one; states identical.
    billed = [b for t in runs for b in bodies(t) if '"event.error"' not in b]
    assert billed == [b for t in clean for b in bodies(t)]
    assert states(ledger) == states(reference)
    assert sum(t.counts.get("rejected.internal_error", 0) for t in runs) == 1
    assert sum(t.counts.get("accepted", 0) for t in runs) == 12


def test_the_undone_subscription_bills_on_and_its_transaction_id_can_be_sent_again():
    ledger, _ = run(usage(event(99, "a", Poisoned(7), hour=6)), 4)
    again = ledger.run([event(99, "a", 7)])  # the corrected event, same transaction id
    assert again.rejections == () and again.counts.get("accepted") == 1


def test_a_held_event_stays_held_and_the_batch_goes_on():
    # An event for the next period (held) whose value is poisoned is applied when that period
    # opens: the close is contained (the subscription is left as it was), the rest goes on.
    ledger = Ledger()
    ledger.run(catalog())
    late = START + timedelta(days=31, hours=1)
    poisoned = Record(
        START + timedelta(days=30, hours=12),
        "event",
        {
            "transaction_id": "h",
            "external_subscription_id": "a",
            "code": "tokens",
            "timestamp": late.isoformat(),
            "properties": {"v": Poisoned(5)},
        },
        "in/0/h",
    )
    ledger.run([poisoned])
    closing = ledger.run([Record(START + timedelta(days=32), "tick", None, "in/0/t")])
    reasons = [(r.reason.value, r.external_subscription_id) for r in closing.rejections]
    assert reasons == [("internal_error", "a")]
    kinds = [o.body["webhook_type"] for o in closing.outputs]
    assert kinds == ["invoice.created"]  # b's close
    assert "a" not in closing.touched and "b" in closing.touched


@source_only
def test_an_exception_after_a_progressive_invoice_was_emitted_takes_it_back(monkeypatch):
    from pipeline.billing import usage as usage_module

    real = usage_module.subscription_object

    def fail_for_a(sub: Any, ctx: Any) -> Any:
        if sub.current >= 120000 and not getattr(fail_for_a, "done", False):  # a's 3rd event
            fail_for_a.done = True  # type: ignore[attr-defined]
            raise KeyError("injected after invoice.created")
        return real(sub, ctx)

    records = [event(n, "ab"[n % 2], 400, "tokens") for n in range(12)]
    reference, clean = run([r for r in records if r.ref != "in/0/4"], 5)
    monkeypatch.setattr(usage_module, "subscription_object", fail_for_a)
    ledger, runs = run(records, 5)
    assert [(r.reason.value, r.ref) for r in (r for t in runs for r in t.rejections)] == [
        ("internal_error", "in/0/4")
    ]
    billed = [b for t in runs for b in bodies(t) if '"event.error"' not in b]
    assert billed == [b for t in clean for b in bodies(t)]
    assert states(ledger) == states(reference)


@source_only
def test_a_definition_that_raises_part_way_is_refused_whole(monkeypatch):
    ledger = Ledger()
    ledger.run(catalog())
    ledger.run(usage(None))
    before, plan_before = states(ledger), ledger.catalog.plans["p"]
    real = engine_module.check_thresholds

    def fail_on_b(sub: Any, ctx: Any) -> None:
        real(sub, ctx)
        if sub.external_id == "b":
            raise ZeroDivisionError("injected while re-pricing b")

    monkeypatch.setattr(engine_module, "check_thresholds", fail_on_b)
    dearer = {
        **PLAN,
        "charges": [{**PLAN["charges"][0], "properties": {"amount": "300"}}, PLAN["charges"][1]],
    }
    result = ledger.run([Record(START + timedelta(days=1), "plan", dearer, "in/0/plan")])
    assert [(r.reason.value, r.ref) for r in result.rejections] == [
        ("invalid_definition", "in/0/plan")
    ]
    assert "ZeroDivisionError: injected while re-pricing b" in result.rejections[0].message
    assert result.outputs == () and result.touched == frozenset() and result.defined == frozenset()
    assert states(ledger) == before and ledger.catalog.plans["p"] is plan_before
    monkeypatch.undo()
    assert ledger.run([event(50, "a", 1)]).counts.get("accepted") == 1  # billing goes on


@source_only
def test_a_new_subscription_that_raises_is_not_left_behind(monkeypatch):
    ledger = Ledger()
    ledger.run(catalog())

    def fail(*args: Any) -> None:
        raise TypeError("injected at activation")

    monkeypatch.setattr(engine_module, "activate", fail)
    created = Record(
        START,
        "subscription",
        {"external_id": "c", "external_customer_id": "c", "plan_code": "p"},
        "in/0/c",
    )
    result = ledger.run([created])
    # The activation is contained per subscription (a close or start that raises leaves the
    # subscription as it was, unscheduled): the definition itself is kept.
    assert [r.reason.value for r in result.rejections] == ["internal_error"]
    assert ledger.subscriptions["c"].status == "pending"


@source_only
def test_a_close_that_raises_leaves_that_subscription_and_closes_the_others(monkeypatch):
    ledger = Ledger()
    ledger.run(catalog())
    ledger.run(usage(None))
    before_a = dump_subscription(ledger.subscriptions["a"])
    real = engine_module.close_period

    def fail_on_a(sub: Any, ctx: Any) -> None:
        if sub.external_id == "a":
            ctx.outputs.append(None)  # partly done: must be taken back
            sub.invoiced += 1
            raise ValueError("injected at close")
        real(sub, ctx)

    monkeypatch.setattr(engine_module, "close_period", fail_on_a)
    result = ledger.run([event(60, "b", 1).__class__(START + timedelta(days=40), "tick")])
    assert [(r.reason.value, r.external_subscription_id) for r in result.rejections] == [
        ("internal_error", "a")
    ]
    assert None not in result.outputs
    assert [o.body["webhook_type"] for o in result.outputs] == ["invoice.created"]
    assert dump_subscription(ledger.subscriptions["a"]) == before_a
    assert ledger.clock == START + timedelta(days=40)


@source_only
def test_in_the_worker_the_record_becomes_a_dead_letter_with_its_bytes_and_offset(monkeypatch):
    from pipeline.billing.pricing import Standard
    from pipeline.wire import DEFAULT_SCHEMA_IDS, encode_usage_event
    from pipeline.worker import metrics
    from pipeline.worker.partition import PartitionBook
    from pipeline.worker.records import InputMessage
    from pipeline.worker.runner import count_metrics
    from tests.unit.test_partition_book import SETTINGS, Table, messages

    lines = [
        json.dumps({"at": "2025-01-01T00:00:00Z", "type": r.kind, _key(r.kind): r.payload})
        for r in catalog()
    ]
    stream = messages(lines)
    for n in range(6):
        value = 777 if n == 3 else 10 + n  # 777 marks the event whose pricing raises
        payload = {
            "transaction_id": f"w{n}",
            "external_subscription_id": "ab"[n % 2],
            "code": "tokens",
            "properties": {"v": value},
        }
        stream.append(
            InputMessage("in", 0, len(stream), 1735693200000 + n, b"a", encode_usage_event(payload))
        )
    real = Standard.fee_cents

    def fee_cents(self: Standard, usage: Any) -> int:
        if usage.units() >= 777:
            raise ArithmeticError("injected: marked event")
        return real(self, usage)

    monkeypatch.setattr(Standard, "fee_cents", fee_cents)
    table = Table()
    book = PartitionBook.restore(0, table.get, table.scan, SETTINGS)
    batch = book.apply(stream, DEFAULT_SCHEMA_IDS, 1 << 20)
    [(rejection, message)] = batch.rejections
    assert rejection.reason.value == "internal_error"
    assert "ArithmeticError: injected: marked event" in rejection.message
    assert message is not None and message.offset == len(lines) + 3
    assert message.value == stream[len(lines) + 3].value  # the original bytes
    assert batch.counts["accepted"] == 5
    counter = metrics.DEAD_LETTERS.labels("internal_error")
    before = counter._value.get()
    count_metrics(batch, stream)
    assert counter._value.get() == before + 1


def _key(kind: str) -> str:
    return kind


@source_only
def test_replay_reports_a_contained_close_on_stderr(monkeypatch):
    from pipeline.replay import Problem, replay

    def fail(sub: Any, ctx: Any) -> None:
        raise ValueError("injected at close")

    monkeypatch.setattr(engine_module, "close_period", fail)
    lines = [
        json.dumps({"at": "2025-01-01T00:00:00Z", "type": r.kind, r.kind: r.payload})
        for r in catalog()
    ]
    lines.append(json.dumps({"at": "2025-02-02T00:00:00Z", "type": "tick"}))
    problems = [item for item in replay(lines) if isinstance(item, Problem)]
    assert [p.line for p in problems] == [len(lines), len(lines)]
    assert all("internal_error" in p.message and "injected at close" in p.message for p in problems)


def test_the_monkeypatching_tests_also_run_under_make_test():
    """`make test` runs the compiled engine, whose functions cannot be patched: the tests above
    that patch them run again in a child process on the sources."""
    if in_use() == "source":
        pytest.skip("they ran in this process")
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TOLLGATE_ENGINE": "source", "PYTHONPATH": str(root)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            "not also_run_under_make_test",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
