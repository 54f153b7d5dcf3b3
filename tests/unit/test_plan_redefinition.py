"""Spec §3 "Changes" (issue 9): a plan redefinition that changes neither the charges nor the
thresholds that apply to a subscription runs no threshold check for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.billing.engine import Ledger, Record

START = datetime(2025, 1, 1, tzinfo=UTC)
PLAN: dict[str, Any] = {
    "code": "p",
    "interval": "monthly",
    "amount_cents": 0,
    "amount_currency": "USD",
    "charges": [
        {"billable_metric_code": "calls", "charge_model": "standard", "properties": {"amount": "1"}}
    ],
    "usage_thresholds": [{"amount_cents": 100_000}],
}


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.run(
        [
            Record(START, "billable_metric", {"code": "calls", "aggregation_type": "count_agg"}),
            Record(START, "plan", PLAN),
            Record(
                START,
                "subscription",
                {
                    "external_id": "own",
                    "external_customer_id": "c",
                    "plan_code": "p",
                    "usage_thresholds": [
                        {"amount_cents": 250},
                        {"amount_cents": 300, "recurring": True},
                    ],
                },
            ),
            Record(
                START,
                "subscription",
                {"external_id": "planned", "external_customer_id": "c", "plan_code": "p"},
            ),
        ]
    )
    events = [
        Record(
            START + timedelta(hours=n + 1),
            "event",
            {"transaction_id": f"t{n}", "external_subscription_id": sub, "code": "calls"},
        )
        for n in range(8)
        for sub in ("own", "planned")
    ]
    ledger.run(events)
    return ledger


def test_only_the_subscriptions_whose_applicable_thresholds_changed_are_checked() -> None:
    ledger = _ledger()
    trigger = ledger.subscriptions["own"].trigger
    lower = {**PLAN, "usage_thresholds": [{"amount_cents": 500}]}
    change = ledger.run([Record(START + timedelta(days=1), "plan", lower)])
    assert change.touched == frozenset({"planned"})  # "own" keeps its own thresholds
    assert [o.external_subscription_id for o in change.outputs] == ["planned", "planned"]
    assert ledger.subscriptions["own"].trigger == trigger


def test_a_charge_change_still_reprices_and_checks_every_subscription() -> None:
    ledger = _ledger()
    dearer = {
        **PLAN,
        "charges": [{**PLAN["charges"][0], "properties": {"amount": "2"}}],
    }
    change = ledger.run([Record(START + timedelta(days=1), "plan", dearer)])
    assert change.touched == frozenset({"own", "planned"})
    assert ledger.subscriptions["own"].current == 1600
