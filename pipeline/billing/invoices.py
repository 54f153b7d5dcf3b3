"""Invoice and credit-note objects in Lago's shape (spec §6, §10).

Fields tollgate has no concept of yet (coupons, prepaid credits, payment terms) are present with
zeros so that Lago's own client parses our objects unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pipeline.billing import ids
from pipeline.billing.catalog import Customer, UsageThreshold
from pipeline.billing.money import percent_of
from pipeline.billing.timestamps import iso

PROGRESSIVE = "progressive_billing"
SUBSCRIPTION = "subscription"
LAGO_INVOICE_VERSION = 4


@dataclass(frozen=True, slots=True)
class FeeLine:
    item_type: str  # "charge" or "subscription"
    code: str  # billable metric code or plan code
    units: Decimal
    amount_cents: int
    events_count: int = 0


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    subscription_from: datetime
    subscription_to: datetime
    charges_from: datetime
    charges_to: datetime
    invoicing_reason: str


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice as computed; `invoice_object` renders it for the wire."""

    lago_id: str
    sequential_id: int
    invoice_type: str
    currency: str
    issuing_date: str  # customer-local YYYY-MM-DD
    fees: tuple[FeeLine, ...]
    credit_cents: int  # progressive_billing_credit_amount_cents
    taxes_cents: int
    billing_period: BillingPeriod
    applied_thresholds: tuple[UsageThreshold, ...] = ()
    lifetime_usage_cents: int = 0

    @property
    def fees_cents(self) -> int:
        return sum(line.amount_cents for line in self.fees)

    @property
    def charge_fees_cents(self) -> int:
        return sum(line.amount_cents for line in self.fees if line.item_type == "charge")

    @property
    def subtotal_cents(self) -> int:
        return self.fees_cents - self.credit_cents

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents + self.taxes_cents


def taxes_on(subtotal_cents: int, customer: Customer) -> int:
    """Taxes once per invoice: round_half_up(subtotal × Σ rates / 100)."""
    return percent_of(subtotal_cents, customer.tax_rate) if customer.taxes else 0


@dataclass(frozen=True, slots=True)
class ProgressiveRef:
    """What a period remembers of its latest progressive invoice (P and the credit chain)."""

    lago_id: str
    sequential_id: int
    fees_cents: int


@dataclass(frozen=True, slots=True)
class Parties:
    """Who an invoice is for: what every object about one subscription repeats."""

    subscription_lago_id: str
    external_subscription_id: str
    plan_code: str
    customer: Customer
    customer_created_at: datetime


def invoice_object(invoice: Invoice, parties: Parties) -> dict[str, Any]:
    total = invoice.total_cents
    number = ids.invoice_number(parties.subscription_lago_id, invoice.sequential_id)
    return {
        "lago_id": invoice.lago_id,
        "sequential_id": invoice.sequential_id,
        "number": number,
        "issuing_date": invoice.issuing_date,
        "payment_due_date": invoice.issuing_date,
        "payment_overdue": False,
        "net_payment_term": 0,
        "invoice_type": invoice.invoice_type,
        "version_number": LAGO_INVOICE_VERSION,
        "status": "finalized",
        "payment_status": "succeeded" if total == 0 else "pending",
        "currency": invoice.currency,
        "fees_amount_cents": invoice.fees_cents,
        "coupons_amount_cents": 0,
        "taxes_amount_cents": invoice.taxes_cents,
        "credit_notes_amount_cents": 0,
        "progressive_billing_credit_amount_cents": invoice.credit_cents,
        "sub_total_excluding_taxes_amount_cents": invoice.subtotal_cents,
        "sub_total_including_taxes_amount_cents": total,
        "total_amount_cents": total,
        "total_due_amount_cents": total,
        "prepaid_credit_amount_cents": 0,
        "customer": customer_object(parties),
        "billing_periods": [_billing_period_object(invoice.billing_period, parties)],
        "fees": [_fee_object(invoice, line, parties) for line in invoice.fees],
        "applied_usage_thresholds": [
            {
                "lifetime_usage_amount_cents": invoice.lifetime_usage_cents,
                "usage_threshold": threshold_object(threshold),
            }
            for threshold in invoice.applied_thresholds
        ],
    }


