"""Triggered usage alerts in the sinks (spec §11), on the real broker and PostgreSQL: the invoice
sink stores each `alert.triggered` once, `tollgate alerts list` reads them back, and the webhook
sink delivers them, signed, with every other output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.billing.webhooks import Output
from pipeline.replay import replay
from pipeline.wire import OutputRecord, dumps
from tests.integration.sinks_support import Slice, publish, stack_slice, stop, wait_for
from tests.integration.webhook_receiver import TIMEOUT, Receiver, Route, receiver

__all__ = ["receiver", "stack_slice"]  # fixtures, used by name

pytestmark = pytest.mark.integration

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "usage_alerts.jsonl"


def scenario_outputs() -> list[OutputRecord]:
    with SCENARIO.open(encoding="utf-8") as lines:
        outputs = [item for item in replay(lines) if isinstance(item, Output)]
    return [
        OutputRecord.from_body(
            o.id,
            o.body,
            external_subscription_id=o.external_subscription_id,
            external_customer_id=o.external_customer_id,
        )
        for o in outputs
    ]


def test_the_invoice_sink_stores_triggered_alerts_once_and_alerts_list_shows_them(
    stack_slice: Slice,
) -> None:
    stack = stack_slice
    records = scenario_outputs()
    alerts = [r for r in records if r.webhook_type == "alert.triggered"]
    assert len(alerts) == 6
    publish(stack.settings.kafka_bootstrap, stack.topics.outputs, records * 2)  # redelivered
    sink = stack.start(
        "sink", "invoices", "--idle-exit", "2", "--metrics-port", "0", "--group", stack.group("i")
    )
    assert sink.wait(60) == 0, stack.log_text()

    assert stack.scalar("SELECT count(*) FROM triggered_alerts") == 6
    table = stack.tollgate("alerts", "list", "sub-1")
    header, budget, tokens = table.splitlines()
    assert header.split()[:4] == ["ALERT", "TYPE", "METRIC", "FIRED"]
    assert budget.split()[:4] == ["budget", "current_usage_amount", "-", "4"]
    assert "800 (warn), 1000 (limit), 800 (warn), recurring ×5 up to 2000" in budget
    assert budget.split()[-2:] == ["900", "2025-04-02T10:00:00+00:00"]
    assert tokens.split()[:4] == [
        "tokens_life",
        "billable_metric_lifetime_usage_units",
        "tokens",
        "2",
    ]
    assert "recurring ×2 up to 4000" in tokens and " 4150 " in tokens
    stored = [
        json.loads(line)
        for line in stack.tollgate("alerts", "list", "sub-1", "--json").splitlines()
    ]
    assert stored == [r.body["triggered_alert"] for r in alerts]
    assert "has fired" in stack.tollgate("alerts", "list", "nobody")


def test_the_webhook_sink_delivers_alert_triggered(stack_slice: Slice, receiver: Receiver) -> None:
    stack = stack_slice
    records = scenario_outputs()
    endpoint, secret = stack.add_endpoint(receiver.url("/alerts"), "--events", "alert.triggered")
    route = Route(secret, lambda n: "ok")
    receiver.routes["/alerts"] = route
    receiver.start()
    publish(stack.settings.kafka_bootstrap, stack.topics.outputs, records)
    env = {"TOLLGATE_WEBHOOK_TIMEOUT": str(TIMEOUT), "TOLLGATE_WEBHOOK_POLL_INTERVAL": "0.1"}
    sink = stack.start("sink", "webhooks", "--group", stack.group("webhooks"), **env)
    expected = {
        r.id: dumps(r.body).encode() for r in records if r.webhook_type == "alert.triggered"
    }
    try:
        wait_for(lambda: len(route.accepted) == len(expected), timeout=60, what="6 alerts")
    finally:
        assert stop(sink) == 0, stack.log_text()
    assert route.accepted == expected and route.bad_signatures == []
    assert endpoint > 0
