"""Entitlements, payments and access decisions (spec §12), rule by rule and transition by
transition, with expectations worked out by hand.

The plan charges `tokens` (sum) at 0.01 a unit (1 token = 1 cent), monthly, no plan fee. Feature
`api` is metered: its `max_tokens` privilege is the per-period allowance of `tokens` (plan: 1000).
Feature `sso` is a plain boolean feature.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.billing.engine import Ledger, Record
from pipeline.billing.ids import invoice_id, subscription_id
from pipeline.billing.state import (
    dump_definition,
    dump_subscription,
    load_catalog,
    load_subscription,
)

BEFORE = datetime(2025, 2, 20, tzinfo=UTC)
START = datetime(2025, 3, 1, tzinfo=UTC)
MID = datetime(2025, 3, 15, tzinfo=UTC)
APRIL = datetime(2025, 4, 1, tzinfo=UTC)
MAY = datetime(2025, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
_STATUSES = ["succeeded", "failed", "pending"]

METRIC = {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v"}
API = {
    "code": "api",
    "name": "API",
    "privileges": [{"code": "max_tokens", "value_type": "integer"}],
    "quota": {"billable_metric_code": "tokens", "privilege_code": "max_tokens"},
}
SSO = {
    "code": "sso",
    "privileges": [
        {"code": "enabled", "value_type": "boolean"},
        {
            "code": "provider",
            "value_type": "select",
            "config": {"select_options": ["okta", "google"]},
        },
    ],
}
PLAN: dict[str, Any] = {
    "code": "p",
    "interval": "monthly",
    "amount_cents": 0,
    "amount_currency": "USD",
    "charges": [
        {
            "billable_metric_code": "tokens",
            "charge_model": "standard",
            "properties": {"amount": "0.01"},
        }
    ],
    "entitlements": [
        {"feature_code": "api", "privileges": {"max_tokens": 1000}},
        {"feature_code": "sso", "privileges": {"enabled": True}},
    ],
}


class Book:
    """A ledger with the features and plan above and subscription `s1` (customer `c1`)."""

    def __init__(self, created: datetime = START, **subscription: Any) -> None:
        self.ledger = Ledger()
        self.refused: list[str] = []
        self.outputs: list[dict[str, Any]] = []
        self.n = 0
        self.put(created, "billable_metric", METRIC)
        self.put(created, "feature", API)
        self.put(created, "feature", SSO)
        self.put(created, "plan", PLAN)
        sub = {
            "external_id": "s1",
            "external_customer_id": "c1",
            "plan_code": "p",
            "subscription_at": START.isoformat(),
        }
        self.put(created, "subscription", sub | subscription)

    def put(self, at: datetime, kind: str, payload: Any) -> list[dict[str, Any]]:
        """The bodies this record emitted."""
        transition = self.ledger.step(Record(at, kind, payload, f"r{len(self.outputs)}"))
        self.refused += [r.message for r in transition.rejections]
        bodies = [o.body for o in transition.outputs]
        self.outputs += bodies
        return bodies

    def use(self, at: datetime, value: int) -> list[dict[str, Any]]:
        self.n += 1
        body = {"transaction_id": f"e{self.n}", "external_subscription_id": "s1", "code": "tokens"}
        return self.put(at, "event", body | {"properties": {"v": value}})

    def pay(self, at: datetime, invoice: str, status: str = "succeeded") -> list[dict[str, Any]]:
        body = {"lago_invoice_id": invoice, "external_subscription_id": "s1"}
        return self.put(at, "invoice_payment", body | {"payment_status": status})

    def invoices(self) -> list[dict[str, Any]]:
        return [b["invoice"] for b in self.outputs if b["webhook_type"] == "invoice.created"]


def access(bodies: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(feature, reason, remaining) of each `subscription.access_changed`, in order."""
    return [
        (b["access"]["feature_code"], b["access"]["reason"], b["access"]["remaining"])
        for b in bodies
        if b["webhook_type"] == "subscription.access_changed"
    ]


def kinds(bodies: list[dict[str, Any]]) -> list[str]:
    return [b["webhook_type"] for b in bodies]


# -- the first decision --------------------------------------------------------------------------


