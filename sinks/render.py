"""Plain aligned text for the `invoices` and `webhooks` commands. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sinks.invoices.queries import InvoiceDetail, InvoiceSummary
from sinks.webhooks.admin import Delivery, Endpoint


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def money(cents: int, currency: str | None = None) -> str:
    """Integer cents as ``1234.56`` (every currency has 2 decimals, spec §1)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    text = f"{sign}{whole}.{part:02d}"
    return f"{text} {currency}" if currency else text


def invoices_table(invoices: Sequence[InvoiceSummary]) -> str:
    headers = ("NUMBER", "ISSUED", "CUSTOMER", "SUBSCRIPTION", "REASON", "TOTAL", "CUR", "PAYMENT")
    rows = [
        (
            invoice.number,
            invoice.issuing_date.isoformat(),
            invoice.external_customer_id or "-",
            invoice.external_subscription_id or "-",
            invoice.invoicing_reason or invoice.invoice_type,
            money(invoice.total_amount_cents),
            invoice.currency,
            invoice.payment_status,
        )
        for invoice in invoices
    ]
    return table(headers, rows)


def invoice_detail(detail: InvoiceDetail) -> str:
    invoice, cur = detail.invoice, detail.invoice.currency
    subtotal = invoice.fees_amount_cents - invoice.progressive_billing_credit_amount_cents
    lines = [
        f"Invoice {invoice.number}  ({invoice.lago_id})",
        f"  type           {invoice.invoice_type} ({invoice.invoicing_reason or '-'})",
        f"  customer       {invoice.external_customer_id or '-'}",
        f"  subscription   {invoice.external_subscription_id or '-'}",
        f"  issued         {invoice.issuing_date.isoformat()}",
        f"  status         {invoice.status}, payment {invoice.payment_status}",
        f"  fees           {money(invoice.fees_amount_cents, cur)}",
        f"  credit         {money(-invoice.progressive_billing_credit_amount_cents, cur)}",
        f"  subtotal       {money(subtotal, cur)}",
        f"  taxes          {money(invoice.taxes_amount_cents, cur)}",
        f"  total          {money(invoice.total_amount_cents, cur)}",
        "",
        "Fees",
        _indent(
            table(
                ("ITEM", "CODE", "UNITS", "AMOUNT"),
                [
                    (fee.item_type, fee.code, fee.units, money(fee.amount_cents))
                    for fee in detail.fees
                ],
            )
        ),
    ]
    if detail.thresholds:
        rows = [
            (
                t.threshold_display_name or "-",
                money(t.amount_cents),
                "yes" if t.recurring else "no",
                money(t.lifetime_usage_amount_cents),
            )
            for t in detail.thresholds
        ]
        headers = ("THRESHOLD", "AMOUNT", "RECURRING", "LIFETIME USAGE")
        lines += ["", "Usage thresholds crossed", _indent(table(headers, rows))]
    if detail.credit_notes:
        notes = [
            (note.number, money(note.total_amount_cents, note.currency))
            for note in detail.credit_notes
        ]
        lines += ["", "Credit notes", _indent(table(("NUMBER", "TOTAL"), notes))]
    return "\n".join(lines)


def endpoints_table(endpoints: Sequence[Endpoint]) -> str:
    headers = ("ID", "URL", "EVENTS", "LAGO SIG", "PENDING", "DELIVERED", "FAILED", "CREATED")
    rows = [
        (
            e.id,
            e.url,
            ",".join(e.event_types) if e.event_types else "all",
            "yes" if e.lago_signature else "no",
            e.pending,
            e.delivered,
            e.failed,
            _when(e.created_at),
        )
        for e in endpoints
    ]
    return table(headers, rows)


def deliveries_table(deliveries: Sequence[Delivery]) -> str:
    headers = (
        "ID",
        "ENDPOINT",
        "WEBHOOK ID",
        "TYPE",
        "STATUS",
        "ATTEMPTS",
        "HTTP",
        "NEXT / DONE",
        "LAST ERROR",
    )
    rows = [
        (
            d.id,
            d.endpoint_id,
            d.webhook_id,
            d.webhook_type,
            d.status,
            d.attempts,
            d.last_status_code or "-",
            _when(d.delivered_at if d.delivered_at else d.next_attempt_at),
            (d.last_error or "-")[:60].replace("\n", " "),
        )
        for d in deliveries
    ]
    return table(headers, rows)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S%z") if moment else "-"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _is_number(value: object) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    text = str(value)
    return text.replace(".", "", 1).lstrip("-").isdigit()
