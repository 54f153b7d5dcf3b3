"""The subscriptions `tollgate demo` makes on the plans of examples/catalog.yaml, and their usage
alerts: pure, so that a test can validate them against the catalogue with the engine's parsers.

Each kind of override the catalogue shows appears on some of them, so that a demo run shows its
effect: AI Starter subscriptions have 20 s of payment grace (short enough to be seen going
overdue during a run; the other plans bill in advance and carry no terms), every other one a
$120 cap on unpaid invoices, one in five its own thresholds (an invoice every $25) and another
one in five a trial allowance of 10 million tokens, used up early in a run.
"""

from __future__ import annotations

from typing import Any, Final

PLANS: Final = ("ai-starter", "ai-starter", "ai-team", "api-growth")
METRIC_OF_PLAN: Final = {
    "ai-starter": "llm_tokens",
    "ai-team": "llm_tokens",
    "api-growth": "api_requests",
}
PAYMENT_GRACE_SECONDS: Final = 20
MAX_UNPAID_AMOUNT_CENTS: Final = 12000
TRIAL_TOKENS: Final = 10_000_000


def demo_subscription(run_id: str, index: int) -> dict[str, Any]:
    """The `index`-th subscription of run `run_id` (Lago's shape, tollgate's payment terms)."""
    plan = PLANS[index % len(PLANS)]
    definition: dict[str, Any] = {
        "external_id": f"{run_id}-sub-{index:04d}",
        "external_customer_id": f"{run_id}-customer-{index:04d}",
        "plan_code": plan,
    }
    if plan != "ai-starter":
        return definition
    definition["payment_grace_seconds"] = PAYMENT_GRACE_SECONDS
    if index % 4 == 1:
        definition["max_unpaid_amount_cents"] = MAX_UNPAID_AMOUNT_CENTS
    if index % 5 == 4:
        definition["usage_thresholds"] = [
            {"amount_cents": 2500, "threshold_display_name": "every $25", "recurring": True}
        ]
    elif index % 5 == 1:
        definition["entitlements"] = [
            {"feature_code": "ai_tokens", "privileges": {"monthly_tokens": TRIAL_TOKENS}}
        ]
    return definition


def spend_alert(subscription: str) -> dict[str, Any]:
    """A usage alert for every demo subscription: at $20 of usage this month, then every $50."""
    return {
        "external_subscription_id": subscription,
        "code": "monthly_spend",
        "name": "Monthly spend",
        "alert_type": "current_usage_amount",
        "thresholds": [{"code": "$20", "value": "2000"}, {"value": "5000", "recurring": True}],
    }
