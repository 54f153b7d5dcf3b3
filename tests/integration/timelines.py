"""Generated timelines for the live-pipeline tests: many events, thresholds, period closes."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

START = datetime(2025, 1, 1, tzinfo=UTC)


def _line(at: datetime, kind: str, **payload: object) -> str:
    return json.dumps({"at": at.isoformat().replace("+00:00", "Z"), "type": kind, **payload})


def busy_timeline(*, subscriptions: int, events: int, seed: int = 7) -> list[str]:
    """Subscriptions on a threshold plan, `events` usage events over ~75 days (two closes)."""
    rng = random.Random(seed)
    lines = [
        _line(
            START,
            "billable_metric",
            billable_metric={
                "code": "tokens",
                "aggregation_type": "sum_agg",
                "field_name": "tokens",
            },
        ),
        _line(
            START,
            "plan",
            plan={
                "code": "ai",
                "interval": "monthly",
                "amount_cents": 1500,
                "amount_currency": "USD",
                "charges": [
                    {
                        "billable_metric_code": "tokens",
                        "charge_model": "standard",
                        "properties": {"amount": "0.001"},
                    }
                ],
                "usage_thresholds": [
                    {"amount_cents": 2000},
                    {"amount_cents": 5000, "recurring": True},
                ],
            },
        ),
    ]
    for index in range(subscriptions):
        lines.append(
            _line(
                START,
                "subscription",
                subscription={
                    "external_id": f"sub-{index}",
                    "external_customer_id": f"cus-{index}",
                    "plan_code": "ai",
                },
            )
        )
    step = timedelta(days=75) / events
    for index in range(events):
        at = START + step * (index + 1)
        lines.append(
            _line(
                at,
                "event",
                event={
                    "transaction_id": f"tx-{index}",
                    "external_subscription_id": f"sub-{rng.randrange(subscriptions)}",
                    "code": "tokens",
                    "properties": {"tokens": rng.randrange(1, 400)},
                },
            )
        )
    lines.append(_line(START + timedelta(days=76), "tick"))
    return lines
