"""`tollgate invoices list | show`: read the stored invoices back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sinks.common.db import Connection


@dataclass(frozen=True, slots=True)
class InvoiceSummary:
    lago_id: uuid.UUID
    number: str
    issuing_date: date
    external_customer_id: str | None
    external_subscription_id: str | None
    invoice_type: str
    invoicing_reason: str | None
    currency: str
    fees_amount_cents: int
    progressive_billing_credit_amount_cents: int
    taxes_amount_cents: int
    total_amount_cents: int
    status: str
    payment_status: str
    body: str  # the stored invoice object, as JSON text (indented by `find_invoices`)


@dataclass(frozen=True, slots=True)
class Fee:
    item_type: str
    code: str
    units: Decimal
    amount_cents: int


@dataclass(frozen=True, slots=True)
class AppliedThreshold:
    amount_cents: int
    recurring: bool
    threshold_display_name: str | None
    lifetime_usage_amount_cents: int


@dataclass(frozen=True, slots=True)
class CreditNote:
    number: str
    total_amount_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class InvoiceDetail:
    invoice: InvoiceSummary
    fees: list[Fee]
    thresholds: list[AppliedThreshold]
    credit_notes: list[CreditNote]


_COLUMNS = (
    "lago_id, number, issuing_date, external_customer_id, external_subscription_id,"
    " invoice_type, invoicing_reason, currency, fees_amount_cents,"
    " progressive_billing_credit_amount_cents, taxes_amount_cents, total_amount_cents, status,"
    " payment_status"
)
_SUMMARY = f"SELECT {_COLUMNS}, body::text FROM invoices"
_DETAIL = f"SELECT {_COLUMNS}, jsonb_pretty(body) FROM invoices"


def list_invoices(
    conn: Connection, *, customer: str | None, subscription: str | None, limit: int
) -> list[InvoiceSummary]:
    """Newest first: by issuing date, then by sequence within a subscription."""
    rows = conn.execute(
        f"{_SUMMARY} WHERE (%(customer)s::text IS NULL OR external_customer_id = %(customer)s)"
        " AND (%(subscription)s::text IS NULL OR external_subscription_id = %(subscription)s)"
        " ORDER BY issuing_date DESC, external_subscription_id, sequential_id DESC"
        " LIMIT %(limit)s",
        {"customer": customer, "subscription": subscription, "limit": limit},
    ).fetchall()
    return [InvoiceSummary(*row) for row in rows]


def find_invoices(conn: Connection, number_or_id: str) -> list[InvoiceDetail]:
    """The invoice with that lago_id, or those with that number (numbers are per subscription,
    so two subscriptions could in principle share one)."""
    try:
        key, where = uuid.UUID(number_or_id), "lago_id = %s"
    except ValueError:
        key, where = number_or_id, "number = %s"  # type: ignore[assignment]
    rows = conn.execute(f"{_DETAIL} WHERE {where} ORDER BY lago_id", (key,)).fetchall()
    return [_detail(conn, InvoiceSummary(*row)) for row in rows]


def _detail(conn: Connection, invoice: InvoiceSummary) -> InvoiceDetail:
    fees = conn.execute(
        "SELECT item_type, code, units, amount_cents FROM invoice_fees"
        " WHERE invoice_lago_id = %s ORDER BY position",
        (invoice.lago_id,),
    ).fetchall()
    thresholds = conn.execute(
        "SELECT amount_cents, recurring, threshold_display_name, lifetime_usage_amount_cents"
        " FROM applied_usage_thresholds WHERE invoice_lago_id = %s ORDER BY position",
        (invoice.lago_id,),
    ).fetchall()
    notes = conn.execute(
        "SELECT number, total_amount_cents, currency FROM credit_notes"
        " WHERE lago_invoice_id = %s ORDER BY number",
        (invoice.lago_id,),
    ).fetchall()
    return InvoiceDetail(
        invoice,
        [Fee(*row) for row in fees],
        [AppliedThreshold(*row) for row in thresholds],
        [CreditNote(*row) for row in notes],
    )
