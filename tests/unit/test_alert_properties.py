"""Properties of usage alerts over generated timelines (hypothesis), spec §11:

- the outputs are the same for every batch size (the state, alerts included, is written out
  and read back between batches, as the live worker does);
- an alert never fires for a value that did not go up, and every threshold it reports lies
  above the previous value and at or below the current one;
- an alert reports each threshold at most once per rise: no value twice in one webhook.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.replay import Problem, replay

START = datetime(2025, 1, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = [
    ("current_usage_amount", None),
    ("billable_metric_current_usage_amount", "tokens"),
    ("billable_metric_current_usage_units", "seats"),
    ("lifetime_usage_amount", None),
    ("billable_metric_lifetime_usage_units", "tokens"),
    ("billable_metric_current_usage_units", "tokens"),
]
PLAN = {
    "code": "p",
    "interval": "weekly",
    "amount_cents": 100,
    "amount_currency": "USD",
    "charges": [
        {
            "billable_metric_code": "tokens",
            "charge_model": "standard",
            "properties": {"amount": "0.5"},
        },
        {
            "billable_metric_code": "seats",
            "charge_model": "package",
            "properties": {"amount": "3", "package_size": 2},
        },
    ],
}


def line(at: datetime, kind: str, payload: Any) -> str:
    record: dict[str, Any] = {"at": at.isoformat(), "type": kind}
    if kind != "tick":
        record[{"terminate_subscription": "external_id"}.get(kind, kind)] = payload
    return json.dumps(record)


@st.composite
def alert(draw: st.DrawFn, subscription: str, code: str) -> dict[str, Any]:
    alert_type, metric = draw(st.sampled_from(TYPES))
    values = draw(
        st.lists(
            st.sampled_from(["1", "2.5", "7", "20", "45", "100"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    thresholds: list[dict[str, Any]] = [{"value": v, "code": f"t{v}"} for v in values]
    if draw(st.booleans()):
        thresholds[-1]["recurring"] = True
    body = {
        "external_subscription_id": subscription,
        "code": code,
        "alert_type": alert_type,
        "thresholds": thresholds,
    }
    if metric:
        body["billable_metric_code"] = metric
    return body


@st.composite
def timelines(draw: st.DrawFn) -> list[str]:
    lines = [
        line(
            START,
            "billable_metric",
            {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v"},
        ),
        line(
            START,
            "billable_metric",
            {"code": "seats", "aggregation_type": "latest_agg", "field_name": "v"},
        ),
        line(START, "plan", PLAN),
    ]
    subscriptions = ["s1", "s2"][: draw(st.integers(1, 2))]
    for name in subscriptions:
        sub = {"external_id": name, "external_customer_id": f"c-{name}", "plan_code": "p"}
        lines.append(line(START, "subscription", sub))
        for code in ("a", "b", "c")[: draw(st.integers(1, 3))]:
            lines.append(line(START, "alert", draw(alert(name, code))))
    at = START
    for index in range(draw(st.integers(1, 50))):
        at += timedelta(hours=draw(st.sampled_from([0, 1, 9, 40])))
        name = draw(st.sampled_from(subscriptions))
        roll = draw(st.integers(0, 19))
        if roll == 0:
            lines.append(line(at, "tick", None))
        elif roll == 1:
            lines.append(line(at, "alert", draw(alert(name, draw(st.sampled_from("abc"))))))
        elif roll == 2:
            gone = {
                "external_subscription_id": name,
                "code": draw(st.sampled_from("abc")),
                "deleted": True,
            }
            lines.append(line(at, "alert", gone))
        elif roll == 3:
            historical = draw(st.sampled_from([0, 30, 200]))
            sub = {
                "external_id": name,
                "external_customer_id": f"c-{name}",
                "plan_code": "p",
                "historical_usage_amount_cents": historical,
            }
            lines.append(line(at, "subscription", sub))
        else:
            metric = draw(st.sampled_from(["tokens", "tokens", "seats"]))
            value = draw(st.sampled_from([0, 1, 3, "2.5", 12, 40, -5]))
            event = {
                "transaction_id": f"t{index}",
                "external_subscription_id": name,
                "code": metric,
                "properties": {"v": value},
            }
            if draw(st.integers(0, 4)) == 0:  # for the period after this one: held
                event["timestamp"] = (at + timedelta(hours=draw(st.integers(1, 23)))).isoformat()
            lines.append(line(at, "event", event))
    return lines


def bodies(lines: list[str], batch_size: int) -> list[str]:
    return [
        json.dumps(item.body, default=str, sort_keys=True)
        for item in replay(lines, batch_size=batch_size)
        if not isinstance(item, Problem)
    ]


@SETTINGS
@given(timelines(), st.sampled_from([2, 3, 7, 1000]))
def test_outputs_are_the_same_for_every_batch_size(lines: list[str], batch_size: int):
    assert bodies(lines, batch_size) == bodies(lines, 1)


@SETTINGS
@given(timelines())
def test_an_alert_fires_only_for_a_value_that_went_up_and_reports_what_lies_between(
    lines: list[str],
):
    for text in bodies(lines, 1):
        body = json.loads(text)
        if body["webhook_type"] != "alert.triggered":
            continue
        fired = body["triggered_alert"]
        prev, cur = Decimal(fired["previous_value"]), Decimal(fired["current_value"])
        assert cur > prev, fired
        values = [Decimal(t["value"]) for t in fired["crossed_thresholds"]]
        assert values and all(prev < v <= cur for v in values), fired
        assert values == sorted(values) and len(set(values)) == len(values), fired
