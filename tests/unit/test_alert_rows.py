"""The sinks' pure parts for usage alerts: the `triggered_alerts` row and the list's text."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.billing.webhooks import Output
from pipeline.replay import replay
from pipeline.wire import OutputRecord, loads
from sinks.common.consumer import Consumed, Unstorable
from sinks.invoices.alert_rows import TriggeredAlertRow, alert_rows_for
from sinks.invoices.sink import InvoiceWriter, split_rows
from sinks.render import describe_crossed

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "usage_alerts.jsonl"
AT = datetime(2025, 6, 1, tzinfo=UTC)


def triggered() -> list[Consumed]:
    with SCENARIO.open(encoding="utf-8") as lines:
        outputs = [o for o in replay(lines) if isinstance(o, Output)]
    return [
        Consumed(OutputRecord.from_body(o.id, o.body, external_subscription_id="sub-1"), 0, n, AT)
        for n, o in enumerate(outputs)
        if o.webhook_type == "alert.triggered"
    ]


def test_a_triggered_alert_becomes_one_row():
    item = triggered()[0]
    row = alert_rows_for(item)
    assert isinstance(row, TriggeredAlertRow)
    stored = row.triggered_alert
    assert stored["webhook_id"] == item.record.id
    assert isinstance(stored["lago_alert_id"], uuid.UUID)
    assert (stored["alert_code"], stored["alert_type"]) == ("budget", "current_usage_amount")
    assert (stored["previous_value"], stored["current_value"]) == (Decimal(700), Decimal(1100))
    assert [t["value"] for t in loads(stored["crossed_thresholds"])] == ["800", "1000"]
    assert stored["triggered_at"] == datetime(2025, 3, 3, 10, tzinfo=UTC)
    assert stored["billable_metric_code"] is None and stored["event_at"] == AT


def test_the_invoice_writer_routes_alerts_to_their_table():
    writer = InvoiceWriter()
    rows = split_rows([r for r in map(writer.prepare, triggered()) if r is not None])
    assert len(rows["triggered_alerts"]) == 6 and not rows["invoices"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a.pop("alert_code"), "missing field 'alert_code'"),
        (lambda a: a.update(current_value="lots"), "current_value is not a decimal string"),
        (lambda a: a.update(crossed_thresholds=[]), "crossed_thresholds"),
        (lambda a: a.update(alert_name=5), "alert_name"),
    ],
)
def test_a_body_that_cannot_be_stored_is_unstorable(change, reason):
    item = triggered()[0]
    body = copy.deepcopy(item.record.body)
    change(body["triggered_alert"])
    bad = Consumed(OutputRecord.from_body(item.record.id, body), 0, 0, AT)
    with pytest.raises(Unstorable, match=reason):
        alert_rows_for(bad)


def test_crossed_thresholds_read_as_one_line():
    crossed = [
        {"code": "80%", "value": "4000", "recurring": False},
        {"code": None, "value": "5000", "recurring": False},
        {"code": "r", "value": "7500", "recurring": True},
        {"code": "r", "value": "10000", "recurring": True},
    ]
    assert describe_crossed(crossed) == "4000 (80%), 5000, recurring ×2 up to 10000"
