"""`tollgate invoices pay`: publish one invoice payment record (spec §12), keyed by the
invoice's subscription, to the usage-events topic; the worker applies it in order with that
subscription's events and emits `invoice.payment_status_updated`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.billing.timestamps import iso
from pipeline.clients.catalog_apply import applies_at
from pipeline.clients.producer import UsageProducer, ensure_topics_for
from pipeline.kernel.commands import Echo
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import DEFAULT_SCHEMA_IDS, SchemaIds


def invoice_payment(
    lago_invoice_id: str, external_subscription_id: str, payment_status: str = "succeeded"
) -> dict[str, Any]:
    """The `invoice_payment` record of spec §12: Lago's invoice update, keyed by subscription."""
    return {
        "lago_invoice_id": lago_invoice_id,
        "external_subscription_id": external_subscription_id,
        "payment_status": payment_status,
    }


def run(
    settings: Settings,
    payment: dict[str, Any],
    *,
    at: datetime | str | None = None,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
    echo: Echo = print,
) -> None:
    when = applies_at(at)
    topics = Topics.with_prefix(settings.topic_prefix)
    ensure_topics_for(settings)
    bootstrap, limit = settings.kafka_bootstrap, settings.max_message_bytes
    with UsageProducer(bootstrap, topics, schema_ids=ids, max_message_bytes=limit) as producer:
        producer.send_payment(payment, at=when)
    echo(
        f"invoice {payment['lago_invoice_id']} of {payment['external_subscription_id']}: "
        f"payment_status {payment['payment_status']} at {iso(when)} ({topics.usage_events})"
    )
