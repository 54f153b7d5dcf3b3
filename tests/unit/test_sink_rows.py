"""The sinks' pure parts: rows from outputs, the retry schedule, the text tables."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.billing.webhooks import Output
from pipeline.replay import replay
from pipeline.wire import OutputRecord, loads
from sinks.common.consumer import Consumed, Unstorable
from sinks.invoices.rows import CreditNoteRow, InvoiceRows, PaymentStatusRow, rows_for
from sinks.invoices.sink import split_rows
from sinks.render import money, table
from sinks.webhooks.retry import outcome

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AT = datetime(2025, 6, 1, tzinfo=UTC)
SCHEDULE = (0.0, 5.0, 300.0)


def _consumed(name: str, folder: Path = EXAMPLES) -> list[Consumed]:
    with (folder / name).open(encoding="utf-8") as lines:
        outputs = [item for item in replay(lines) if isinstance(item, Output)]
    return [
        Consumed(
            OutputRecord(
                o.id,
                o.webhook_type,
                o.object_type,
                o.external_subscription_id,
                o.external_customer_id,
                o.body,
            ),
            0,
            n,
            AT,
        )
        for n, o in enumerate(outputs)
    ]


def test_an_invoice_becomes_one_row_with_its_fees_and_thresholds() -> None:
    item = next(
        c for c in _consumed("seats_credit_note.jsonl") if c.record.object_type == "invoice"
    )
    rows = rows_for(item)
    assert isinstance(rows, InvoiceRows)
    invoice = item.record.body["invoice"]
    assert rows.invoice["lago_id"] == uuid.UUID(invoice["lago_id"])
    assert rows.invoice["webhook_id"] == item.record.id
    assert rows.invoice["issuing_date"] == date.fromisoformat(invoice["issuing_date"])
    assert rows.invoice["total_amount_cents"] == invoice["total_amount_cents"]
    assert rows.invoice["invoicing_reason"] == "progressive_billing"
    assert rows.invoice["event_at"] == AT
    assert loads(rows.invoice["body"]) == invoice
    assert [fee["position"] for fee in rows.fees] == list(range(len(invoice["fees"])))
    assert all(isinstance(fee["units"], Decimal) for fee in rows.fees)
    assert len(rows.thresholds) == len(invoice["applied_usage_thresholds"])


def test_a_credit_note_becomes_one_row() -> None:
    item = next(
        c for c in _consumed("seats_credit_note.jsonl") if c.record.object_type == "credit_note"
    )
    rows = rows_for(item)
    assert isinstance(rows, CreditNoteRow)
    note = item.record.body["credit_note"]
    assert rows.credit_note["lago_invoice_id"] == uuid.UUID(note["lago_invoice_id"])
    assert rows.credit_note["total_amount_cents"] == note["total_amount_cents"]


def test_other_webhook_types_store_nothing() -> None:
    others = [
        c for c in _consumed("seats_credit_note.jsonl") if c.record.object_type == "subscription"
    ]
    assert others and all(rows_for(item) is None for item in others)


def test_split_rows_groups_a_batch_by_table() -> None:
    stored = [rows_for(c) for c in _consumed("seats_credit_note.jsonl")]
    rows = split_rows([r for r in stored if r is not None])
    assert len(rows["invoices"]) == 2 and len(rows["credit_notes"]) == 1
    assert len(rows["invoice_fees"]) >= 2


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("lago_id",), "not-a-uuid"),
        (("total_amount_cents",), "12"),
        (("issuing_date",), "yesterday"),
        (("fees",), None),
    ],
)
def test_an_invoice_missing_what_the_tables_need_is_unstorable(
    path: tuple[str, ...], value: object
) -> None:
    item = next(
        c for c in _consumed("seats_credit_note.jsonl") if c.record.object_type == "invoice"
    )
    body = copy.deepcopy(item.record.body)
    body["invoice"][path[0]] = value
    broken = Consumed(
        OutputRecord(item.record.id, "invoice.created", "invoice", None, None, body), 0, 0, AT
    )
    with pytest.raises(Unstorable):
        rows_for(broken)


def test_2xx_delivers() -> None:
    result = outcome(attempts_before=3, attempted_at=AT, schedule=SCHEDULE, status_code=204)
    assert result.delivered and result.status_class == "2xx" and result.error is None


def test_a_failure_waits_for_the_next_entry_of_the_schedule() -> None:
    first = outcome(attempts_before=0, attempted_at=AT, schedule=SCHEDULE, status_code=500)
    assert (first.status, first.next_attempt_at) == ("pending", AT + timedelta(seconds=5))
    assert first.metric_outcome == "retrying" and first.status_class == "5xx"
    second = outcome(
        attempts_before=1, attempted_at=AT, schedule=SCHEDULE, status_code=None, failure="timeout"
    )
    assert second.next_attempt_at == AT + timedelta(seconds=300)
    assert second.status_class == "timeout"


def test_after_the_last_entry_the_delivery_fails() -> None:
    last = outcome(attempts_before=2, attempted_at=AT, schedule=SCHEDULE, status_code=301)
    assert last.status == "failed" and last.status_class == "3xx"


def test_money_and_tables() -> None:
    assert money(6600, "USD") == "66.00 USD"
    assert money(-5) == "-0.05"
    assert table(("A", "AMOUNT"), [("x", "1.00"), ("long", "10.50")]).splitlines() == [
        "A     AMOUNT",
        "x       1.00",
        "long   10.50",
    ]


def test_a_payment_status_update_becomes_an_update_of_the_stored_invoice() -> None:
    scenarios = Path(__file__).resolve().parents[1] / "scenarios"
    consumed = _consumed("entitlements_access.jsonl", scenarios)
    updates = [c for c in consumed if c.record.webhook_type == "invoice.payment_status_updated"]
    rows = [rows_for(c) for c in updates]
    assert [(type(r).__name__, getattr(r, "payment_status", None)) for r in rows] == [
        ("PaymentStatusRow", "failed"),
        ("PaymentStatusRow", "succeeded"),
    ]
    first = rows[0]
    assert isinstance(first, PaymentStatusRow)
    invoice = updates[0].record.body["invoice"]
    assert first.lago_id == uuid.UUID(invoice["lago_id"])
    assert loads(first.body) == invoice
    assert all(not r for r in split_rows([first]).values())  # no rows inserted: an update
    broken = copy.deepcopy(updates[0])
    del broken.record.body["invoice"]["payment_status"]
    with pytest.raises(Unstorable):
        rows_for(broken)
