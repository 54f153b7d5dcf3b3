"""Webhook bodies (spec §7) and the outputs that carry them, each with a stable id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.billing import ids


@dataclass(frozen=True, slots=True)
class Output:
    """One webhook to deliver. `id` is the same on every retry and replay (Standard Webhooks
    `webhook-id`), so receivers and sinks drop duplicates by it."""

    id: str
    webhook_type: str
    object_type: str
    body: dict[str, Any]
    external_subscription_id: str | None
    external_customer_id: str | None


def webhook(
    webhook_type: str,
    object_type: str,
    obj: dict[str, Any],
    *id_parts: object,
    external_subscription_id: str | None = None,
    external_customer_id: str | None = None,
) -> Output:
    body = {"webhook_type": webhook_type, "object_type": object_type, object_type: obj}
    return Output(
        ids.stable_id(webhook_type, *id_parts),
        webhook_type,
        object_type,
        body,
        external_subscription_id,
        external_customer_id,
    )


def invoice_created(invoice: dict[str, Any], subscription: str, customer: str) -> Output:
    return webhook(
        "invoice.created",
        "invoice",
        invoice,
        invoice["lago_id"],
        external_subscription_id=subscription,
        external_customer_id=customer,
    )


def credit_note_created(credit_note: dict[str, Any], subscription: str, customer: str) -> Output:
    return webhook(
        "credit_note.created",
        "credit_note",
        credit_note,
        credit_note["lago_id"],
        external_subscription_id=subscription,
        external_customer_id=customer,
    )


def usage_threshold_reached(
    subscription: dict[str, Any], invoice_lago_id: str, index: int
) -> Output:
    return webhook(
        "subscription.usage_threshold_reached",
        "subscription",
        subscription,
        invoice_lago_id,
        index,
        external_subscription_id=subscription["external_id"],
        external_customer_id=subscription["external_customer_id"],
    )


def alert_triggered(triggered_alert: dict[str, Any], lago_alert_id: str, count: int) -> Output:
    return webhook(
        "alert.triggered",
        "triggered_alert",
        triggered_alert,
        lago_alert_id,
        count,
        external_subscription_id=triggered_alert["external_subscription_id"],
        external_customer_id=triggered_alert["external_customer_id"],
    )


def event_error(
    reason: str, message: str, event: object, ref: str, subscription: str | None
) -> Output:
    return webhook(
        "event.error",
        "event_error",
        {"error": reason, "message": message, "event": event},
        ref,
        reason,
        external_subscription_id=subscription,
    )