def test_a_first_allowed_decision_is_not_reported():
    book = Book()
    assert access(book.outputs) == []
    assert book.refused == []


def test_created_before_its_start_reports_inactive_then_allowed_when_it_starts():
    book = Book(created=BEFORE)
    assert access(book.outputs) == [
        ("api", "subscription_inactive", None),
        ("sso", "subscription_inactive", None),
    ]
    started = book.put(START, "tick", None)
    assert access(started) == [("api", "allowed", 1000), ("sso", "allowed", None)]
    body = started[0]
    assert body["object_type"] == "access"
    assert body["access"] == {
        "external_subscription_id": "s1",
        "feature_code": "api",
        "allowed": True,
        "reason": "allowed",
        "remaining": 1000,
        "evaluated_at": "2025-03-01T00:00:00Z",
    }


# -- rule 4: quota -------------------------------------------------------------------------------


def test_rule_4_quota_exhausted_when_units_reach_the_allowance_and_allowed_next_period():
    book = Book()
    assert access(book.use(MID, 600)) == []  # 400 remain: still allowed, nothing to say
    exhausted = book.use(MID, 400)  # 1000 units ≥ 1000
    assert kinds(exhausted) == ["subscription.access_changed"]
    assert access(exhausted) == [("api", "quota_exhausted", 0)]
    assert access(book.use(MID, 5)) == []  # still exhausted: reported once
    closed = book.put(APRIL, "tick", None)
    # The March invoice (1005 cents) first, then the new period's allowance: allowed again.
    assert kinds(closed) == ["invoice.created", "subscription.access_changed"]
    assert access(closed) == [("api", "allowed", 1000)]


def test_rule_4_a_subscription_override_replaces_the_allowance_and_null_is_unlimited():
    book = Book(entitlements=[{"feature_code": "api", "privileges": {"max_tokens": "10"}}])
    assert access(book.use(MID, 10)) == [("api", "quota_exhausted", 0)]
    raised = {"external_id": "s1", "external_customer_id": "c1", "plan_code": "p"}
    grown = book.put(MID, "subscription", raised | {"entitlements": []})
    assert access(grown) == [("api", "allowed", 990)]  # back to the plan's 1000


# -- rule 3: payments ----------------------------------------------------------------------------


def test_rule_3_an_unpaid_invoice_past_its_grace_blocks_and_paying_it_allows():
    book = Book(payment_grace_seconds=3600)
    book.use(MID, 300)
    assert kinds(book.put(APRIL, "tick", None)) == ["invoice.created"]
    invoice = book.invoices()[-1]
    assert invoice["total_amount_cents"] == 300 and invoice["payment_status"] == "pending"
    assert access(book.put(APRIL + HOUR - timedelta(seconds=1), "tick", None)) == []
    overdue = book.put(APRIL + HOUR, "tick", None)  # issued at April 1st + 3600 s grace
    assert access(overdue) == [("api", "payment_overdue", 1000), ("sso", "payment_overdue", None)]
    paid = book.pay(APRIL + 2 * HOUR, invoice["lago_id"])
    assert kinds(paid) == [
        "invoice.payment_status_updated",
        "subscription.access_changed",
        "subscription.access_changed",
    ]
    updated = paid[0]["invoice"]
    assert updated == invoice | {"payment_status": "succeeded"}  # as issued, new status
    assert updated["payment_overdue"] is False
    assert access(paid) == [("api", "allowed", 1000), ("sso", "allowed", None)]
    assert book.ledger.subscriptions["s1"].unpaid == {}  # settled: no longer remembered


def test_rule_3_without_a_grace_an_unpaid_invoice_never_becomes_overdue():
    book = Book()
    book.use(MID, 300)
    book.put(APRIL, "tick", None)
    assert access(book.put(MAY - HOUR, "tick", None)) == []


def test_rule_3_unpaid_totals_above_the_cap_block_at_once():
    book = Book(max_unpaid_amount_cents=500)
    book.use(MID, 300)
    assert access(book.put(APRIL, "tick", None)) == []  # 300 ≤ 500
    book.use(APRIL + HOUR, 201)
    closed = book.put(MAY, "tick", None)  # 300 + 201 = 501 > 500
    assert access(closed) == [("api", "payment_overdue", 1000), ("sso", "payment_overdue", None)]
    first = book.invoices()[0]["lago_id"]
    assert access(book.pay(MAY, first)) == [("api", "allowed", 1000), ("sso", "allowed", None)]


