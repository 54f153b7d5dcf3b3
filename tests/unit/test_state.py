"""State round trips: what the worker stores is what it continues from."""

from __future__ import annotations

from pathlib import Path

from pipeline.billing.catalog import Catalog
from pipeline.billing.engine import Ledger
from pipeline.billing.state import (
    dump_clock,
    dump_definition,
    dump_subscription,
    load_catalog,
    load_clock,
    load_subscription,
)
from pipeline.replay import parse_record

EXAMPLES = Path(__file__).parents[2] / "examples"


def ledger_after(name: str) -> Ledger:
    ledger = Ledger()
    lines = (EXAMPLES / name).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        ledger.step(parse_record(line, number))
    return ledger


def test_subscription_state_round_trips_byte_for_byte():
    ledger = ledger_after("ai_tokens_recurring.jsonl")
    for sub in ledger.subscriptions.values():
        stored = dump_subscription(sub)
        assert dump_subscription(load_subscription(stored)) == stored


def stored_definitions(catalog: Catalog) -> list[bytes]:
    keys = [("billable_metric", code) for code in catalog.metrics]
    keys += [("plan", code) for code in catalog.plans]
    keys += [("customer", external_id) for external_id in catalog.customers]
    return [dump_definition(catalog, kind, key) for kind, key in keys]


def test_clock_and_catalog_round_trip_in_any_order():
    ledger = ledger_after("api_graduated_override.jsonl")
    assert ledger.catalog.customers, "the example defines a customer"
    assert load_clock(dump_clock(ledger.clock)) == ledger.clock
    stored = stored_definitions(ledger.catalog)
    catalog = load_catalog(reversed(stored))  # plans before their metrics: still loads
    assert catalog.metrics == ledger.catalog.metrics
    assert catalog.plans == ledger.catalog.plans
    assert catalog.customers == ledger.catalog.customers
    assert sorted(stored_definitions(catalog)) == sorted(stored)


def test_a_restored_ledger_continues_exactly_like_the_original():
    lines = (EXAMPLES / "ai_tokens_recurring.jsonl").read_text().splitlines()
    records = [parse_record(line, n) for n, line in enumerate(lines, start=1)]
    whole = Ledger()
    expected = [o.body for r in records for o in whole.step(r).outputs]
    first = Ledger()
    produced = [o.body for r in records[:7] for o in first.step(r).outputs]
    clock = load_clock(dump_clock(first.clock))
    catalog = load_catalog(stored_definitions(first.catalog))
    subs = [load_subscription(dump_subscription(s)) for s in first.subscriptions.values()]
    second = Ledger.restore(None, clock, catalog, subs)
    produced += [o.body for r in records[7:] for o in second.step(r).outputs]
    assert produced == expected


def test_a_termination_reports_only_its_own_errors_within_a_batch():
    from pipeline.billing.engine import Record
    from pipeline.billing.timestamps import parse_instant

    lines = (EXAMPLES / "ai_tokens_recurring.jsonl").read_text().splitlines()[:4]
    records = [parse_record(line, n) for n, line in enumerate(lines, start=1)]
    at = parse_instant("2025-03-05T00:00:00Z")
    bad = Record(
        at,
        "event",
        {"transaction_id": "x", "external_subscription_id": "sub-acme", "code": "nope"},
        "bad",
    )
    end = Record(at, "terminate_subscription", "sub-acme", "end")
    one_by_one = Ledger()
    singles = [o.id for r in [*records, bad, end] for o in one_by_one.step(r).outputs]
    batched = Ledger()
    together = [o.id for o in batched.run([*records, bad, end]).outputs]
    assert together == singles
