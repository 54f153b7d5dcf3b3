"""Fuzzing (issue 9): no input can stop billing.

Hostile events (random JSON trees as properties, every field with the wrong type, extreme
numbers as ints, floats, decimals and strings, huge and unicode strings, deep nesting,
timestamps far in the past or the future) and hostile definitions (extreme prices, ranges,
package sizes, thresholds, timezones) go through a ledger among good records. The engine never
raises and never meets a bug (no `internal_error`: containment would hide one); every event is
accepted, dropped as a duplicate or rejected; every state survives its round trip. The Avro and
JSON decoders get random and mutated bytes: they return a value or raise `WireError` /
`ValueError`, nothing else, and whatever they return the engine takes.

`make test` runs a few thousand examples. `make fuzz` runs a long campaign:
`TOLLGATE_FUZZ_EXAMPLES=N python -m tests.unit.test_fuzz` runs N examples per property and
prints how many ran.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.billing.engine import Ledger, Record, Transition
from pipeline.billing.ids import invoice_id, subscription_id
from pipeline.billing.state import (
    DEFINITION_KINDS,
    dump_definition,
    dump_subscription,
    load_catalog,
    load_subscription,
)
from pipeline.wire import (
    CatalogRecord,
    DeadLetter,
    OutputRecord,
    SubscriptionRecord,
    WireError,
    decode_dead_letter,
    decode_ledger_input,
    decode_output,
    dumps,
    encode_catalog_record,
    encode_dead_letter,
    encode_output,
    encode_subscription_record,
    encode_tick,
    encode_usage_event,
    loads,
)
from pipeline.wire.jsontext import MAX_DEPTH

CAMPAIGN = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "0") or 0)
RAN: Counter[str] = Counter()  # examples run, per property (printed by the campaign)


def examples(default: int) -> settings:
    return settings(
        max_examples=CAMPAIGN or default,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


START = datetime(2025, 1, 1, tzinfo=UTC)
METRICS = [
    {"code": "calls", "aggregation_type": "count_agg"},
    {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v"},
    {"code": "peak", "aggregation_type": "max_agg", "field_name": "v"},
    {"code": "seats", "aggregation_type": "latest_agg", "field_name": "v"},
    {"code": "users", "aggregation_type": "unique_count_agg", "field_name": "v"},
]
CODES = [m["code"] for m in METRICS]
SUBSCRIPTIONS = ["s1", "s2", "s3"]

# -- hostile values ------------------------------------------------------------------------

EXTREME_TEXT = [
    "1e999999999", "-1e999999999", "1E+999999999", "NaN", "nan", "-NaN", "sNaN", "-snan",
    "Infinity", "-Infinity", "inf", "+Inf", "-inf", "INFINITY", "-0", "+0", "-0.0", "0E-400",
    "1e-400", "-1e-400", "1e15", "-1e15", "999999999999999", "999999999999999.999999999999",
    "0.0000000000001", "1.5000000000000000000000", "1_000", " 12 ", "12 ", "0x10", "١٢",
    "1e3", "2025-01-01", "", " ", "\x00", "💸", "9" * 5000, "1" + "0" * 400, "0." + "0" * 399 + "1",
]  # fmt: skip
EXTREME_INTS = [0, -1, 10**15 - 1, 10**15, -(10**15), 2**63, -(2**63) - 1, 10**300, -(10**3999)]
EXTREME_FLOATS = [0.0, -0.0, 1e308, -1e308, 5e-324, 1e-13, 1e15, float("inf"), float("nan")]
EXTREME_DECIMALS = [Decimal(t) for t in ("1E+999999999", "-1E+999999999", "1E-400", "NaN",
                                         "sNaN", "-Infinity", "-0", "0E-400", "1E+15")]  # fmt: skip

numbers = (
    st.sampled_from(EXTREME_INTS)
    | st.sampled_from(EXTREME_FLOATS)
    | st.sampled_from(EXTREME_DECIMALS)
    | st.sampled_from(EXTREME_TEXT)
    | st.integers()
    | st.floats()
    | st.decimals()
    | st.decimals(places=3, min_value=-1000, max_value=1000)
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=20) | st.just("x" * 200_000)
json_trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(["v", "code"]), children, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"v": value}
    return value


anything = json_trees | st.integers(1, 3 * MAX_DEPTH).map(nested)
timestamps = (
    st.none()
    | numbers
    | st.sampled_from(
        [
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-14:00",
            "1970-01-01T00:00:00+14:00",
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00.123456+05:30",
            "2025-13-01T00:00:00Z",
            "1735689600",
            "-62135596800",
            "253402300800",
            "1735689600.999999999",
        ]
    )
    | st.integers(-(10**13), 10**13)
    | anything
)
identifiers = st.sampled_from(SUBSCRIPTIONS) | anything


@st.composite
def hostile_events(draw: st.DrawFn) -> Any:
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(anything)  # not an object at all, or any object
    event: dict[str, Any] = {
        "transaction_id": draw(st.text(min_size=1, max_size=6) | anything),
        "external_subscription_id": draw(identifiers),
        "code": draw(st.sampled_from(CODES) | anything),
    }
    if draw(st.booleans()):
        event["timestamp"] = draw(timestamps)
    properties = draw(
        st.dictionaries(st.just("v"), numbers | anything, min_size=1)
        | st.dictionaries(st.text(max_size=5), anything, max_size=3)
        | anything
    )
    if draw(st.booleans()):
        event["properties"] = properties
    if shape == 1 and event:
        del event[draw(st.sampled_from(sorted(event)))]
    return event


def good_event(n: int, sub: str, code: str) -> dict[str, Any]:
    return {
        "transaction_id": f"g{n}",
        "external_subscription_id": sub,
        "code": code,
        "properties": {"v": str(n % 7 + 1)},
    }


amounts = numbers | st.sampled_from(["0", "0.5", "1", "12.345678901234", "999999999999999"])
range_bounds = (
    st.none() | st.sampled_from([0, 1, 10, 11, 10**15, 10**15 - 1, -1, "10", "1e3"]) | numbers
)


@st.composite
def hostile_ranges(draw: st.DrawFn) -> list[Any]:
    count = draw(st.integers(0, 4))
    ranges: list[Any] = []
    low: Any = 0
    for index in range(count):
        high = None if index == count - 1 else draw(range_bounds)
        ranges.append(
            {
                "from_value": low if draw(st.integers(0, 3)) else draw(range_bounds),
                "to_value": high,
                "per_unit_amount": draw(amounts),
                "flat_amount": draw(amounts),
            }
        )
        low = high if isinstance(high, int) and draw(st.booleans()) else draw(range_bounds)
    return ranges if draw(st.integers(0, 5)) else draw(anything)


@st.composite
def hostile_charge(draw: st.DrawFn) -> Any:
    code = draw(st.sampled_from(CODES))
    model = draw(st.sampled_from(["standard", "package", "graduated", "volume", "percentage"]))
    properties: Any = {
        "amount": draw(amounts),
        "package_size": draw(st.sampled_from([0, 1, 2, 10**15, -1, "3", 1.5]) | numbers),
        "free_units": draw(amounts),
        "graduated_ranges": draw(hostile_ranges()),
        "volume_ranges": draw(hostile_ranges()),
        "rate": draw(amounts),
        "fixed_amount": draw(amounts),
        "free_units_per_events": draw(st.sampled_from([0, 1, 3, 10**20, -2, "2"]) | numbers),
        "free_units_per_total_aggregation": draw(amounts),
    }
    if draw(st.integers(0, 9)) == 0:
        properties = draw(anything)
    return {"billable_metric_code": code, "charge_model": model, "properties": properties}


thresholds = st.lists(
    st.fixed_dictionaries(
        {
            "amount_cents": st.sampled_from([1, 100, 250, 10**15 - 1, 10**15, 0, -5]) | numbers,
            "recurring": st.booleans() | anything,
        },
        optional={"threshold_display_name": st.text(max_size=10) | anything},
    ),
    max_size=4,
)
timezones = (
    st.sampled_from(
        [
            "UTC",
            "Europe/Paris",
            "Pacific/Kiritimati",
            "Pacific/Pago_Pago",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Etc/GMT+12",
            "Etc/GMT-14",
            "",
            "../../etc/passwd",
            "/etc/localtime",
            "a" * 300,
            "Mars/Olympus",
            "UTC\n",
            "\x00",
            "utc",
        ]
    )
    | anything
)


@st.composite
def hostile_definitions(draw: st.DrawFn) -> tuple[str, Any]:
    kinds = ["plan", "customer", "subscription", "billable_metric", "feature", "invoice_payment"]
    kind = draw(st.sampled_from(kinds))
    if kind == "feature":
        return kind, draw(hostile_features())
    if kind == "invoice_payment":
        sub = draw(st.sampled_from(SUBSCRIPTIONS) | anything)
        invoice = invoice_id(subscription_id(str(sub), 1), draw(st.integers(1, 4)))
        payment: Any = {
            "lago_invoice_id": draw(st.just(invoice) | anything),
            "external_subscription_id": sub,
            "payment_status": draw(st.sampled_from(["pending", "succeeded", "failed"]) | anything),
        }
        return kind, payment
    if kind == "plan":
        plan: Any = {
            "code": draw(st.sampled_from(["p", "q"])),
            "interval": draw(st.sampled_from(["weekly", "monthly", "quarterly", "yearly"])),
            "amount_cents": draw(st.sampled_from([0, 999, 10**15 - 1]) | numbers),
            "amount_currency": "USD",
            "pay_in_advance": draw(st.booleans()),
            "charges": draw(st.lists(hostile_charge(), max_size=3)),
            "usage_thresholds": draw(thresholds),
        }
        if draw(st.booleans()):
            plan["entitlements"] = draw(hostile_entitlements())
        return kind, plan
    if kind == "customer":
        customer: Any = {
            "external_id": draw(st.sampled_from(["c1", "c2"])),
            "timezone": draw(timezones),
            "taxes": [{"code": "vat", "rate": draw(amounts)}],
        }
        return kind, customer
    if kind == "subscription":
        subscription: Any = {
            "external_id": draw(st.sampled_from(SUBSCRIPTIONS)),
            "external_customer_id": draw(st.sampled_from(["c1", "c2"])),
            "plan_code": draw(st.sampled_from(["p", "q"])),
            "billing_time": draw(st.sampled_from(["calendar", "anniversary"])),
            "usage_thresholds": draw(thresholds),
            "historical_usage_amount_cents": draw(st.sampled_from([0, 10**15 - 1]) | numbers),
            "progressive_billing_disabled": draw(st.booleans()),
        }
        if draw(st.booleans()):
            subscription["subscription_at"] = draw(timestamps)
        if draw(st.booleans()):
            subscription["entitlements"] = draw(hostile_entitlements())
            subscription["removed_features"] = draw(st.lists(st.sampled_from(["f", "g"])))
            subscription["payment_grace_seconds"] = draw(st.sampled_from([0, 3600]) | numbers)
            subscription["max_unpaid_amount_cents"] = draw(st.sampled_from([0, 500]) | numbers)
        return kind, subscription
    return kind, {**draw(st.sampled_from(METRICS)), "name": draw(anything)}


@st.composite
def hostile_features(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 5)) == 0:
        return {"code": draw(st.sampled_from(["f", "g"])), "deleted": True}
    privileges = [
        {"code": "n", "value_type": "integer"},
        {"code": "s", "value_type": "select", "config": {"select_options": ["a", "b"]}},
        {"code": draw(st.sampled_from(["b", "n"])), "value_type": draw(anything)},
    ]
    feature: Any = {
        "code": draw(st.sampled_from(["f", "g"]) | anything),
        "privileges": draw(st.lists(st.sampled_from(privileges), max_size=3)),
    }
    if draw(st.booleans()):
        feature["quota"] = {
            "billable_metric_code": draw(st.sampled_from(["calls", "tokens", "nope"])),
            "privilege_code": draw(st.sampled_from(["n", "s"])),
        }
    return feature


@st.composite
def hostile_entitlements(draw: st.DrawFn) -> Any:
    value = st.sampled_from([0, 3, 10**6, "12", "a", True]) | anything
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "feature_code": st.sampled_from(["f", "g"]) | anything,
                    "privileges": st.dictionaries(st.sampled_from(["n", "s", "b"]), value),
                }
            ),
            max_size=2,
        )
        | anything
    )


def base_records() -> list[Record]:
    plan = {
        "code": "p",
        "interval": "monthly",
        "amount_cents": 1000,
        "amount_currency": "USD",
        "charges": [
            {"billable_metric_code": "calls", "charge_model": "standard",
             "properties": {"amount": "0.5"}},
            {"billable_metric_code": "tokens", "charge_model": "percentage",
             "properties": {"rate": "2", "free_units_per_events": 2,
                            "free_units_per_total_aggregation": "5"}},
            {"billable_metric_code": "peak", "charge_model": "volume", "properties": {
                "volume_ranges": [
                    {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "1"},
                    {"from_value": 11, "to_value": None, "per_unit_amount": "0.5",
                     "flat_amount": "0"}]}},
            {"billable_metric_code": "seats", "charge_model": "package",
             "properties": {"amount": "3", "package_size": 2, "free_units": 1}},
            {"billable_metric_code": "users", "charge_model": "graduated", "properties": {
                "graduated_ranges": [
                    {"from_value": 0, "to_value": 2, "per_unit_amount": "1", "flat_amount": "0"},
                    {"from_value": 3, "to_value": None, "per_unit_amount": "2",
                     "flat_amount": "1"}]}},
        ],
        "usage_thresholds": [{"amount_cents": 300}, {"amount_cents": 500, "recurring": True}],
    }  # fmt: skip
    records = [Record(START, "billable_metric", m, f"m:{m['code']}") for m in METRICS]
    feature = {  # spec §12: a metered feature, so every record also exercises access decisions
        "code": "f",
        "privileges": [{"code": "n", "value_type": "integer"}],
        "quota": {"billable_metric_code": "calls", "privilege_code": "n"},
    }
    records.append(Record(START, "feature", feature, "feature:f"))
    plan["entitlements"] = [{"feature_code": "f", "privileges": {"n": 5}}]
    records.append(Record(START, "plan", plan, "plan:p"))
    records.append(Record(START, "plan", {**plan, "code": "q", "interval": "weekly"}, "plan:q"))
    records.append(Record(START, "customer", {"external_id": "c1", "timezone": "Asia/Tokyo"}))
    for index, sub in enumerate(SUBSCRIPTIONS):
        body = {"external_id": sub, "external_customer_id": f"c{index % 2 + 1}", "plan_code": "p"}
        records.append(Record(START, "subscription", body, f"sub:{sub}"))
    return records


@st.composite
def hostile_timelines(draw: st.DrawFn) -> list[Record]:
    records = base_records()
    at = START
    for n in range(draw(st.integers(1, 14))):
        at += timedelta(hours=draw(st.sampled_from([0, 1, 7, 24 * 9])))
        choice = draw(st.integers(0, 9))
        if choice <= 4:
            records.append(Record(at, "event", draw(hostile_events()), f"ev:{n}"))
        elif choice <= 6:
            sub, code = draw(st.sampled_from(SUBSCRIPTIONS)), draw(st.sampled_from(CODES))
            records.append(Record(at, "event", good_event(n, sub, code), f"ev:{n}"))
        elif choice == 7:
            kind, payload = draw(hostile_definitions())
            records.append(Record(at, kind, payload, f"def:{n}"))
        elif choice == 8:
            records.append(Record(at, "tick", None, f"tick:{n}"))
        else:
            target = draw(st.sampled_from(SUBSCRIPTIONS) | anything)
            records.append(Record(at, "terminate_subscription", target, f"term:{n}"))
    records.append(Record(at + timedelta(days=70), "tick", None, "tick:end"))
    return records


def _check(records: list[Record], transitions: list[Transition], ledger: Ledger) -> None:
    rejections = [r for t in transitions for r in t.rejections]
    bugs = [r for r in rejections if r.reason.value == "internal_error"]
    assert not bugs, bugs[0].message
    for rejection in rejections:  # a rejection's message is text a person can read
        assert isinstance(rejection.message, str) and 0 < len(rejection.message) < 2000
    events = {r.ref for r in records if r.kind == "event"}
    refused = sum(1 for r in rejections if r.ref in events)
    taken = sum(t.counts.get("accepted", 0) + t.counts.get("duplicates", 0) for t in transitions)
    assert refused + taken == len(events), "an event was neither billed, dropped nor refused"
    for output in (o for t in transitions for o in t.outputs):
        loads(dumps(output.body))  # every body is strict JSON
    for external_id, sub in ledger.subscriptions.items():
        stored = dump_subscription(sub)
        assert dump_subscription(load_subscription(stored)) == stored, external_id
    catalog = ledger.catalog
    keys = {
        "billable_metric": catalog.metrics,
        "feature": catalog.features,
        "plan": catalog.plans,
        "customer": catalog.customers,
    }
    stored_defs = [dump_definition(catalog, k, key) for k in DEFINITION_KINDS for key in keys[k]]
    again = load_catalog(stored_defs)
    assert again.plans == catalog.plans and again.customers == catalog.customers


@examples(300)
@given(hostile_timelines(), st.integers(1, 6))
def test_hostile_events_and_definitions_never_stop_billing(
    records: list[Record], batch: int
) -> None:
    RAN["hostile timelines"] += 1
    ledger = Ledger()
    transitions = [ledger.run(records[i : i + batch]) for i in range(0, len(records), batch)]
    _check(records, transitions, ledger)
    # ...and the good events after it all are billed.
    last = records[-1].at
    good = [Record(last, "event", good_event(900 + i, s, "calls"), f"after:{s}") for i, s in
            enumerate(SUBSCRIPTIONS)]  # fmt: skip
    after = ledger.run(good)
    assert not [r for r in after.rejections if r.reason.value == "internal_error"]


@examples(300)
@given(st.lists(hostile_events(), min_size=1, max_size=8))
@example(  # found by `make fuzz`: year 10000 once converted to UTC
    [
        {
            "transaction_id": "0",
            "external_subscription_id": "s1",
            "code": "calls",
            "timestamp": "9999-12-31T23:59:59-14:00",
        }
    ]
)
def test_hostile_events_alone(events: list[Any]) -> None:
    RAN["hostile events"] += 1
    records = base_records()
    start = len(records)
    records += [
        Record(START + timedelta(hours=1), "event", event, f"ev:{i}")
        for i, event in enumerate(events)
    ]
    ledger = Ledger()
    transitions = [ledger.run(records[:start]), ledger.run(records[start:])]
    _check(records, transitions, ledger)


# -- the decoders --------------------------------------------------------------------------

VALID_ENCODINGS = [
    encode_usage_event(good_event(1, "s1", "tokens")),
    encode_usage_event({**good_event(2, "s1", "tokens"), "timestamp": "2025-01-01T00:00:00Z"}),
    encode_catalog_record(CatalogRecord("billable_metric", "tokens", METRICS[1])),
    encode_subscription_record(
        SubscriptionRecord.upsert(
            {"external_id": "s9", "external_customer_id": "c", "plan_code": "p"}
        )
    ),
    encode_subscription_record(SubscriptionRecord.terminate("s1")),
    encode_tick(),
    b'{"transaction_id": "j1", "external_subscription_id": "s1", "code": "tokens", '
    b'"properties": {"v": 12.5}}',
]
OUTPUT = encode_output(OutputRecord("id", "invoice.created", "invoice", "s1", "c1", {"a": 1}))
LETTER = encode_dead_letter(DeadLetter("invalid", "m", "t", 0, 1, b"\x00\xff", "s1"))


@st.composite
def mutated(draw: st.DrawFn, valid: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.integers(0, 3))
        if operation == 0 and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif operation == 1:
            data = data[: draw(st.integers(0, len(data)))]
        elif operation == 2:
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[1:5] = draw(st.integers(0, 10).map(lambda i: i.to_bytes(4, "big")))
    return bytes(data)


raw_bytes = st.binary(max_size=200) | st.just(b"\x00") | st.just(b"")


@examples(800)
@given(mutated(VALID_ENCODINGS) | raw_bytes)
def test_the_usage_topic_decoder_refuses_bad_bytes_and_the_engine_takes_what_it_accepts(
    data: bytes,
) -> None:
    RAN["usage topic decoder"] += 1
    try:
        value = decode_ledger_input(data, max_bytes=1 << 20)
    except WireError as error:
        assert error.reason in ("malformed", "invalid") and error.message
        return
    if isinstance(value, dict):  # a usage event: whatever it holds, the engine copes
        ledger = Ledger()
        ledger.run(base_records())
        transition = ledger.run([Record(START + timedelta(hours=1), "event", value, "x")])
        assert not [r for r in transition.rejections if r.reason.value == "internal_error"]


@examples(400)
@given(mutated([OUTPUT, LETTER]) | raw_bytes)
def test_the_output_and_dead_letter_decoders_refuse_bad_bytes(data: bytes) -> None:
    RAN["output decoders"] += 1
    for decode in (decode_output, decode_dead_letter):
        try:
            decode(data)
        except WireError as error:
            assert error.message


json_texts = (
    st.text(max_size=80)
    | anything.map(lambda v: _try_dumps(v))
    | st.sampled_from(
        [
            "NaN",
            "[Infinity]",
            '{"a": -Infinity}',
            "1e999999999",
            '"\\ud800"',
            "[" * 200 + "]" * 200,
            '{"a":' * 70 + "1" + "}" * 70,
            "9" * 5000,
            '{"a": 1, "a": 2}',
            "\ufeff{}",
        ]
    )
)


def _try_dumps(value: Any) -> str:
    try:
        return dumps(value)
    except (ValueError, TypeError):
        return "null"


@examples(600)
@given(json_texts)
def test_the_json_decoder_refuses_with_a_value_error_and_round_trips(text: str) -> None:
    RAN["json decoder"] += 1
    try:
        value = loads(text)
    except ValueError as error:
        assert str(error)
        return
    assert loads(dumps(value)) == value


if __name__ == "__main__":  # `make fuzz`: a long campaign
    started = time.monotonic()
    for name, test in sorted(globals().items()):
        if name.startswith("test_") and callable(test):
            began = time.monotonic()
            test()
            print(f"{name}: {time.monotonic() - began:.0f} s", file=sys.stderr)
    total = sum(RAN.values())
    for what, count in sorted(RAN.items()):
        print(f"  {what:<24} {count:>9,} examples")
    print(f"fuzz: {total:,} examples ran in {time.monotonic() - started:.0f} s, no failure")