def test_rule_3_answers_before_rule_4():
    book = Book(max_unpaid_amount_cents=0)
    book.use(MID, 1000)  # quota exhausted
    assert access(book.outputs) == [("api", "quota_exhausted", 0)]
    closed = book.put(APRIL, "tick", None)  # 1000 cents unpaid > 0, and the quota renews
    assert access(closed) == [("api", "payment_overdue", 1000), ("sso", "payment_overdue", None)]


def test_payment_terms_may_change_with_an_update():
    book = Book()
    book.use(MID, 300)
    book.put(APRIL, "tick", None)
    terms = {"external_id": "s1", "external_customer_id": "c1", "plan_code": "p"}
    assert access(book.put(APRIL + HOUR, "subscription", terms | {"payment_grace_seconds": 60}))
    assert book.refused == []


def test_payments_failed_then_succeeded_and_what_is_refused():
    book = Book()
    book.use(MID, 300)
    book.put(APRIL, "tick", None)
    lago_id = book.invoices()[-1]["lago_id"]
    assert book.pay(APRIL, lago_id, "pending") == []  # the current status: nothing
    failed = book.pay(APRIL, lago_id, "failed")
    assert kinds(failed) == ["invoice.payment_status_updated"]
    assert failed[0]["invoice"]["payment_status"] == "failed"
    assert lago_id in book.ledger.subscriptions["s1"].unpaid  # failed is still unpaid
    assert kinds(book.pay(APRIL, lago_id)) == ["invoice.payment_status_updated"]
    for bad in (
        book.pay(APRIL, lago_id),  # settled: forgotten, refused
        book.pay(APRIL, "no-such-invoice"),
        book.pay(APRIL, lago_id, "refunded"),
        book.put(APRIL, "invoice_payment", "not an object"),
    ):
        assert kinds(bad) == ["event.error"]
        assert bad[0]["event_error"]["error"] == "invalid"
    assert len(book.refused) == 4


def test_a_zero_invoice_is_born_succeeded_and_a_payment_for_it_is_refused():
    book = Book()
    book.put(APRIL, "tick", None)
    invoice = book.invoices()[-1]
    assert invoice["total_amount_cents"] == 0 and invoice["payment_status"] == "succeeded"
    assert kinds(book.pay(APRIL, invoice["lago_id"], "pending")) == ["event.error"]


def test_a_progressive_invoice_is_issued_at_its_triggering_event():
    plan = PLAN | {"usage_thresholds": [{"amount_cents": 500}]}
    book = Book(payment_grace_seconds=60)
    book.put(START, "plan", plan)
    crossed = book.use(MID, 500)
    assert kinds(crossed)[0] == "invoice.created"
    assert access(book.put(MID + timedelta(seconds=59), "tick", None)) == []
    assert access(book.put(MID + timedelta(seconds=60), "tick", None)) == [
        ("api", "payment_overdue", 500),
        ("sso", "payment_overdue", None),
    ]


# -- rules 1 and 2 ------------------------------------------------------------------------------


def test_rule_2_a_removed_feature_reports_not_entitled_once_then_is_not_followed():
    book = Book()
    update = {"external_id": "s1", "external_customer_id": "c1", "plan_code": "p"}
    removed = book.put(MID, "subscription", update | {"removed_features": ["sso"]})
    assert access(removed) == [("sso", "feature_not_entitled", None)]
    assert "sso" not in book.ledger.subscriptions["s1"].access
    again = book.put(MID, "subscription", update | {"removed_features": ["sso"], "x": 1})
    assert access(again) == []


