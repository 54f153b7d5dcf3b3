"""The pure parts of `tollgate demo`: its subscriptions (valid against the example catalogue),
which invoices its customers pay and when, and which subscriptions end up blocked and why."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.clients.catalog_file import Definition, load_catalog_file, validate_definitions
from pipeline.local.demo_access import (
    AccessChange,
    Blocked,
    blocked_subscriptions,
    by_reason,
    parse_access_change,
)
from pipeline.local.demo_catalog import (
    MAX_UNPAID_AMOUNT_CENTS,
    PAYMENT_GRACE_SECONDS,
    TRIAL_TOKENS,
    demo_subscription,
    spend_alert,
)
from pipeline.local.demo_payments import Invoice, PaymentSchedule, pays
from pipeline.local.demo_summary import print_blocked

CATALOG = Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml"


def test_the_demo_subscriptions_and_alerts_are_valid_on_the_example_catalogue() -> None:
    shared = [d for d in load_catalog_file(CATALOG) if d.kind not in ("subscription", "alert")]
    made = [demo_subscription("abc123", index) for index in range(40)]
    definitions = [
        *shared,
        *(Definition("subscription", s, f"demo[{i}]") for i, s in enumerate(made)),
        *(Definition("alert", spend_alert(s["external_id"]), "alert") for s in made),
    ]

    validate_definitions(definitions)  # raises, naming each problem, if one is bad

    starters = [s for s in made if s["plan_code"] == "ai-starter"]
    others = [s for s in made if s["plan_code"] != "ai-starter"]
    assert all(s["payment_grace_seconds"] == PAYMENT_GRACE_SECONDS for s in starters)
    assert not any("payment_grace_seconds" in s or "entitlements" in s for s in others)
    capped = [s for s in starters if s.get("max_unpaid_amount_cents") == MAX_UNPAID_AMOUNT_CENTS]
    trials = [s for s in starters if "entitlements" in s]
    own_thresholds = [s for s in starters if "usage_thresholds" in s]
    assert len(capped) == len(starters) // 2
    assert trials and own_thresholds
    assert not any("usage_thresholds" in s for s in trials)
    assert trials[0]["entitlements"] == [
        {"feature_code": "ai_tokens", "privileges": {"monthly_tokens": TRIAL_TOKENS}}
    ]
    assert made[1]["external_id"] == "abc123-sub-0001" and made[1] in trials  # small runs too


def test_half_the_customers_pay_and_always_the_same_ones() -> None:
    names = [f"run-sub-{index:04d}" for index in range(1000)]
    paying = [name for name in names if pays(name)]
    assert 400 < len(paying) < 600
    assert paying == [name for name in names if pays(name)]


def test_an_invoice_of_a_paying_customer_is_paid_after_the_delay_and_once() -> None:
    schedule = PaymentSchedule(3.0, payer=lambda subscription: subscription == "payer")
    first, second = Invoice("i-1", "payer"), Invoice("i-2", "payer")
    unpaid = Invoice("i-3", "never")

    schedule.note([first, unpaid], now=10.0)
    schedule.note([first, unpaid, second], now=11.0)  # still pending in the table: noted once

    assert schedule.take_due(12.9) == []
    assert schedule.waiting == 2
    assert schedule.take_due(13.0) == [first]
    assert schedule.take_due(20.0) == [second]
    assert schedule.take_due(30.0) == []
    assert (schedule.paid, schedule.left_unpaid, schedule.waiting) == (2, 1, 0)


def body(subscription: str, feature: str, reason: str) -> str:
    access = {
        "external_subscription_id": subscription,
        "feature_code": feature,
        "allowed": reason == "allowed",
        "reason": reason,
        "remaining": None,
        "evaluated_at": "2025-03-01T00:00:00Z",
    }
    return json.dumps(
        {"webhook_type": "subscription.access_changed", "object_type": "access", "access": access}
    )


def test_a_stored_body_is_read_and_a_body_of_another_shape_is_skipped() -> None:
    assert parse_access_change(body("s", "f", "quota_exhausted")) == AccessChange(
        "s", "f", "quota_exhausted"
    )
    for bad in ("not json", "[]", '{"access": 3}', '{"access": {"reason": 1}}'):
        assert parse_access_change(bad) is None


def test_a_subscription_is_blocked_by_its_latest_decisions_for_the_latest_reason() -> None:
    changes = [
        AccessChange("a", "ai_tokens", "quota_exhausted"),
        AccessChange("b", "ai_tokens", "payment_overdue"),
        AccessChange("b", "support", "payment_overdue"),
        AccessChange("c", "ai_tokens", "quota_exhausted"),
        AccessChange("a", "support", "payment_overdue"),
        AccessChange("a", "ai_tokens", "payment_overdue"),
        AccessChange("b", "ai_tokens", "quota_exhausted"),  # paid: back to its quota
        AccessChange("b", "support", "allowed"),
        AccessChange("c", "ai_tokens", "allowed"),  # a new period: unblocked
    ]

    blocked = blocked_subscriptions(changes)

    assert blocked == [
        Blocked("a", "payment_overdue", ("ai_tokens", "support")),
        Blocked("b", "quota_exhausted", ("ai_tokens",)),
    ]
    grouped = by_reason([*blocked, Blocked("d", "quota_exhausted", ("ai_tokens",))])
    assert list(grouped) == ["quota_exhausted", "payment_overdue"]  # most frequent first
    lines: list[str] = []
    print_blocked(blocked, lines.append)
    assert lines[1].split() == ["payment_overdue", "1", "a", "(ai_tokens,", "support)"]
    assert blocked_subscriptions([]) == []
