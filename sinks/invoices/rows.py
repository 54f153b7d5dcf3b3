"""Rows of the invoice tables from `invoice.created` and `credit_note.created` outputs. Pure.

The engine made every value (spec §6); this only picks fields out of the Lago-shaped body. A
body that lacks one raises `Unstorable`, and the sink dead-letters it with reason `invalid`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.wire import dumps
from sinks.common.consumer import Consumed, Unstorable

Row = dict[str, Any]

INVOICE_AMOUNTS = (
    "fees_amount_cents",
    "progressive_billing_credit_amount_cents",
    "sub_total_excluding_taxes_amount_cents",
    "taxes_amount_cents",
    "total_amount_cents",
)
CREDIT_NOTE_AMOUNTS = (
    "sub_total_excluding_taxes_amount_cents",
    "taxes_amount_cents",
    "total_amount_cents",
    "credit_amount_cents",
    "balance_amount_cents",
    "refund_amount_cents",
)


@dataclass(frozen=True, slots=True)
class InvoiceRows:
    """One invoice with its fee lines and the usage thresholds it applied."""

    invoice: Row
    fees: tuple[Row, ...]
    thresholds: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class CreditNoteRow:
    credit_note: Row


@dataclass(frozen=True, slots=True)
class PaymentStatusRow:
    """An `invoice.payment_status_updated` (spec §12): the stored invoice's new payment status
    and its body as the webhook carried it (the invoice as issued, with that status)."""

    lago_id: uuid.UUID
    payment_status: str
    body: str


def rows_for(item: Consumed) -> InvoiceRows | CreditNoteRow | PaymentStatusRow | None:
    """The rows an output adds to the invoice tables (None: other webhook types)."""
    record = item.record
    try:
        if record.webhook_type == "invoice.created":
            return invoice_rows(item)
        if record.webhook_type == "credit_note.created":
            return credit_note_row(item)
        if record.webhook_type == "invoice.payment_status_updated":
            invoice = _object(record.body, "invoice")
            status = _text(invoice, "payment_status")
            return PaymentStatusRow(_uuid(invoice, "lago_id"), status, dumps(invoice))
    except (KeyError, TypeError, ValueError, InvalidOperation) as error:
        raise Unstorable(f"{record.webhook_type} {record.id}: {_explain(error)}") from None
    return None


def invoice_rows(item: Consumed) -> InvoiceRows:
    invoice = _object(item.record.body, "invoice")
    lago_id = _uuid(invoice, "lago_id")
    periods = invoice.get("billing_periods") or [{}]
    period = periods[0] if isinstance(periods, list) and isinstance(periods[0], dict) else {}
    customer = invoice.get("customer")
    customer = customer if isinstance(customer, dict) else {}
    row: Row = {
        "lago_id": lago_id,
        "webhook_id": item.record.id,
        "number": _text(invoice, "number"),
        "sequential_id": _int(invoice, "sequential_id"),
        "invoice_type": _text(invoice, "invoice_type"),
        "invoicing_reason": period.get("invoicing_reason"),
        "external_subscription_id": item.record.external_subscription_id
        or period.get("external_subscription_id"),
        "external_customer_id": item.record.external_customer_id or customer.get("external_id"),
        "currency": _text(invoice, "currency"),
        "issuing_date": date.fromisoformat(_text(invoice, "issuing_date")),
        "status": _text(invoice, "status"),
        "payment_status": _text(invoice, "payment_status"),
        "body": dumps(invoice),
        "event_at": item.event_at,
    }
    row.update({name: _int(invoice, name) for name in INVOICE_AMOUNTS})
    fees = tuple(_fee(lago_id, n, fee) for n, fee in enumerate(_list(invoice, "fees")))
    applied = _list(invoice, "applied_usage_thresholds", required=False)
    thresholds = tuple(_threshold(lago_id, n, entry) for n, entry in enumerate(applied))
    return InvoiceRows(row, fees, thresholds)


def credit_note_row(item: Consumed) -> CreditNoteRow:
    note = _object(item.record.body, "credit_note")
    row: Row = {
        "lago_id": _uuid(note, "lago_id"),
        "webhook_id": item.record.id,
        "lago_invoice_id": _uuid(note, "lago_invoice_id"),
        "number": _text(note, "number"),
        "invoice_number": note.get("invoice_number"),
        "external_subscription_id": item.record.external_subscription_id,
        "external_customer_id": item.record.external_customer_id,
        "currency": _text(note, "currency"),
        "body": dumps(note),
        "event_at": item.event_at,
    }
    row.update({name: _int(note, name) for name in CREDIT_NOTE_AMOUNTS})
    return CreditNoteRow(row)


def _fee(invoice_id: uuid.UUID, position: int, fee: Any) -> Row:
    if not isinstance(fee, dict):
        raise TypeError(f"fees[{position}] is not an object")
    item = _object(fee, "item")
    return {
        "lago_id": _uuid(fee, "lago_id"),
        "invoice_lago_id": invoice_id,
        "position": position,
        "item_type": _text(item, "type"),
        "code": _text(item, "code"),
        "units": Decimal(_text(fee, "units")),
        "amount_cents": _int(fee, "amount_cents"),
    }


def _threshold(invoice_id: uuid.UUID, position: int, entry: Any) -> Row:
    if not isinstance(entry, dict):
        raise TypeError(f"applied_usage_thresholds[{position}] is not an object")
    threshold = _object(entry, "usage_threshold")
    recurring = threshold.get("recurring")
    if not isinstance(recurring, bool):
        raise TypeError("usage_threshold.recurring is not a boolean")
    return {
        "invoice_lago_id": invoice_id,
        "position": position,
        "amount_cents": _int(threshold, "amount_cents"),
        "recurring": recurring,
        "threshold_display_name": threshold.get("threshold_display_name"),
        "lifetime_usage_amount_cents": _int(entry, "lifetime_usage_amount_cents"),
    }


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key} is not an object")
    return value


def _list(parent: dict[str, Any], key: str, *, required: bool = True) -> list[Any]:
    value = parent[key] if required else parent.get(key) or []
    if not isinstance(value, list):
        raise TypeError(f"{key} is not an array")
    return value


def _text(parent: dict[str, Any], key: str) -> str:
    value = parent[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _int(parent: dict[str, Any], key: str) -> int:
    value = parent[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key} is not an integer")
    return value


def _uuid(parent: dict[str, Any], key: str) -> uuid.UUID:
    try:
        return uuid.UUID(_text(parent, key))
    except ValueError:
        raise ValueError(f"{key} is not a UUID") from None


def _explain(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    return str(error) or type(error).__name__