def test_rule_2_an_override_adds_a_feature_the_plan_lacks():
    plan = PLAN | {"entitlements": [{"feature_code": "sso", "privileges": {"enabled": True}}]}
    book = Book()
    book.put(START, "plan", plan)
    assert access(book.outputs) == [("api", "feature_not_entitled", None)]
    update = {"external_id": "s1", "external_customer_id": "c1", "plan_code": "p"}
    entitlements = [{"feature_code": "api", "privileges": {"max_tokens": 5}}]
    added = book.put(MID, "subscription", update | {"entitlements": entitlements})
    assert access(added) == []  # a first `allowed` is not reported
    assert access(book.use(MID, 5)) == [("api", "quota_exhausted", 0)]


def test_rule_2_deleting_a_feature_reports_not_entitled():
    book = Book()
    deleted = book.put(MID, "feature", {"code": "sso", "deleted": True})
    assert access(deleted) == [("sso", "feature_not_entitled", None)]


def test_rule_1_termination_reports_inactive():
    book = Book()
    ended = book.put(MID, "terminate_subscription", "s1")
    assert access(ended) == [
        ("api", "subscription_inactive", None),
        ("sso", "subscription_inactive", None),
    ]


def test_subscriptions_in_external_id_order_features_in_code_order():
    book = Book(created=BEFORE)
    other = {"external_id": "s0", "external_customer_id": "c0", "plan_code": "p"}
    book.put(BEFORE, "subscription", other | {"subscription_at": START.isoformat()})
    started = book.put(START, "tick", None)
    assert [
        (b["access"]["external_subscription_id"], b["access"]["feature_code"])
        for b in started
        if b["webhook_type"] == "subscription.access_changed"
    ] == [("s0", "api"), ("s0", "sso"), ("s1", "api"), ("s1", "sso")]


# -- definitions refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        (
            "feature",
            {"code": "f", "privileges": [{"code": "x", "value_type": "float"}]},
            "value_type",
        ),
        ("feature", {"code": "f", "privileges": [{"code": "x", "value_type": "select"}]}, "select"),
        (
            "feature",
            {"code": "f", "privileges": [{"code": "x", "value_type": "string"}] * 2},
            "unique",
        ),
        (
            "feature",
            {
                "code": "f",
                "privileges": [{"code": "x", "value_type": "string"}],
                "quota": {"billable_metric_code": "tokens", "privilege_code": "x"},
            },
            "integer privilege",
        ),
        ("feature", {"code": "nope", "deleted": True}, "no such feature"),
        ("plan", PLAN | {"entitlements": [{"feature_code": "zzz"}]}, "unknown feature"),
        (
            "plan",
            PLAN | {"entitlements": [{"feature_code": "api", "privileges": {"max_tokens": "1.5"}}]},
            "not a valid integer",
        ),
        (
            "plan",
            PLAN | {"entitlements": [{"feature_code": "sso", "privileges": {"provider": "x"}}]},
            "not a valid select",
        ),
        (
            "plan",
            PLAN | {"entitlements": [{"feature_code": "sso", "privileges": {"nope": 1}}]},
            "no privilege",
        ),
        (
            "plan",
            PLAN | {"charges": [], "entitlements": [{"feature_code": "api"}]},
            "needs a charge",
        ),
        (
            "subscription",
            {
                "external_id": "s2",
                "external_customer_id": "c",
                "plan_code": "p",
                "removed_features": ["zzz"],
            },
            "unknown feature",
        ),
        (
            "subscription",
            {
                "external_id": "s2",
                "external_customer_id": "c",
                "plan_code": "p",
                "payment_grace_seconds": -1,
            },
            "negative",
        ),
    ],
)
def test_invalid_definitions_are_refused_with_the_reason(kind: str, payload: Any, reason: str):
    book = Book()
    before = len(book.outputs)
    book.put(MID, kind, payload)
    assert len(book.refused) == 1 and reason in book.refused[0], book.refused
    assert book.outputs[before:] == []


# -- state --------------------------------------------------------------------------------------


def test_unpaid_invoices_and_decisions_survive_a_restart():
    book = Book(payment_grace_seconds=3600)
    book.use(MID, 1000)
    book.put(APRIL, "tick", None)
    sub = book.ledger.subscriptions["s1"]
    stored = dump_subscription(sub)
    again = load_subscription(stored)
    assert dump_subscription(again) == stored
    assert again.unpaid == sub.unpaid and again.access == sub.access
    assert again.definition == sub.definition
    restored = Ledger.restore(None, book.ledger.clock, book.ledger.catalog, [again])
    transition = restored.step(Record(APRIL + HOUR, "tick", None))
    assert access([o.body for o in transition.outputs]) == [
        ("api", "payment_overdue", 1000),
        ("sso", "payment_overdue", None),
    ]


