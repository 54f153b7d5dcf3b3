"""Read queries of the HTTP API (spec §13) on small ledgers, with expectations worked out by hand,
every object parsed by Lago's own client models, and a property: a query never changes a ledger.

The plan charges `tokens` (sum) at 0.01 a unit (1 token = 1 cent) and `calls` (count, metric
name "API calls") at 0.50 a call, monthly, with a 10.00 plan fee in arrears; usage thresholds
10.00 and 30.00, and 5.00 recurring. Customer `c1` pays 10 % tax. Subscription `s1` starts on
March 1st with 2.00 of historical usage. Feature `api` is metered on `tokens` (plan allowance
1000), `sso` a plain boolean feature, `beta` on no plan.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lago_python_client.models.alert import AlertResponse
from lago_python_client.models.customer_usage import CustomerUsageResponse
from lago_python_client.models.invoice import InvoiceResponse
from lago_python_client.models.lifetime_usage import LifetimeUsageResponse

from pipeline.billing import queries
from pipeline.billing.catalog import NO_THRESHOLDS, DefinitionError, Thresholds, UsageThreshold
from pipeline.billing.context import EngineSettings
from pipeline.billing.engine import Ledger, Record
from pipeline.billing.ids import (
    alert_id,
    charge_id,
    invoice_id,
    lifetime_usage_id,
    metric_id,
    organization_id,
    subscription_id,
)
from pipeline.billing.lifetime import MAX_RECURRING, Completion, Reached, completions
from pipeline.billing.state import (
    DEFINITION_KINDS,
    dump_clock,
    dump_definition,
    dump_subscription,
    load_catalog,
    load_clock,
    load_subscription,
)

BEFORE = datetime(2025, 2, 20, tzinfo=UTC)
START = datetime(2025, 3, 1, tzinfo=UTC)
MID = datetime(2025, 3, 15, tzinfo=UTC)
APRIL = datetime(2025, 4, 1, tzinfo=UTC)
DAY = timedelta(days=1)
S1 = subscription_id("s1", 1)

TOKENS = {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v", "name": "Tokens"}
CALLS = {"code": "calls", "aggregation_type": "count_agg", "name": "API calls"}
API = {
    "code": "api",
    "name": "API",
    "privileges": [{"code": "max_tokens", "value_type": "integer"}],
    "quota": {"billable_metric_code": "tokens", "privilege_code": "max_tokens"},
}
SSO = {"code": "sso", "privileges": [{"code": "enabled", "value_type": "boolean"}]}
BETA = {"code": "beta", "description": "early access"}
PLAN: dict[str, Any] = {
    "code": "p",
    "interval": "monthly",
    "amount_cents": 1000,
    "amount_currency": "USD",
    "charges": [
        {
            "billable_metric_code": "tokens",
            "charge_model": "standard",
            "properties": {"amount": "0.01"},
        },
        {
            "billable_metric_code": "calls",
            "charge_model": "standard",
            "properties": {"amount": "0.50"},
            "invoice_display_name": "Calls",
        },
    ],
    "usage_thresholds": [
        {"amount_cents": 3000},
        {"amount_cents": 1000, "threshold_display_name": "ten"},
        {"amount_cents": 500, "recurring": True},
    ],
    "entitlements": [
        {"feature_code": "api", "privileges": {"max_tokens": 1000}},
        {"feature_code": "sso", "privileges": {"enabled": True}},
    ],
}
CUSTOMER = {"external_id": "c1", "taxes": [{"code": "vat", "rate": "10.0"}]}


class Book:
    """A ledger with the catalogue above and subscription `s1` of customer `c1`."""

    def __init__(
        self, created: datetime = START, customer: dict[str, Any] = CUSTOMER, **subscription: Any
    ) -> None:
        self.ledger = Ledger()
        self.refused: list[str] = []
        self.outputs: list[dict[str, Any]] = []
        self.n = 0
        for kind, payload in [
            ("billable_metric", TOKENS),
            ("billable_metric", CALLS),
            ("feature", API),
            ("feature", SSO),
            ("feature", BETA),
            ("plan", PLAN),
            ("customer", customer),
        ]:
            self.put(BEFORE, kind, payload)
        sub = {
            "external_id": "s1",
            "external_customer_id": "c1",
            "plan_code": "p",
            "subscription_at": START.isoformat(),
            "historical_usage_amount_cents": 200,
        }
        self.put(created, "subscription", sub | subscription)

    def put(self, at: datetime, kind: str, payload: Any) -> list[dict[str, Any]]:
        """The bodies this record emitted."""
        transition = self.ledger.step(Record(at, kind, payload, f"r{self.n}"))
        self.n += 1
        self.refused += [r.message for r in transition.rejections]
        bodies = [o.body for o in transition.outputs]
        self.outputs += bodies
        return bodies

    def use(self, at: datetime, value: int, code: str = "tokens") -> list[dict[str, Any]]:
        event = {"transaction_id": f"e{self.n}", "external_subscription_id": "s1", "code": code}
        return self.put(at, "event", event | {"properties": {"v": value}})

    def alert(self, at: datetime, **fields: Any) -> list[dict[str, Any]]:
        return self.put(at, "alert", {"external_subscription_id": "s1"} | fields)

    def bodies(self, webhook_type: str) -> list[dict[str, Any]]:
        return [b for b in self.outputs if b["webhook_type"] == webhook_type]


def march_usage() -> Book:
    """500 tokens, 1 call, then 400 tokens on March 15th: usage 9.50, lifetime 11.50 crosses
    10.00 (B = 2.00 < L = 30.00; 2.00 < 10.00 ≤ 11.50), one progressive invoice at MID."""
    book = Book()
    book.use(START + DAY, 500)
    book.use(START + DAY, 1, code="calls")
    book.use(MID, 400)
    assert book.refused == []
    assert len(book.bodies("invoice.created")) == 1
    return book


# -- lifetime usage ------------------------------------------------------------------------------


def test_lifetime_usage_after_events_and_a_progressive_invoice():
    book = march_usage()
    usage = queries.lifetime_usage(book.ledger, "s1")
    assert usage == {
        "lago_id": lifetime_usage_id(S1),
        "lago_subscription_id": S1,
        "external_subscription_id": "s1",
        "external_historical_usage_amount_cents": 200,
        "invoiced_usage_amount_cents": 0,
        "current_usage_amount_cents": 950,
        "from_datetime": "2025-03-01T00:00:00Z",
        "to_datetime": "2025-03-15T00:00:00Z",  # the ledger's clock
        "usage_thresholds": [
            {"amount_cents": 1000, "completion_ratio": 1.0, "reached_at": "2025-03-15T00:00:00Z"},
            # (1150 − 1000) / (3000 − 1000)
            {"amount_cents": 3000, "completion_ratio": 0.075, "reached_at": None},
            {"amount_cents": 3500, "completion_ratio": 0.0, "reached_at": None},
        ],
    }
    parsed = LifetimeUsageResponse.parse_obj(usage)
    assert parsed.lago_subscription_id == S1
    assert parsed.usage_thresholds is not None and len(parsed.usage_thresholds) == 3
    threshold_body = book.bodies("subscription.usage_threshold_reached")[0]["subscription"]
    assert threshold_body["lago_id"] == usage["lago_subscription_id"]
    invoice = book.bodies("invoice.created")[0]["invoice"]
    assert invoice["billing_periods"][0]["lago_subscription_id"] == S1


def test_lifetime_usage_counts_closed_periods_and_the_recurring_threshold():
    """April 1st closes March (I = 9.50 of charges; the plan fee is not usage). April 2nd: 2100
    tokens, lifetime 2.00 + 9.50 + 21.00 = 32.50 crosses 30.00. April 3rd: 600 more, lifetime
    38.50: A = 6.00, B = 32.50, A + (B mod 5.00) = 8.50 ≥ 5.00: the recurring one."""
    book = march_usage()
    book.put(APRIL, "tick", None)
    book.use(APRIL + DAY, 2100)
    book.use(APRIL + 2 * DAY, 600)
    applied = [
        [a["usage_threshold"]["amount_cents"] for a in b["invoice"]["applied_usage_thresholds"]]
        for b in book.bodies("invoice.created")
        if b["invoice"]["invoice_type"] == "progressive_billing"
    ]
    assert applied == [[1000], [3000], [500]]
    usage = queries.lifetime_usage(book.ledger, "s1")
    assert usage is not None
    assert (usage["invoiced_usage_amount_cents"], usage["current_usage_amount_cents"]) == (
        950,
        2700,
    )
    assert usage["to_datetime"] == "2025-04-03T00:00:00Z"
    assert usage["usage_thresholds"] == [
        {"amount_cents": 1000, "completion_ratio": 1.0, "reached_at": "2025-03-15T00:00:00Z"},
        {"amount_cents": 3000, "completion_ratio": 1.0, "reached_at": "2025-04-02T00:00:00Z"},
        # steps from 30.00: 35.00 reached at the crossing whose lifetime (38.50) passed it
        {"amount_cents": 3500, "completion_ratio": 1.0, "reached_at": "2025-04-03T00:00:00Z"},
        {"amount_cents": 4000, "completion_ratio": 0.7, "reached_at": None},  # 3.50 of 5.00
    ]
    LifetimeUsageResponse.parse_obj(usage)


def test_lifetime_usage_without_thresholds_or_subscription():
    book = Book(progressive_billing_disabled=True)
    book.use(START + DAY, 5000)
    usage = queries.lifetime_usage(book.ledger, "s1")
    assert usage is not None and usage["usage_thresholds"] == []
    assert usage["current_usage_amount_cents"] == 5000
    LifetimeUsageResponse.parse_obj(usage)
    assert queries.lifetime_usage(book.ledger, "nope") is None


def test_completion_follows_lagos_list():
    fixed = Thresholds((UsageThreshold(1000, None, False), UsageThreshold(3000, None, False)), None)
    assert completions(NO_THRESHOLDS, 5000, (), 7) == []
    # Passed by historical usage alone: no check crossed it, reached "now" (Lago's fallback).
    assert completions(fixed, 1000, (), 7) == [
        Completion(1000, Decimal(1), 7),
        Completion(3000, Decimal(0), None),
    ]
    assert completions(fixed, 500, (), 7) == [
        Completion(1000, Decimal("0.5"), None),
        Completion(3000, Decimal(0), None),
    ]
    # The latest crossing of a fixed threshold is the one shown.
    crossings = (Reached(1000, False, 1200, 5), Reached(1000, False, 1100, 6))
    assert completions(fixed, 1500, crossings, 7)[0] == Completion(1000, Decimal(1), 6)


def test_recurring_steps_count_from_the_largest_fixed_threshold():
    """L = 10, s = 3, total 17: steps 13 and 16 reached, 19 next at 1/3 (Lago's remainder of
    L + total would say 20 at 0: off its own grid)."""
    thresholds = Thresholds((UsageThreshold(10, None, False),), UsageThreshold(3, None, True))
    crossings = (Reached(10, False, 11, 1), Reached(3, True, 14, 2), Reached(3, True, 17, 3))
    entries = completions(thresholds, 17, crossings, 9)
    assert [(e.amount_cents, float(e.ratio), e.reached_us) for e in entries] == [
        (10, 1.0, 1),
        (13, 1.0, 2),
        (16, 1.0, 3),
        (19, 1 / 3, None),
    ]


def test_at_most_the_highest_thousand_recurring_steps_are_listed():
    thresholds = Thresholds((), UsageThreshold(1, None, True))
    entries = completions(thresholds, 10**12, (), 9)
    assert len(entries) == MAX_RECURRING + 1
    assert entries[0].amount_cents == 10**12 - MAX_RECURRING + 1
    assert entries[-1] == Completion(10**12 + 1, Decimal(0), None)


# -- current usage -------------------------------------------------------------------------------


def test_current_usage_per_charge_with_events_count():
    book = march_usage()
    usage = queries.current_usage(book.ledger, "c1", "s1")
    assert usage == {
        "from_datetime": "2025-03-01T00:00:00Z",
        "to_datetime": "2025-03-31T23:59:59Z",
        "issuing_date": "2025-03-31",
        "lago_invoice_id": None,
        "currency": "USD",
        "amount_cents": 950,  # usage only: no plan fee, no progressive credit
        "taxes_amount_cents": 95,
        "total_amount_cents": 1045,
        "charges_usage": [  # by metric name: "API calls" before "Tokens"
            {
                "units": "1",
                "total_aggregated_units": "1",
                "events_count": 1,
                "amount_cents": 50,
                "amount_currency": "USD",
                "charge": {
                    "lago_id": charge_id("p", "calls"),
                    "charge_model": "standard",
                    "invoice_display_name": "Calls",
                },
                "billable_metric": {
                    "lago_id": metric_id("calls"),
                    "name": "API calls",
                    "code": "calls",
                    "aggregation_type": "count_agg",
                },
                "filters": [],
                "grouped_usage": [],
            },
            {
                "units": "900",
                "total_aggregated_units": "900",
                "events_count": 2,
                "amount_cents": 900,
                "amount_currency": "USD",
                "charge": {
                    "lago_id": charge_id("p", "tokens"),
                    "charge_model": "standard",
                    "invoice_display_name": None,
                },
                "billable_metric": {
                    "lago_id": metric_id("tokens"),
                    "name": "Tokens",
                    "code": "tokens",
                    "aggregation_type": "sum_agg",
                },
                "filters": [],
                "grouped_usage": [],
            },
        ],
    }
    parsed = CustomerUsageResponse.parse_obj(usage)
    assert [c.events_count for c in parsed.charges_usage] == [1, 2]
    # The same usage fees as the period's progressive invoice billed.
    invoice = book.bodies("invoice.created")[0]["invoice"]
    assert invoice["fees_amount_cents"] == usage["amount_cents"]


def test_current_usage_restarts_with_the_period_and_shows_zero_charges():
    book = march_usage()
    book.put(APRIL, "tick", None)
    usage = queries.current_usage(book.ledger, "c1", "s1")
    assert usage is not None
    assert (usage["from_datetime"], usage["to_datetime"]) == (
        "2025-04-01T00:00:00Z",
        "2025-04-30T23:59:59Z",
    )
    assert (usage["amount_cents"], usage["taxes_amount_cents"], usage["total_amount_cents"]) == (
        0,
        0,
        0,
    )
    assert [(c["units"], c["events_count"]) for c in usage["charges_usage"]] == [("0", 0)] * 2
    CustomerUsageResponse.parse_obj(usage)


def test_current_usage_issuing_date_is_the_customer_local_last_day():
    """March in New York: from 05:00Z (EST) to the last second before April 1st 04:00Z (EDT),
    a second whose UTC date is April 1st and local date March 31st."""
    customer = CUSTOMER | {"timezone": "America/New_York"}
    book = Book(customer=customer, subscription_at="2025-03-01T05:00:00Z")
    book.put(MID, "tick", None)
    usage = queries.current_usage(book.ledger, "c1", "s1")
    assert usage is not None
    assert (usage["from_datetime"], usage["to_datetime"], usage["issuing_date"]) == (
        "2025-03-01T05:00:00Z",
        "2025-04-01T03:59:59Z",
        "2025-03-31",
    )


def test_current_usage_of_another_customer_or_no_open_period_is_none():
    book = march_usage()
    assert queries.current_usage(book.ledger, "c2", "s1") is None
    assert queries.current_usage(book.ledger, "c1", "nope") is None
    pending = Book(created=BEFORE)
    assert queries.current_usage(pending.ledger, "c1", "s1") is None
    book.put(MID + DAY, "terminate_subscription", {"external_id": "s1"})
    assert queries.current_usage(book.ledger, "c1", "s1") is None


# -- entitlements --------------------------------------------------------------------------------


def test_entitlements_with_an_override_an_addition_and_a_removal():
    book = Book(
        entitlements=[
            {"feature_code": "api", "privileges": {"max_tokens": 5000}},
            {"feature_code": "beta"},
        ],
        removed_features=["sso"],
    )
    assert book.refused == []
    assert queries.entitlements(book.ledger, "s1") == [
        {
            "code": "api",
            "name": "API",
            "description": None,
            "privileges": [
                {
                    "code": "max_tokens",
                    "name": None,
                    "value_type": "integer",
                    "config": {},
                    "value": 5000,
                    "plan_value": 1000,
                    "override_value": 5000,
                }
            ],
            "overrides": {"max_tokens": 5000},
        },
        {
            "code": "beta",
            "name": None,
            "description": "early access",
            "privileges": [],
            "overrides": {},
        },
    ]
    assert [f["code"] for f in queries.entitlements(Book().ledger, "s1") or []] == ["api", "sso"]
    assert queries.entitlements(book.ledger, "nope") is None


# -- access --------------------------------------------------------------------------------------


def answer_at(book: Book, feature: str, now: datetime, external_id: str = "s1") -> tuple:
    got = queries.access(book.ledger, external_id, feature, now)
    assert got["evaluated_at"] == now.isoformat().replace("+00:00", "Z")
    assert got["allowed"] == (got["reason"] == "allowed")
    return got["reason"], got["remaining"]


def test_access_answers_each_reason():
    book = Book(created=BEFORE, removed_features=["sso"], payment_grace_seconds=3600)
    assert answer_at(book, "api", BEFORE, "nope") == ("unknown_subscription", None)
    assert answer_at(book, "api", BEFORE) == ("subscription_inactive", None)
    book.put(START, "tick", None)
    assert answer_at(book, "api", START) == ("allowed", 1000)
    assert answer_at(book, "sso", START) == ("feature_not_entitled", None)
    assert answer_at(book, "beta", START) == ("feature_not_entitled", None)
    book.use(START + DAY, 999)
    assert answer_at(book, "api", START + DAY) == ("allowed", 1)
    book.use(START + DAY, 1)
    assert answer_at(book, "api", START + DAY) == ("quota_exhausted", 0)
    book.put(MID, "plan", PLAN | {"entitlements": []})  # rule 2 answers before the overdue invoice
    assert answer_at(book, "api", MID) == ("feature_not_entitled", None)


def test_access_at_a_wall_clock_ahead_sees_an_invoice_fall_overdue():
    """The progressive invoice of March 15th (total 10.45) is overdue an hour later: the answer
    at that instant says so before the pipeline clock gets there, and then the engine pushes
    the same decision."""
    book = Book(payment_grace_seconds=3600)
    book.use(START + DAY, 500)
    book.use(MID, 500)  # lifetime 12.00 crosses 10.00
    assert answer_at(book, "sso", MID + timedelta(minutes=59)) == ("allowed", None)
    assert answer_at(book, "sso", MID + timedelta(hours=1)) == ("payment_overdue", None)
    pushed = book.put(MID + timedelta(hours=1), "tick", None)
    sso = [b["access"] for b in pushed if b["access"]["feature_code"] == "sso"]
    assert sso == [queries.access(book.ledger, "s1", "sso", MID + timedelta(hours=1))]


def test_access_ahead_of_the_clock_sees_the_period_the_next_tick_opens():
    """At MID the quota is used up; asked at April 1st (the clock still at MID) the answer is
    the one the tick at April 1st then pushes: a new period, the whole allowance again."""
    book = Book()
    book.use(MID, 1000)
    assert answer_at(book, "api", MID) == ("quota_exhausted", 0)
    ahead = queries.access(book.ledger, "s1", "api", APRIL)
    assert book.ledger.clock == MID and book.ledger.subscriptions["s1"].period.start == START
    assert (ahead["reason"], ahead["remaining"]) == ("allowed", 1000)
    pushed = [b["access"] for b in book.put(APRIL, "tick", None) if "access" in b]
    assert pushed == [ahead]


def test_access_ahead_of_the_clock_sees_a_pending_subscription_start():
    book = Book(created=BEFORE)
    assert answer_at(book, "sso", START - timedelta(seconds=1)) == ("subscription_inactive", None)
    ahead = queries.access(book.ledger, "s1", "sso", START)
    assert (ahead["reason"], book.ledger.subscriptions["s1"].status) == ("allowed", "pending")
    pushed = [b["access"] for b in book.put(START, "tick", None) if "access" in b]
    assert [a for a in pushed if a["feature_code"] == "sso"] == [ahead]


def test_access_equals_every_pushed_decision():
    """After each record, every `subscription.access_changed` it pushed is what the query
    answers at the pipeline clock (evaluated_at included: both are the clock)."""
    book = Book(created=BEFORE, payment_grace_seconds=86400, max_unpaid_amount_cents=1500)
    steps: list[tuple[datetime, str, Any]] = [
        (START, "tick", None),
        (START + DAY, "use", 700),
        (MID, "use", 400),
        (MID + 2 * DAY, "tick", None),
        (APRIL, "tick", None),
        (APRIL + DAY, "pay", 1),
        (APRIL + DAY, "pay", 2),  # nothing unpaid: allowed again
    ]
    pushed_any = 0
    for at, what, value in steps:
        if what == "use":
            bodies = book.use(at, value)
        elif what == "pay":
            invoice = invoice_id(S1, value)
            payment = {"lago_invoice_id": invoice, "external_subscription_id": "s1"}
            bodies = book.put(at, "invoice_payment", payment | {"payment_status": "succeeded"})
        else:
            bodies = book.put(at, what, value)
        clock = book.ledger.clock
        assert clock is not None
        for body in bodies:
            if body["webhook_type"] == "subscription.access_changed":
                pushed = body["access"]
                got = queries.access(book.ledger, "s1", pushed["feature_code"], clock)
                assert got == pushed
                pushed_any += 1
    assert book.refused == []
    assert pushed_any == 7  # allowed ×2, quota_exhausted, payment_overdue ×2, allowed ×2


# -- invoices ------------------------------------------------------------------------------------


def test_unpaid_invoice_before_and_after_payment():
    book = march_usage()
    issued = book.bodies("invoice.created")[0]["invoice"]
    lago_id = issued["lago_id"]
    assert queries.unpaid_invoice(book.ledger, lago_id) == ("s1", issued)
    assert queries.unpaid_invoice(book.ledger, "nope") is None
    payment = {"lago_invoice_id": lago_id, "external_subscription_id": "s1"}
    failed = book.put(MID + DAY, "invoice_payment", payment | {"payment_status": "failed"})
    found = queries.unpaid_invoice(book.ledger, lago_id)
    assert found == ("s1", issued)  # still unpaid, the object as issued
    assert found is not None and found[1] is not issued
    assert queries.invoice_with_status(found[1], "failed") == failed[0]["invoice"]
    succeeded = book.put(
        MID + 2 * DAY, "invoice_payment", payment | {"payment_status": "succeeded"}
    )
    assert queries.invoice_with_status(found[1], "succeeded") == succeeded[0]["invoice"]
    assert queries.unpaid_invoice(book.ledger, lago_id) is None
    parsed = InvoiceResponse.parse_obj(queries.invoice_with_status(found[1], "succeeded"))
    assert parsed.payment_status == "succeeded" and parsed.lago_id == lago_id


def test_a_returned_invoice_is_a_copy():
    book = march_usage()
    lago_id = book.bodies("invoice.created")[0]["invoice"]["lago_id"]
    found = queries.unpaid_invoice(book.ledger, lago_id)
    assert found is not None
    found[1]["fees"].clear()
    found[1]["payment_status"] = "succeeded"
    again = queries.unpaid_invoice(book.ledger, lago_id)
    assert again is not None and again[1]["fees"] and again[1]["payment_status"] == "pending"


@pytest.mark.parametrize("status", ["paid", 5, None])
def test_invoice_with_an_unknown_status_is_refused_with_the_engines_message(status: Any):
    book = march_usage()
    lago_id = book.bodies("invoice.created")[0]["invoice"]["lago_id"]
    found = queries.unpaid_invoice(book.ledger, lago_id)
    assert found is not None
    with pytest.raises(queries.InvalidPaymentStatus) as refused:
        queries.invoice_with_status(found[1], status)
    payment = {"lago_invoice_id": lago_id, "external_subscription_id": "s1"}
    book.put(MID + DAY, "invoice_payment", payment | {"payment_status": status})
    assert book.refused == [str(refused.value)]


# -- alerts --------------------------------------------------------------------------------------

SPEND = {"alert_type": "current_usage_amount", "code": "spend", "thresholds": [{"value": "600"}]}
UNITS = {
    "alert_type": "billable_metric_current_usage_units",
    "code": "units",
    "name": "Tokens used",
    "billable_metric_code": "tokens",
    "thresholds": [{"value": "100", "recurring": True}, {"code": "first", "value": "50"}],
}


def test_alerts_after_create_and_update():
    book = Book()
    book.alert(START, **SPEND)
    book.alert(START + DAY, **UNITS)
    triggered = book.use(MID, 700)  # spend 0 → 700 crosses 600; units 0 → 700
    book.alert(MID + DAY, **(SPEND | {"name": "Spend"}))  # an update keeps prev and ids
    assert book.refused == []
    ids = [b["triggered_alert"]["lago_alert_id"] for b in triggered if "triggered_alert" in b]
    listed = queries.alerts(book.ledger, "s1")
    assert listed is not None
    assert (
        [a["lago_id"] for a in listed]
        == ids
        == [
            alert_id(S1, "spend", 1),
            alert_id(S1, "units", 2),
        ]
    )
    spend, units = listed
    assert spend == {
        "lago_id": alert_id(S1, "spend", 1),
        "lago_organization_id": organization_id(),
        "subscription_external_id": "s1",
        "external_subscription_id": "s1",
        "lago_wallet_id": None,
        "wallet_code": None,
        "alert_type": "current_usage_amount",
        "code": "spend",
        "name": "Spend",
        "direction": "increasing",
        "previous_value": "700",
        "last_processed_at": "2025-03-15T00:00:00Z",
        "thresholds": [{"code": None, "value": "600", "recurring": False}],
        "created_at": "2025-03-01T00:00:00Z",
        "billable_metric": None,
    }
    assert units["created_at"] == "2025-03-02T00:00:00Z"
    assert units["thresholds"] == [
        {"code": "first", "value": "50", "recurring": False},
        {"code": None, "value": "100", "recurring": True},
    ]
    assert units["billable_metric"] == {
        "lago_id": metric_id("tokens"),
        "name": "Tokens",
        "code": "tokens",
        "description": None,
        "aggregation_type": "sum_agg",
        "weighted_interval": None,
        "recurring": False,
        "rounding_function": None,
        "rounding_precision": None,
        "created_at": "2025-02-20T00:00:00Z",  # when the catalogue first defined it
        "field_name": "v",
        "expression": None,
        "filters": [],
    }
    for alert in listed:
        parsed = AlertResponse.parse_obj(alert)
        assert parsed.lago_id == alert["lago_id"]
    book.alert(APRIL + DAY, external_subscription_id="s1", code="spend", deleted=True)
    assert [a["code"] for a in queries.alerts(book.ledger, "s1") or []] == ["units"]
    assert queries.alerts(book.ledger, "nope") is None


def test_alert_objects_for_a_request_are_those_the_engine_then_holds():
    book = Book()
    book.alert(START, **SPEND)
    book.use(MID, 700)
    now = MID + DAY
    request = [
        SPEND | {"name": "Spend"},  # an update
        UNITS,  # new
        {"alert_type": "lifetime_usage_amount", "code": "life", "thresholds": [{"value": "1"}]},
    ]
    predicted = queries.alert_objects_for_request(book.ledger, "s1", request, now)
    for item in request:
        book.alert(now, **item)
    assert book.refused == []
    assert predicted == queries.alerts(book.ledger, "s1")
    assert [(a["created_at"], a["previous_value"]) for a in predicted] == [
        ("2025-03-01T00:00:00Z", "700"),
        ("2025-03-16T00:00:00Z", "0"),
        ("2025-03-16T00:00:00Z", "0"),
    ]
    for alert in predicted:
        AlertResponse.parse_obj(alert)


def test_alert_objects_for_a_request_after_a_deletion_take_a_new_id():
    book = Book()
    book.alert(START, **SPEND)
    book.alert(START, external_subscription_id="s1", code="spend", deleted=True)
    predicted = queries.alert_objects_for_request(book.ledger, "s1", [SPEND], MID)
    assert predicted[0]["lago_id"] == alert_id(S1, "spend", 2)
    book.alert(MID, **SPEND)
    assert queries.alerts(book.ledger, "s1") == predicted


@pytest.mark.parametrize(
    "request_items",
    [
        [SPEND, SPEND | {"code": "again"}],  # a second alert of the same type
        [UNITS | {"billable_metric_code": "storage"}],  # a metric the plan does not charge
        [SPEND | {"thresholds": [{"value": "0"}]}],
        [SPEND | {"thresholds": []}],
        [SPEND | {"alert_type": "wallet_balance_amount"}],
        [{"code": "spend", "deleted": True}],
        ["not an object"],
    ],
)
def test_an_alert_request_is_refused_with_the_engines_message(request_items: list[Any]):
    book = Book()
    with pytest.raises(DefinitionError) as refused:
        queries.alert_objects_for_request(book.ledger, "s1", request_items, START)
    if request_items[-1] == {"code": "spend", "deleted": True}:
        assert "deletion" in str(refused.value)
        return
    for item in request_items:
        record = item | {"external_subscription_id": "s1"} if isinstance(item, dict) else item
        book.put(START, "alert", record)
    assert book.refused == [str(refused.value)]


def test_an_alert_request_for_a_subscription_not_active_is_refused():
    book = march_usage()
    with pytest.raises(DefinitionError, match="no active subscription 'nope'"):
        queries.alert_objects_for_request(book.ledger, "nope", [SPEND], MID)
    book.put(MID + DAY, "terminate_subscription", {"external_id": "s1"})
    with pytest.raises(DefinitionError, match="no active subscription 's1'"):
        queries.alert_objects_for_request(book.ledger, "s1", [SPEND], MID + DAY)


# -- a restarted worker -------------------------------------------------------------------------


def _restored(ledger: Ledger) -> Ledger:
    """The ledger a worker continues from after a restart: stored, then loaded."""
    catalog = load_catalog(_state(ledger)[1])
    subscriptions = [load_subscription(dump_subscription(s)) for s in ledger.subscriptions.values()]
    return Ledger.restore(None, load_clock(dump_clock(ledger.clock)), catalog, subscriptions)


def _answers(ledger: Ledger) -> list[Any]:
    now = ledger.clock or BEFORE
    return [
        queries.lifetime_usage(ledger, "s1"),
        queries.current_usage(ledger, "c1", "s1"),
        queries.entitlements(ledger, "s1"),
        queries.alerts(ledger, "s1"),
        [queries.access(ledger, "s1", code, now) for code in ("api", "sso")],
        queries.alert_objects_for_request(ledger, "s1", [SPEND, UNITS], now),
        [queries.unpaid_invoice(ledger, invoice_id(S1, n)) for n in (1, 2, 3)],
    ]


def test_a_restored_ledger_answers_like_the_original():
    """Thresholds reached, alert and metric instants are stored with the state."""
    book = march_usage()
    book.alert(MID, **SPEND)
    book.alert(MID, **UNITS)
    book.put(APRIL, "tick", None)
    book.use(APRIL + DAY, 2100)
    answers = _answers(book.ledger)
    assert answers[0]["usage_thresholds"][1]["reached_at"] == "2025-04-02T00:00:00Z"
    assert answers[3][0]["last_processed_at"] == "2025-04-02T00:00:00Z"
    assert _answers(_restored(book.ledger)) == answers


def test_an_alert_stored_before_its_instants_were_kept_shows_its_subscriptions():
    book = Book(created=BEFORE)
    book.alert(MID, **SPEND)
    document = json.loads(dump_subscription(book.ledger.subscriptions["s1"]))
    document["v"] = 3
    document["al"] = [items[:8] for items in document["al"]]
    sub = load_subscription(json.dumps(document).encode())
    ledger = Ledger.restore(None, book.ledger.clock, book.ledger.catalog, [sub])
    listed = queries.alerts(ledger, "s1")
    assert listed is not None
    assert (listed[0]["created_at"], listed[0]["last_processed_at"]) == (
        "2025-02-20T00:00:00Z",  # the subscription's creation
        None,
    )
    AlertResponse.parse_obj(listed[0])


# -- queries change nothing ----------------------------------------------------------------------

_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("use"), st.integers(0, 900)),
        st.tuples(st.just("call"), st.integers(1, 3)),
        st.tuples(st.just("tick"), st.integers(1, 300)),
        st.tuples(
            st.just("pay"), st.tuples(st.integers(1, 4), st.sampled_from(["succeeded", "failed"]))
        ),
        st.tuples(st.just("alert"), st.sampled_from(["spend", "units", "gone"])),
    ),
    max_size=20,
)


def _records(steps: list[tuple[str, Any]]) -> list[Record]:
    """Usage, clock moves (hours × 3), payments naming the n-th invoice, alert changes."""
    sub = {
        "external_id": "s1",
        "external_customer_id": "c1",
        "plan_code": "p",
        "subscription_at": START.isoformat(),
        "payment_grace_seconds": 86400,
        "historical_usage_amount_cents": 200,
    }
    records = [
        Record(BEFORE, kind, payload)
        for kind, payload in [
            ("billable_metric", TOKENS),
            ("billable_metric", CALLS),
            ("feature", API),
            ("feature", SSO),
            ("plan", PLAN),
            ("customer", CUSTOMER),
            ("subscription", sub),
        ]
    ]
    at = START
    for n, (what, value) in enumerate(steps):
        event = {"transaction_id": f"e{n}", "external_subscription_id": "s1"}
        if what == "use":
            payload: Any = event | {"code": "tokens", "properties": {"v": value}}
            records.append(Record(at, "event", payload))
        elif what == "call":
            for k in range(value):
                call = event | {"transaction_id": f"e{n}.{k}", "code": "calls"}
                records.append(Record(at, "event", call))
        elif what == "tick":
            at += timedelta(hours=value * 3)
            records.append(Record(at, "tick"))
        elif what == "pay":
            payload = {
                "lago_invoice_id": invoice_id(S1, value[0]),
                "external_subscription_id": "s1",
                "payment_status": value[1],
            }
            records.append(Record(at, "invoice_payment", payload))
        else:
            alert = {"spend": SPEND, "units": UNITS}.get(value) or {
                "code": "spend",
                "deleted": True,
            }
            records.append(Record(at, "alert", {"external_subscription_id": "s1"} | alert))
    return records


def _state(ledger: Ledger) -> list[Any]:
    catalog = ledger.catalog
    held = {
        "billable_metric": catalog.metrics,
        "feature": catalog.features,
        "plan": catalog.plans,
        "customer": catalog.customers,
    }
    definitions = [
        dump_definition(catalog, kind, key) for kind in DEFINITION_KINDS for key in held[kind]
    ]
    subscriptions = [
        (dump_subscription(sub), list(sub.accepted_ids), list(sub.forgotten_ids))
        for sub in ledger.subscriptions.values()
    ]
    return [dump_clock(ledger.clock), definitions, subscriptions]


def _scribble(value: Any) -> None:
    """Empty every dict and list inside `value`: what a query returns must be the caller's."""
    if isinstance(value, dict):
        for item in value.values():
            _scribble(item)
        value.clear()
    elif isinstance(value, list):
        for item in value:
            _scribble(item)
        value.clear()


