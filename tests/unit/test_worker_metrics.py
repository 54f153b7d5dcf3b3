"""The worker's counters, from what one applied batch produced (no Kafka)."""

from __future__ import annotations

from typing import Any

from pipeline.billing import webhooks
from pipeline.worker import metrics
from pipeline.worker.partition import Applied
from pipeline.worker.runner import count_metrics


def access_changed(subscription: str, feature: str, reason: str) -> Any:
    access = {
        "external_subscription_id": subscription,
        "feature_code": feature,
        "allowed": reason == "allowed",
        "reason": reason,
        "remaining": None,
        "evaluated_at": "2025-03-01T00:00:00Z",
    }
    return webhooks.webhook(
        "subscription.access_changed",
        "access",
        access,
        subscription,
        feature,
        reason,
        external_subscription_id=subscription,
    )


def value(reason: str) -> float:
    return float(metrics.ACCESS_CHANGES.labels(reason)._value.get())


def test_access_changes_are_counted_by_their_new_reason() -> None:
    reasons = ("payment_overdue", "quota_exhausted", "allowed")
    before = {reason: value(reason) for reason in reasons}
    applied = Applied(
        outputs=[
            access_changed("sub-1", "ai_tokens", "quota_exhausted"),
            access_changed("sub-1", "ai_tokens", "payment_overdue"),
            access_changed("sub-1", "support", "payment_overdue"),
            access_changed("sub-2", "ai_tokens", "allowed"),
        ]
    )

    count_metrics(applied, [])

    assert {reason: value(reason) - before[reason] for reason in reasons} == {
        "payment_overdue": 2,
        "quota_exhausted": 1,
        "allowed": 1,
    }