def test_clone_copies_the_new_state():
    book = Book()
    book.use(MID, 1000)
    book.put(APRIL, "tick", None)
    sub = book.ledger.subscriptions["s1"]
    copy = sub.clone()
    assert copy.unpaid == sub.unpaid and copy.unpaid is not sub.unpaid
    assert copy.access == sub.access and copy.access is not sub.access
    assert copy.access_changes == sub.access_changes


# -- properties ---------------------------------------------------------------------------------

_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("use"), st.integers(0, 600)),
        st.tuples(st.just("tick"), st.integers(1, 200)),
        st.tuples(st.just("pay"), st.tuples(st.integers(1, 4), st.sampled_from(_STATUSES))),
    ),
    max_size=25,
)


def _timeline(steps: list[tuple[str, Any]]) -> list[Record]:
    """Usage, clock moves (hours × 3) and payments naming the n-th invoice (which may not exist
    yet: refused), on a plan with a progressive threshold and both payment terms."""
    sub = {
        "external_id": "s1",
        "external_customer_id": "c1",
        "plan_code": "p",
        "subscription_at": START.isoformat(),
        "payment_grace_seconds": 86400,
        "max_unpaid_amount_cents": 1500,
    }
    records = [
        Record(BEFORE, "billable_metric", METRIC),
        Record(BEFORE, "feature", API),
        Record(BEFORE, "feature", SSO),
        Record(BEFORE, "plan", PLAN | {"usage_thresholds": [{"amount_cents": 700}]}),
        Record(BEFORE, "subscription", sub),
    ]
    lago_subscription = subscription_id("s1", 1)
    at = START
    for n, (what, value) in enumerate(steps):
        if what == "use":
            event = {"transaction_id": f"e{n}", "external_subscription_id": "s1", "code": "tokens"}
            records.append(Record(at, "event", event | {"properties": {"v": value}}, f"r{n}"))
        elif what == "tick":
            at += timedelta(hours=value * 3)
            records.append(Record(at, "tick", None, f"r{n}"))
        else:
            payment = {
                "lago_invoice_id": invoice_id(lago_subscription, value[0]),
                "external_subscription_id": "s1",
                "payment_status": value[1],
            }
            records.append(Record(at, "invoice_payment", payment, f"r{n}"))
    return records


def _outputs(records: list[Record], size: int) -> list[Any]:
    ledger = Ledger()
    out: list[Any] = []
    for start in range(0, len(records), size):
        out += [o.body for o in ledger.run(records[start : start + size]).outputs]
    return out


@settings(max_examples=60, deadline=None)
@given(_STEPS, st.integers(2, 8))
def test_batch_size_does_not_change_the_outputs(steps: list[tuple[str, Any]], size: int):
    records = _timeline(steps)
    assert _outputs(records, size) == _outputs(records, 1)


@settings(max_examples=60, deadline=None)
@given(_STEPS)
def test_a_decision_is_reported_only_when_it_changes(steps: list[tuple[str, Any]]):
    last: dict[str, str] = {}
    for body in _outputs(_timeline(steps), 1):
        if body["webhook_type"] != "subscription.access_changed":
            continue
        answer = body["access"]
        code, reason = answer["feature_code"], answer["reason"]
        assert answer["allowed"] == (reason == "allowed")
        assert last.get(code) != reason  # a change, never a repeat
        if code not in last:
            assert reason != "allowed"  # a first decision only when it is not `allowed`
        last[code] = reason