def _ask_everything(ledger: Ledger, now: datetime) -> None:
    """Every query, each answer scribbled over afterwards."""
    for external_id in ("s1", "nope"):
        _scribble(queries.lifetime_usage(ledger, external_id))
        _scribble(queries.current_usage(ledger, "c1", external_id))
        _scribble(queries.entitlements(ledger, external_id))
        _scribble(queries.alerts(ledger, external_id))
        for feature in ("api", "sso", "beta"):
            _scribble(queries.access(ledger, external_id, feature, now))
        with contextlib.suppress(DefinitionError):
            _scribble(queries.alert_objects_for_request(ledger, external_id, [SPEND, UNITS], now))
    for sequential_id in range(1, 6):
        found = queries.unpaid_invoice(ledger, invoice_id(S1, sequential_id))
        if found is not None:
            _scribble(queries.invoice_with_status(found[1], "succeeded"))
            _scribble(found[1])


@settings(max_examples=60, deadline=None)
@given(_STEPS, st.one_of(st.integers(0, 3600), st.integers(0, 40 * 86400)))
def test_queries_never_change_the_ledger(steps: list[tuple[str, Any]], ahead_s: int):
    """A ledger queried after every record bills exactly like one never queried: same outputs,
    same stored state, same journal."""
    records = _records(steps)
    asked, quiet = Ledger(EngineSettings(journal=True)), Ledger(EngineSettings(journal=True))
    for record in records:
        before = _state(asked)
        clock = asked.clock or BEFORE
        _ask_everything(asked, clock + timedelta(seconds=ahead_s))
        assert _state(asked) == before
        got, want = asked.step(record), quiet.step(record)
        assert [o.body for o in got.outputs] == [o.body for o in want.outputs]
        assert [r.message for r in got.rejections] == [r.message for r in want.rejections]
    assert _state(asked) == _state(quiet)
    # Asked ahead of the clock: what a tick at that instant then decides (and pushes).
    now = (asked.clock or BEFORE) + timedelta(seconds=ahead_s)
    answers = {f: queries.access(asked, "s1", f, now) for f in ("api", "sso", "beta")}
    pushed = [
        o.body["access"] for o in quiet.step(Record(now, "tick")).outputs if o.body.get("access")
    ]
    assert answers == {f: queries.access(quiet, "s1", f, now) for f in answers}
    assert all(answers[a["feature_code"]] == a for a in pushed)
