"""Bad input never escapes the engine as an exception (hypothesis).

Valid definitions and events are damaged at one place each (a value replaced by any JSON
value, or a key removed) and stepped through a ledger: every record must come back as outputs
or rejections. Under `make test` this runs on the compiled engine, whose functions check their
argument types at run time, so it also proves that no such check is reachable from input.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.billing.engine import Ledger, Record

START = datetime(2025, 1, 1, tzinfo=UTC)

RANGES = [
    {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
    {"from_value": 10, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "2"},
]
VALID: list[tuple[str, Any]] = [
    ("billable_metric", {"code": "calls", "aggregation_type": "count_agg"}),
    ("billable_metric", {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v"}),
    (
        "billable_metric",
        {"code": "users", "aggregation_type": "unique_count_agg", "field_name": "u"},
    ),
    (
        "plan",
        {
            "code": "p",
            "interval": "monthly",
            "amount_cents": 1000,
            "amount_currency": "USD",
            "pay_in_advance": False,
            "charges": [
                {
                    "billable_metric_code": "calls",
                    "charge_model": "standard",
                    "properties": {"amount": "0.5"},
                },
                {
                    "billable_metric_code": "tokens",
                    "charge_model": "graduated",
                    "properties": {"graduated_ranges": RANGES},
                },
                {
                    "billable_metric_code": "users",
                    "charge_model": "package",
                    "properties": {"amount": "3", "package_size": 2, "free_units": 1},
                },
            ],
            "usage_thresholds": [
                {"amount_cents": 500},
                {"amount_cents": 1000, "recurring": True},
            ],
        },
    ),
    (
        "customer",
        {
            "external_id": "c",
            "timezone": "Europe/Paris",
            "currency": "USD",
            "taxes": [{"code": "vat", "rate": "20"}],
        },
    ),
    (
        "subscription",
        {
            "external_id": "s",
            "external_customer_id": "c",
            "plan_code": "p",
            "billing_time": "anniversary",
            "subscription_at": "2025-01-01T00:00:00Z",
            "usage_thresholds": [{"amount_cents": 700}],
        },
    ),
    (
        "event",
        {
            "transaction_id": "t1",
            "external_subscription_id": "s",
            "code": "tokens",
            "timestamp": "2025-01-02T00:00:00Z",
            "properties": {"v": 12},
        },
    ),
    (
        "event",
        {
            "transaction_id": "t2",
            "external_subscription_id": "s",
            "code": "users",
            "properties": {"u": "alice"},
        },
    ),
    ("terminate_subscription", "s"),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "NaN", "-1", "1e400", "2025-13-01", "Mars/Olympus", "0.0000000000001"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into `value` (dict keys and list indexes), the root included."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _places(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _places(child, (*path, index))
    return found


@st.composite
def damaged(draw: st.DrawFn, payload: Any) -> Any:
    payload = copy.deepcopy(payload)
    path = draw(st.sampled_from(_places(payload)))
    if not path:
        return draw(json_values)
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return payload


@st.composite
def timelines(draw: st.DrawFn) -> list[Record]:
    bad = set(draw(st.lists(st.integers(0, len(VALID) - 1), min_size=1, max_size=3)))
    records = []
    for index, (kind, payload) in enumerate(VALID):
        if index in bad:
            payload = draw(damaged(payload))
        at = START + timedelta(days=index)
        records.append(Record(at, kind, payload, f"line:{index}"))
    records.append(Record(START + timedelta(days=70), "tick"))
    return records


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines(), st.integers(1, 3))
def test_damaged_input_is_refused_never_raised(records: list[Record], batch_size: int) -> None:
    ledger = Ledger()
    for start in range(0, len(records), batch_size):
        ledger.run(records[start : start + batch_size])


def test_the_undamaged_timeline_bills() -> None:
    ledger = Ledger()
    outputs = ledger.run(
        [
            Record(START + timedelta(days=i), kind, payload)
            for i, (kind, payload) in enumerate(VALID)
        ]
    ).outputs
    types = [output.body["webhook_type"] for output in outputs]
    assert "invoice.created" in types
    assert ledger.run([]).rejections == ()
