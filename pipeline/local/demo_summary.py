"""The summary `tollgate demo` prints at the end, read back from PostgreSQL: invoices by reason,
the top customers, the subscriptions blocked at the end and why, webhooks delivered and the
payments the demo made."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pipeline.kernel.commands import Echo
from pipeline.kernel.settings import Settings
from pipeline.local.demo_access import (
    Blocked,
    blocked_subscriptions,
    by_reason,
    read_access_changes,
)
from pipeline.local.demo_payments import PaymentSchedule
from pipeline.local.demo_receiver import Receiver

EXAMPLES = 2


def print_summary(
    demo: Settings, receiver: Receiver, payments: PaymentSchedule, echo: Echo
) -> list[Blocked]:
    """Prints the summary; returns the subscriptions blocked at the end."""
    from sinks.common.db import connect

    with connect(demo.database_url, demo.database_schema, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT body->'billing_periods'->0->>'invoicing_reason', count(*),"
            " sum(total_amount_cents), currency FROM invoices GROUP BY 1, 4 ORDER BY 1"
        ).fetchall()
        top = conn.execute(
            "SELECT external_customer_id, count(*), sum(total_amount_cents) FROM invoices"
            " GROUP BY 1 ORDER BY 3 DESC LIMIT 5"
        ).fetchall()
        notes = conn.execute("SELECT count(*) FROM credit_notes").fetchone()
        blocked = blocked_subscriptions(read_access_changes(conn))
    echo(f"{'invoices by reason':<28}{'count':>8}{'total':>16}")
    for reason, count, total, currency in rows:
        echo(f"{reason or '-':<28}{count:>8}{_money(total, currency):>16}")
    echo("")
    echo(f"{'top customers':<28}{'invoices':>8}{'billed':>16}")
    for customer, count, total in top:
        echo(f"{customer:<28}{count:>8}{_money(total, 'USD'):>16}")
    echo("")
    print_blocked(blocked, echo)
    echo("")
    delivered = ", ".join(f"{k} {v}" for k, v in sorted(receiver.by_type.items())) or "none"
    echo(
        f"webhooks delivered (once per id, signatures checked): {delivered}; "
        f"rejected signatures: {receiver.rejected}; credit notes: {notes[0] if notes else 0}"
    )
    echo(
        f"progressive invoices: {payments.paid} paid by their customers, "
        f"{payments.left_unpaid} left unpaid"
    )
    echo(f"finished at {datetime.now(UTC).isoformat(timespec='seconds')}")
    return blocked


def print_blocked(blocked: list[Blocked], echo: Echo) -> None:
    """Blocked subscriptions by the reason of their latest blocking access change, with the
    first few of each."""
    echo(f"{'blocked subscriptions':<28}{'count':>8}   for example (features blocked)")
    for reason, items in by_reason(blocked).items():
        shown = items[:EXAMPLES]
        examples = ", ".join(f"{b.subscription} ({', '.join(b.features)})" for b in shown)
        echo(f"{reason:<28}{len(items):>8}   {examples}")
    if not blocked:
        echo(f"{'none':<28}{0:>8}")


def _money(total: Decimal | int | None, currency: str) -> str:
    cents = int(total or 0)  # SUM() arrives as a Decimal
    return f"{currency} {cents // 100:,}.{cents % 100:02d}"