def with_payment_status(invoice: dict[str, Any], payment_status: str) -> dict[str, Any]:
    """The invoice as issued with a new `payment_status` (spec §12: what
    `invoice.payment_status_updated` carries; `payment_overdue` stays as issued). A new dict:
    the invoice as issued is kept unchanged."""
    updated = dict(invoice)
    updated["payment_status"] = payment_status
    return updated


def customer_object(parties: Parties) -> dict[str, Any]:
    customer = parties.customer
    created = iso(parties.customer_created_at)
    return {
        "lago_id": ids.customer_id(customer.external_id),
        "external_id": customer.external_id,
        "currency": customer.currency,
        "timezone": customer.timezone,
        "applicable_timezone": customer.timezone,
        "created_at": created,
        "updated_at": created,
        "taxes": [
            {
                "lago_id": ids.stable_id("tax", tax.code),
                "name": tax.code,
                "code": tax.code,
                "rate": float(tax.rate),  # a percentage for display; amounts use the Decimal
                "created_at": created,
            }
            for tax in customer.taxes
        ],
    }


def threshold_object(threshold: UsageThreshold) -> dict[str, Any]:
    return {
        "amount_cents": threshold.amount_cents,
        "threshold_display_name": threshold.threshold_display_name,
        "recurring": threshold.recurring,
    }


def _billing_period_object(period: BillingPeriod, parties: Parties) -> dict[str, Any]:
    return {
        "lago_subscription_id": parties.subscription_lago_id,
        "external_subscription_id": parties.external_subscription_id,
        "lago_plan_id": ids.plan_id(parties.plan_code),
        "subscription_from_datetime": iso(period.subscription_from),
        "subscription_to_datetime": iso(period.subscription_to),
        "charges_from_datetime": iso(period.charges_from),
        "charges_to_datetime": iso(period.charges_to),
        "invoicing_reason": period.invoicing_reason,
    }


def _fee_object(invoice: Invoice, line: FeeLine, parties: Parties) -> dict[str, Any]:
    fee: dict[str, Any] = {
        "lago_id": ids.stable_id("fee", invoice.lago_id, line.item_type, line.code),
        "lago_invoice_id": invoice.lago_id,
        "external_subscription_id": parties.external_subscription_id,
        "external_customer_id": parties.customer.external_id,
        "item": {"type": line.item_type, "code": line.code, "name": line.code},
        "units": format_units(line.units),
        "amount_cents": line.amount_cents,
        "amount_currency": invoice.currency,
    }
    if line.item_type == "charge":
        fee["billable_metric_code"] = line.code
        fee["events_count"] = line.events_count
    return fee


def format_units(units: Decimal) -> str:
    """A decimal string without exponent: `1E+3` → `"1000"`, `2.50` → `"2.5"`."""
    text = format(units.normalize(), "f")
    return "0" if text in ("-0", "") else text


def credit_note_object(
    closing: Invoice,
    credited: ProgressiveRef,
    parties: Parties,
    excess_cents: int,
    created_at: datetime,
) -> dict[str, Any]:
    """The credit note against the `credited` progressive invoice for the excess that the
    `closing` invoice could not deduct (its credit is capped at its charge fees)."""
    customer = parties.customer
    taxes = taxes_on(excess_cents, customer)
    total = excess_cents + taxes
    credited_number = ids.invoice_number(parties.subscription_lago_id, credited.sequential_id)
    return {
        "lago_id": ids.stable_id("credit_note", closing.lago_id),
        "sequential_id": 1,
        "number": f"{credited_number}-CN001",
        "lago_invoice_id": credited.lago_id,
        "invoice_number": credited_number,
        "credit_status": "available",
        "refund_status": None,
        "reason": "other",
        "currency": closing.currency,
        "total_amount_cents": total,
        "credit_amount_cents": total,
        "balance_amount_cents": total,
        "refund_amount_cents": 0,
        "offset_amount_cents": 0,
        "taxes_amount_cents": taxes,
        "taxes_rate": float(customer.tax_rate),
        "sub_total_excluding_taxes_amount_cents": excess_cents,
        "coupons_adjustment_amount_cents": 0,
        "created_at": iso(created_at),
        "updated_at": iso(created_at),
        "customer": customer_object(parties),
    }