def test_a_deleted_feature_stays_deleted_in_the_stored_catalogue():
    book = Book()
    book.put(MID, "feature", {"code": "sso", "deleted": True})
    catalog = book.ledger.catalog
    assert [code for code, _ in catalog.plans["p"].entitlements] == ["api"]  # removed everywhere
    stored = [dump_definition(catalog, "feature", code) for code in ("api", "sso")]
    stored += [dump_definition(catalog, "billable_metric", "tokens")]
    stored += [dump_definition(catalog, "plan", "p")]
    again = load_catalog(stored)
    assert set(again.features) == {"api"}
    assert again.plans["p"].entitlements == catalog.plans["p"].entitlements


_SUB = {"external_id": "s9", "external_customer_id": "c", "plan_code": "p"}


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("feature", None),
        ("feature", []),
        ("feature", {"code": None}),
        ("feature", {"code": "f", "privileges": {"x": 1}}),
        ("feature", {"code": "f", "privileges": [None]}),
        ("feature", {"code": "f", "privileges": [{"code": ["x"], "value_type": "string"}]}),
        ("feature", {"code": "f", "name": 5}),
        ("feature", {"code": "f", "quota": []}),
        ("feature", {"code": "f", "quota": {"billable_metric_code": {}, "privilege_code": 1}}),
        (
            "feature",
            {
                "code": "f",
                "privileges": [
                    {"code": "s", "value_type": "select", "config": {"select_options": [1]}}
                ],
            },
        ),
        ("feature", {"code": "f", "privileges": [{"code": "s", "value_type": "x", "config": 3}]}),
        ("feature", {"code": "f", "deleted": True}),
        ("plan", PLAN | {"entitlements": {"api": 1}}),
        ("plan", PLAN | {"entitlements": [None]}),
        ("plan", PLAN | {"entitlements": [{"feature_code": "api", "privileges": [1]}]}),
        ("plan", PLAN | {"entitlements": [{"feature_code": "api"}, {"feature_code": "api"}]}),
        (
            "plan",
            PLAN | {"entitlements": [{"feature_code": "api", "privileges": {"max_tokens": True}}]},
        ),
        (
            "plan",
            PLAN
            | {"entitlements": [{"feature_code": "api", "privileges": {"max_tokens": 10**40}}]},
        ),
        (
            "plan",
            PLAN | {"entitlements": [{"feature_code": "api", "privileges": {"max_tokens": "١٢"}}]},
        ),
        ("plan", PLAN | {"entitlements": [{"feature_code": "sso", "privileges": {"enabled": 1}}]}),
        ("subscription", _SUB | {"removed_features": "sso"}),
        ("subscription", _SUB | {"removed_features": [["sso"]]}),
        ("subscription", _SUB | {"entitlements": "api"}),
        ("subscription", _SUB | {"payment_grace_seconds": "1 day"}),
        ("subscription", _SUB | {"payment_grace_seconds": 10**20}),
        ("subscription", _SUB | {"max_unpaid_amount_cents": 1.5}),
        ("subscription", _SUB | {"max_unpaid_amount_cents": True}),
        ("invoice_payment", {"lago_invoice_id": None, "payment_status": None}),
        ("invoice_payment", {"external_subscription_id": "s1", "payment_status": ["paid"]}),
        ("invoice_payment", {"external_subscription_id": ["s1"], "lago_invoice_id": {}}),
        ("invoice_payment", []),
    ],
)
def test_hostile_definitions_and_payments_are_refused_never_internal_errors(
    kind: str, payload: Any
):
    book = Book()
    transition = book.ledger.step(Record(MID, kind, payload, "bad"))
    reasons = [r.reason.value for r in transition.rejections]
    expected = "invalid" if kind == "invoice_payment" else "invalid_definition"
    assert reasons == [expected], [r.message for r in transition.rejections]
    assert [o.webhook_type for o in transition.outputs] == (
        ["event.error"] if kind == "invoice_payment" else []
    )


def test_a_feature_update_that_would_break_a_plan_is_refused():
    book = Book()
    without = API | {"privileges": [{"code": "other", "value_type": "integer"}], "quota": None}
    book.put(MID, "feature", without)
    assert book.refused == [
        "feature 'api' would break plan 'p': feature 'api' has no privilege 'max_tokens'"
    ]
    book.put(MID, "feature", API | {"name": "Renamed"})  # compatible: accepted
    assert len(book.refused) == 1 and book.ledger.catalog.features["api"].name == "Renamed"
