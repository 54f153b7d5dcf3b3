"""Properties of the engine over generated plans and event streams (hypothesis).

- batch size 1 and N give the same outputs;
- records with the same time may interleave in any order: per-subscription outputs are equal;
- a subscription's outputs depend on other subscriptions' records only through the clock;
- conservation: with no taxes, over a closed lifetime, what was invoiced (minus credit notes)
  equals the plan fees plus the usage of every closed period;
- a duplicate of an accepted event changes nothing;
- replaying twice gives byte-identical output, ids included.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.billing.engine import Ledger, Record
from pipeline.wire.jsontext import dumps

START = datetime(2025, 1, 1, tzinfo=UTC)
METRICS = [
    {"code": "calls", "aggregation_type": "count_agg"},
    {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v"},
    {"code": "peak", "aggregation_type": "max_agg", "field_name": "v"},
    {"code": "seats", "aggregation_type": "latest_agg", "field_name": "v"},
    {"code": "users", "aggregation_type": "unique_count_agg", "field_name": "u"},
]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ranges(data: st.DrawFn) -> list[dict[str, Any]]:
    bounds = sorted(data(st.lists(st.integers(1, 60), min_size=1, max_size=3, unique=True)))
    edges = [0, *bounds]
    out = []
    for index, low in enumerate(edges):
        high = edges[index + 1] if index + 1 < len(edges) else None
        out.append(
            {
                "from_value": low,
                "to_value": high,
                "per_unit_amount": data(st.sampled_from(["0", "0.5", "1", "2.25"])),
                "flat_amount": data(st.sampled_from(["0", "0", "3"])),
            }
        )
    return out


@st.composite
def charge(data: st.DrawFn, metric: dict[str, Any]) -> dict[str, Any]:
    models = ["standard", "package", "graduated", "volume"]
    if metric["aggregation_type"] in ("count_agg", "sum_agg"):
        models.append("percentage")
    model = data(st.sampled_from(models))
    if model == "standard":
        properties: dict[str, Any] = {"amount": data(st.sampled_from(["0.01", "1", "2.5"]))}
    elif model == "package":
        properties = {"amount": "5", "package_size": data(st.integers(1, 10)), "free_units": 2}
    elif model == "graduated":
        properties = {"graduated_ranges": ranges(data)}
    elif model == "volume":
        properties = {"volume_ranges": ranges(data)}
    else:
        properties = {
            "rate": data(st.sampled_from(["1", "12.5", "100"])),
            "fixed_amount": data(st.sampled_from(["0", "0.1"])),
            "free_units_per_events": data(st.integers(0, 3)),
            "free_units_per_total_aggregation": data(st.sampled_from([0, 5])),
        }
    return {"billable_metric_code": metric["code"], "charge_model": model, "properties": properties}


@st.composite
def timelines(data: st.DrawFn, *, terminate_all: bool = False) -> list[Record]:
    charged = data(st.lists(st.sampled_from(METRICS), min_size=1, max_size=4, unique_by=str))
    fixed = data(st.lists(st.integers(1, 300), max_size=3, unique=True))
    thresholds = [{"amount_cents": a} for a in fixed]
    if data(st.booleans()):
        thresholds.append({"amount_cents": data(st.integers(1, 200)), "recurring": True})
    plan = {
        "code": "p",
        "interval": data(st.sampled_from(["weekly", "monthly"])),
        "amount_cents": data(st.integers(0, 3000)),
        "amount_currency": "USD",
        "pay_in_advance": data(st.booleans()),
        "charges": [data(charge(metric)) for metric in charged],
        "usage_thresholds": thresholds,
    }
    records = [Record(START, "billable_metric", m) for m in METRICS]
    records.append(Record(START, "plan", plan))
    subscriptions = [f"s{i}" for i in range(data(st.integers(1, 3)))]
    for name in subscriptions:
        definition = {
            "external_id": name,
            "external_customer_id": f"c-{name}",
            "plan_code": "p",
            "billing_time": data(st.sampled_from(["calendar", "anniversary"])),
            "subscription_at": (START + timedelta(hours=data(st.integers(0, 200)))).isoformat(),
        }
        records.append(Record(START, "subscription", definition))
    at = START
    for index in range(data(st.integers(0, 60))):
        at += timedelta(hours=data(st.sampled_from([0, 0, 1, 7, 30, 100])))
        if data(st.integers(0, 9)) == 0:
            records.append(Record(at, "tick", None, f"r{index}"))
            continue
        if data(st.integers(0, 29)) == 0:
            ended = data(st.sampled_from(subscriptions))
            records.append(Record(at, "terminate_subscription", ended, f"r{index}"))
            continue
        metric = data(st.sampled_from(METRICS))
        event: dict[str, Any] = {
            "transaction_id": f"t{data(st.integers(0, 40))}",
            "external_subscription_id": data(st.sampled_from(subscriptions)),
            "code": metric["code"],
            "properties": {
                "v": data(st.sampled_from([0, 1, 3, "2.5", 40, -1])),
                "u": data(st.sampled_from(["a", "b", 1, "1.0", 7])),
            },
        }
        if data(st.booleans()):
            back = timedelta(hours=data(st.integers(-20, 60)))
            event["timestamp"] = (at - back).isoformat()
        records.append(Record(at, "event", event, f"r{index}"))
    if terminate_all:
        at += timedelta(days=1)
        records += [Record(at, "terminate_subscription", name) for name in subscriptions]
    return records


def run(records: list[Record], batch: int = 1) -> list[str]:
    ledger = Ledger()
    out: list[str] = []
    for start in range(0, len(records), batch):
        transition = ledger.run(records[start : start + batch])
        out += [dumps({"id": o.id, "body": o.body}) for o in transition.outputs]
    return out


def per_subscription(lines: list[str]) -> dict[str | None, list[str]]:
    grouped: dict[str | None, list[str]] = defaultdict(list)
    for line in lines:
        body = json.loads(line)["body"]
        obj = body[body["object_type"]]
        key = (
            obj.get("external_id")
            or (obj.get("billing_periods") or [{}])[0].get("external_subscription_id")
            or (obj.get("event") or {}).get("external_subscription_id")
            if isinstance(obj.get("event"), dict) or "event" not in obj
            else None
        )
        if body["webhook_type"] == "credit_note.created":
            key = obj["customer"]["external_id"].removeprefix("c-")
        grouped[key].append(line)
    return dict(grouped)


@SETTINGS
@given(timelines(), st.integers(2, 50))
def test_batch_size_does_not_change_outputs(records: list[Record], batch: int):
    assert run(records, batch) == run(records, 1)


@SETTINGS
@given(timelines(), st.randoms(use_true_random=False))
def test_interleaving_records_of_the_same_instant_keeps_per_subscription_outputs(
    records: list[Record], random: Any
):
    definitions = [r for r in records if r.kind != "event" and r.kind != "tick"]
    stream = [r for r in records if r.kind in ("event", "tick")]
    groups: dict[datetime, list[Record]] = defaultdict(list)
    for record in stream:
        groups[record.at].append(record)
    shuffled = []
    for at in sorted(groups):
        queues: dict[object, list[Record]] = defaultdict(list)
        for record in groups[at]:
            owner = record.payload["external_subscription_id"] if record.payload else None  # type: ignore[index]
            queues[owner].append(record)
        # Merge the subscriptions' records in a random order, each keeping its own order.
        while queues:
            owner = random.choice(sorted(queues, key=str))
            shuffled.append(queues[owner].pop(0))
            if not queues[owner]:
                del queues[owner]
    assert per_subscription(run(definitions + shuffled)) == per_subscription(
        run(definitions + stream)
    )


@SETTINGS
@given(timelines())
def test_other_subscriptions_matter_only_through_the_clock(records: list[Record]):
    together = per_subscription(run(records))
    names = {r.payload["external_id"] for r in records if r.kind == "subscription"}  # type: ignore[index]
    for name in names:
        alone = [
            Record(r.at, "tick")
            if (r.kind == "event" and r.payload["external_subscription_id"] != name)  # type: ignore[index]
            or (r.kind == "subscription" and r.payload["external_id"] != name)  # type: ignore[index]
            else r
            for r in records
        ]
        assert per_subscription(run(alone)).get(name, []) == together.get(name, [])


@SETTINGS
@given(timelines(terminate_all=True))
def test_progressive_billing_never_bills_twice_and_never_misses(records: list[Record]):
    bodies = [json.loads(line)["body"] for line in run(records)]
    invoices = [b["invoice"] for b in bodies if b["webhook_type"] == "invoice.created"]
    notes = [b["credit_note"] for b in bodies if b["webhook_type"] == "credit_note.created"]
    billed = sum(i["sub_total_excluding_taxes_amount_cents"] for i in invoices)
    credited = sum(n["sub_total_excluding_taxes_amount_cents"] for n in notes)
    owed = sum(i["fees_amount_cents"] for i in invoices if i["invoice_type"] == "subscription")
    assert billed - credited == owed
    for invoice in invoices:
        assert invoice["taxes_amount_cents"] == 0
        assert invoice["total_amount_cents"] == invoice["sub_total_excluding_taxes_amount_cents"]


@SETTINGS
@given(timelines(), st.data())
def test_a_duplicate_of_an_accepted_event_changes_nothing(records: list[Record], data: Any):
    original = run(records)
    rejected = {
        json.loads(line)["body"]["event_error"]["event"].get("transaction_id")
        for line in original
        if '"event.error"' in line
    }
    seen: set[tuple[str, str]] = set()
    with_duplicates: list[Record] = []
    for record in records:
        with_duplicates.append(record)
        if record.kind != "event":
            continue
        event = record.payload
        key = (event["external_subscription_id"], event["transaction_id"])  # type: ignore[index]
        if key in seen or event["transaction_id"] in rejected:  # type: ignore[index]
            continue
        seen.add(key)
        if data.draw(st.booleans()):
            copy = {**event, "properties": {"v": 999, "u": "zzz"}}  # type: ignore[dict-item]
            copy["timestamp"] = (record.at - timedelta(days=400)).isoformat()
            with_duplicates.append(Record(record.at, "event", copy, record.ref + "-dup"))
    assert run(with_duplicates) == original


@SETTINGS
@given(timelines())
def test_replaying_twice_is_byte_identical(records: list[Record]):
    assert run(records) == run(records)
