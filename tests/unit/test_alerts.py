"""Usage alerts, spec §11, rule by rule, with expectations worked out by hand.

The plan charges `tokens` (sum) at 0.01 a unit (1 token = 1 cent) and `seats` (latest) at
1.00 a unit (1 seat = 100 cents), monthly, no plan fee: every amount below is easy to check.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import pytest
from lago_python_client.models.alert import Alert, AlertThresholdResponseList

from pipeline.billing.alerts import (
    AlertDefinition,
    AlertThreshold,
    crossed,
    next_crossing,
    parse_alert,
)
from pipeline.billing.catalog import DefinitionError
from pipeline.billing.engine import Ledger, Record
from pipeline.billing.money import ENGINE_CONTEXT
from pipeline.billing.state import dump_subscription, load_subscription

START = datetime(2025, 3, 1, tzinfo=UTC)
APRIL = datetime(2025, 4, 1, tzinfo=UTC)
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
        },
        {
            "billable_metric_code": "seats",
            "charge_model": "standard",
            "properties": {"amount": "1"},
        },
    ],
}


def definition(*values: str, recurring: str | None = None) -> AlertDefinition:
    one_time = tuple(AlertThreshold(f"t{v}", Decimal(v), False) for v in sorted(values, key=int))
    step = AlertThreshold("every", Decimal(recurring), True) if recurring else None
    return AlertDefinition("s1", "a", None, "current_usage_amount", None, one_time, step)


def values(alert: AlertDefinition, prev: int | str, cur: int | str) -> list[str]:
    return [str(v) for _, v in crossed(alert, Decimal(prev), Decimal(cur))]


# -- rules 1-3: which thresholds a move crosses --------------------------------------------------


def test_rule_1_a_value_that_did_not_go_up_crosses_nothing():
    alert = definition("10", recurring="5")
    assert values(alert, 12, 12) == []
    assert values(alert, 30, 4) == []


def test_rule_2_one_time_thresholds_between_prev_and_cur_ascending():
    alert = definition("30", "10", "20")
    assert values(alert, 5, 25) == ["10", "20"]
    assert values(alert, 10, 30) == ["20", "30"]  # prev sitting on 10 does not cross it again


def test_rule_2_below_the_smallest_one_time_value_not_even_the_recurring_one_fires():
    alert = definition("10", recurring="5")
    assert values(alert, 0, 9) == []
    assert values(alert, 0, 10) == ["10"]


def test_rule_3_recurring_steps_count_from_the_largest_one_time_value():
    alert = definition("15", recurring="10")  # steps 25, 35, 45, …
    assert values(alert, 0, 40) == ["15", "25", "35"]
    assert values(alert, 26, 44) == ["35"]


def test_rule_3_recurring_only_counts_from_zero():
    alert = definition(recurring="10")
    assert values(alert, 11, 35) == ["20", "30"]
    assert values(alert, -30, 10) == ["10"]  # a negative prev: the first step is still 10


def test_rule_3_a_step_prev_sat_on_is_not_reported_again_unlike_lago():
    """Lago compares `prev <= step`: from prev = 20 exactly to 25 it re-reports the step 20.
    Spec §11 (prev < step <= cur) reports nothing, and 20 → 30 reports 30 only."""
    alert = definition(recurring="10")
    assert values(alert, 20, 25) == []
    assert values(alert, 20, 30) == ["30"]


def test_rule_3_at_most_the_highest_thousand_steps():
    alert = definition(recurring="1")
    steps = values(alert, 0, 5000)
    assert len(steps) == 1000
    assert steps[0] == "4001" and steps[-1] == "5000"


def test_next_crossing_is_the_first_value_that_crosses():
    assert next_crossing(definition("10", recurring="5"), 0) == 10
    assert next_crossing(definition("10", recurring="5"), 10) == 15
    assert next_crossing(definition("10", recurring="5"), Decimal("17.5")) == 20
    assert next_crossing(definition("10"), 10) > 10**15  # nothing left to cross


# -- validation ----------------------------------------------------------------------------------


def alert_object(**fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "external_subscription_id": "s1",
        "code": "spend",
        "alert_type": "current_usage_amount",
        "thresholds": [{"value": "100"}],
    }
    obj.update(fields)
    return obj


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"thresholds": []}, "1 to 20"),
        ({"thresholds": [{"value": str(v)} for v in range(1, 22)]}, "1 to 20"),
        ({"thresholds": [{"value": "0"}]}, "> 0"),
        ({"thresholds": [{"value": "-5"}]}, "> 0"),
        ({"thresholds": [{"value": "1e15"}]}, "out of range"),
        ({"thresholds": [{"value": "0.0000000000001"}]}, "decimal places"),
        ({"thresholds": [{"value": "ten"}]}, "decimal string"),
        ({"thresholds": [{"value": "10"}, {"value": "10.0"}]}, "same value"),
        (
            {"thresholds": [{"value": "1", "recurring": True}, {"value": "2", "recurring": True}]},
            "at most one recurring",
        ),
        ({"alert_type": "wallet_balance_amount"}, "alert_type"),
        ({"alert_type": "billable_metric_current_usage_units"}, "needs a billable metric"),
        ({"billable_metric_code": "tokens"}, "must not name"),
        ({"code": ""}, "code"),
        ({"name": 5}, "name"),
    ],
)
def test_a_definition_breaking_a_rule_is_refused(fields: dict[str, Any], message: str):
    with pytest.raises(DefinitionError, match=message):
        parse_alert(alert_object(**fields))


def test_a_deletion_needs_only_the_subscription_and_the_code():
    deleted = parse_alert({"external_subscription_id": 7, "code": "spend", "deleted": True})
    assert (deleted.external_subscription_id, deleted.code) == ("7", "spend")


def test_our_alert_objects_are_lagos_alert_input_objects():
    obj = alert_object(
        alert_type="billable_metric_current_usage_units",
        billable_metric_code="tokens",
        name="Tokens",
        thresholds=[{"code": "warn", "value": "1000"}, {"value": "500", "recurring": True}],
    )
    parsed = Alert.parse_obj(obj)
    assert parsed.code == "spend" and parsed.thresholds is not None


# -- the engine: values, evaluation points, bodies ----------------------------------------------


class Book:
    """A ledger with the plan above and subscription `s1` (customer `c1`) from March 1st."""

    def __init__(self, **subscription: Any) -> None:
        self.ledger = Ledger()
        self.refused: list[str] = []
        self.outputs: list[dict[str, Any]] = []
        self.n = 0
        self.put(
            START,
            "billable_metric",
            {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "v"},
        )
        self.put(
            START,
            "billable_metric",
            {"code": "seats", "aggregation_type": "latest_agg", "field_name": "v"},
        )
        self.put(START, "plan", PLAN)
        sub = {"external_id": "s1", "external_customer_id": "c1", "plan_code": "p"}
        self.put(START, "subscription", sub | subscription)

    def put(self, at: datetime, kind: str, payload: Any) -> list[dict[str, Any]]:
        transition = self.ledger.step(Record(at, kind, payload, f"r{len(self.outputs)}"))
        self.refused += [r.message for r in transition.rejections]
        bodies = [o.body for o in transition.outputs]
        self.outputs += bodies
        return [b["triggered_alert"] for b in bodies if b["webhook_type"] == "alert.triggered"]

    def alert(self, at: datetime = START, **fields: Any) -> list[dict[str, Any]]:
        return self.put(at, "alert", alert_object(**fields))

    def use(self, at: datetime, value: Any, code: str = "tokens", **event: Any) -> list[Any]:
        self.n += 1
        body = {"transaction_id": f"e{self.n}", "external_subscription_id": "s1", "code": code}
        return self.put(at, "event", body | {"properties": {"v": value}} | event)


def crossed_values(triggered: list[dict[str, Any]]) -> list[list[str]]:
    return [[t["value"] for t in alert["crossed_thresholds"]] for alert in triggered]


def test_current_usage_amount_fires_once_its_threshold_is_crossed_with_lagos_body():
    book = Book()
    book.alert(name="Spend", thresholds=[{"code": "warn", "value": "100"}])
    assert book.use(START + timedelta(hours=1), 60) == []
    [fired] = book.use(START + timedelta(hours=2), 50)  # 60 → 110 cents
    assert fired == {
        "lago_alert_id": fired["lago_alert_id"],
        "alert_code": "spend",
        "alert_name": "Spend",
        "alert_type": "current_usage_amount",
        "external_subscription_id": "s1",
        "external_customer_id": "c1",
        "billable_metric_code": None,
        "previous_value": "60",
        "current_value": "110",
        "crossed_thresholds": [{"code": "warn", "value": "100", "recurring": False}],
        "triggered_at": "2025-03-01T02:00:00Z",
    }
    AlertThresholdResponseList.parse_obj(fired["crossed_thresholds"])  # Lago's own model
    assert book.use(START + timedelta(hours=3), 500) == []  # one-time: crossed once


def test_metric_types_read_their_metrics_fee_and_units():
    book = Book()
    book.alert(
        code="fee",
        alert_type="billable_metric_current_usage_amount",
        billable_metric_code="seats",
        thresholds=[{"value": "250"}],
    )
    book.alert(
        code="units",
        alert_type="billable_metric_current_usage_units",
        billable_metric_code="tokens",
        thresholds=[{"value": "2.5", "recurring": True}],
    )
    [units] = book.use(START, "5.25", "tokens")  # 0 → 5.25 units: steps 2.5 and 5
    assert (units["previous_value"], units["current_value"]) == ("0", "5.25")
    assert crossed_values([units]) == [["2.5", "5"]]
    [fee] = book.use(START, 3, "seats")  # 300 cents
    assert (fee["alert_code"], fee["current_value"]) == ("fee", "300")


def test_alerts_evaluate_in_creation_order_and_an_update_keeps_both_order_and_prev():
    book = Book()
    book.alert(code="b", thresholds=[{"value": "100"}])
    book.alert(code="a", alert_type="lifetime_usage_amount", thresholds=[{"value": "100"}])
    book.use(START, 80)
    book.alert(code="b", thresholds=[{"value": "50"}, {"value": "90"}])  # prev stays 80
    fired = book.use(START, 20)  # 80 → 100
    assert [(f["alert_code"], f["previous_value"]) for f in fired] == [("b", "80"), ("a", "80")]
    assert crossed_values(fired) == [["90"], ["100"]]  # 50 lies below prev: not crossed


def test_a_deleted_alert_fires_no_more_and_deleting_an_unknown_one_is_refused():
    book = Book()
    book.alert(thresholds=[{"value": "10"}])
    book.put(START, "alert", {"external_subscription_id": "s1", "code": "spend", "deleted": True})
    assert book.use(START, 50) == []
    book.put(START, "alert", {"external_subscription_id": "s1", "code": "spend", "deleted": True})
    assert book.refused == ["alert 'spend': subscription 's1' has no such alert"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"external_subscription_id": "nope"}, "no active subscription 'nope'"),
        (
            {"alert_type": "billable_metric_current_usage_units", "billable_metric_code": "cpu"},
            "does not charge 'cpu'",
        ),
        ({"code": "other"}, "already watches current_usage_amount"),
    ],
)
def test_rules_that_need_the_subscription(fields: dict[str, Any], message: str):
    book = Book()
    book.alert()
    book.alert(**fields)
    assert len(book.refused) == 1 and message in book.refused[0]
    assert [r.reason for r in book.ledger.step(Record(START, "alert", {})).rejections] == [
        "invalid_definition"
    ]


def test_a_value_that_went_down_never_fires_and_becomes_prev_so_it_can_cross_again():
    book = Book()
    book.alert(
        alert_type="billable_metric_current_usage_units",
        billable_metric_code="seats",
        thresholds=[{"value": "10"}],
    )
    assert crossed_values(book.use(START, 12, "seats")) == [["10"]]
    assert book.use(START, 4, "seats") == []  # 12 → 4: prev := 4
    [again] = book.use(START, 11, "seats")  # literal rule 2, as §5 does for thresholds
    assert (again["previous_value"], again["current_value"]) == ("4", "11")


def test_current_period_types_restart_at_zero_when_a_period_opens():
    """March ends at 150 cents. April's first event alone (120) passes 100 again: it fires,
    from 0 (Lago resets at its next sweep, compares 150 → 120, and misses it)."""
    book = Book()
    book.alert(thresholds=[{"value": "100"}])
    book.alert(code="life", alert_type="lifetime_usage_amount", thresholds=[{"value": "200"}])
    assert len(book.use(START, 150)) == 1
    assert book.put(APRIL, "tick", None) == []  # the close evaluates: 0 and 150, nothing crossed
    fired = book.use(APRIL + timedelta(hours=1), 120)
    assert [(f["alert_code"], f["previous_value"], f["current_value"]) for f in fired] == [
        ("spend", "0", "120"),
        ("life", "150", "270"),
    ]


def test_lifetime_units_add_up_the_closed_periods():
    book = Book()
    book.alert(
        alert_type="billable_metric_lifetime_usage_units",
        billable_metric_code="tokens",
        thresholds=[{"value": "100"}],
    )
    book.use(START, 70)
    book.put(APRIL, "tick", None)
    [fired] = book.use(APRIL, 40)
    assert (fired["previous_value"], fired["current_value"]) == ("70", "110")


def test_lifetime_amount_counts_historical_usage_and_a_subscription_update_evaluates():
    book = Book(historical_usage_amount_cents=50)
    book.alert(alert_type="lifetime_usage_amount", thresholds=[{"value": "100"}])
    [fired] = book.use(START, 60)  # H 50 + C 60
    assert (fired["previous_value"], fired["current_value"]) == ("0", "110")
    update = {"external_id": "s1", "external_customer_id": "c1", "plan_code": "p"}
    book.alert(code="more", alert_type="current_usage_amount", thresholds=[{"value": "500"}])
    book.alert(alert_type="lifetime_usage_amount", thresholds=[{"value": "1000"}])
    [fired] = book.put(START, "subscription", update | {"historical_usage_amount_cents": 990})
    assert (fired["previous_value"], fired["current_value"]) == ("110", "1050")


def test_a_plan_change_that_reprices_evaluates_each_subscription_on_it():
    book = Book()
    book.alert(thresholds=[{"value": "100"}])
    book.use(START, 60)
    dearer = PLAN | {"charges": [PLAN["charges"][0] | {"properties": {"amount": "0.02"}}]}
    [fired] = book.put(START + timedelta(days=1), "plan", dearer)
    assert (fired["previous_value"], fired["current_value"]) == ("60", "120")


def test_held_events_evaluate_each_after_its_own_check():
    book = Book()
    book.alert(thresholds=[{"value": "100", "recurring": True}])
    held = (APRIL + timedelta(hours=2)).isoformat()
    book.use(START + timedelta(days=30, hours=23), 150, timestamp=held)  # April's: held
    book.use(START + timedelta(days=30, hours=23), 80, timestamp=held)
    fired = book.put(APRIL, "tick", None)  # close, then the held events: 150, then 230
    assert [(f["previous_value"], f["current_value"]) for f in fired] == [
        ("0", "150"),
        ("150", "230"),
    ]
    assert crossed_values(fired) == [["100"], ["200"]]


def test_the_alerts_end_with_the_subscription():
    book = Book()
    book.alert(thresholds=[{"value": "100"}])
    book.use(START, 60)
    assert book.put(START + timedelta(days=2), "terminate_subscription", "s1") == []
    book.alert(code="late", thresholds=[{"value": "5"}])
    assert book.refused == ["alert 'late': no active subscription 's1'"]


def test_alert_state_survives_the_stored_round_trip():
    book = Book()
    book.alert(thresholds=[{"value": "100", "recurring": True}])
    book.alert(
        code="u",
        alert_type="billable_metric_lifetime_usage_units",
        billable_metric_code="tokens",
        thresholds=[{"value": "0.5"}],
    )
    book.use(START, 150)
    book.put(APRIL, "tick", None)
    sub = book.ledger.subscriptions["s1"]
    stored = dump_subscription(sub)
    again = load_subscription(stored)
    assert dump_subscription(again) == stored
    assert [a.next_value for a in again.alerts.values()] == [100, Decimal("1e30")]
    assert again.closed_units == {"tokens": 150}


def test_a_version_1_state_still_loads_without_alerts():
    book = Book()
    book.use(START, 10)
    book.alert(thresholds=[{"value": "100"}])
    book.put(APRIL, "tick", None)
    document = json.loads(dump_subscription(book.ledger.subscriptions["s1"]))
    assert document.pop("v") == 4 and document.pop("al") and document.pop("aln") == 1
    assert document.pop("lu") == {"tokens": "10"}
    document.pop("up")  # spec §12's unpaid invoices: version 3
    document["def"] = document["def"][:8]  # a version-1 definition has no entitlements
    sub = load_subscription(json.dumps({"v": 1, **document}).encode())
    assert sub.alerts == {} and sub.closed_units == {} and sub.invoiced == 10


def test_a_tiny_step_far_below_a_huge_lifetime_value_still_loads_and_counts():
    """(prev − base) / step has 31 digits here: more than Decimal's default precision."""
    alert = definition(recurring="0.000000000001")
    prev = Decimal("999999999999999999")
    with localcontext(ENGINE_CONTEXT):  # as inside a ledger's run
        assert next_crossing(alert, prev) == Decimal("999999999999999999.000000000001")
    book = Book()
    book.alert(
        alert_type="billable_metric_lifetime_usage_units",
        billable_metric_code="tokens",
        thresholds=[{"value": "0.000000000001", "recurring": True}],
    )
    sub = book.ledger.subscriptions["s1"]
    sub.closed_units["tokens"] = prev
    sub.alerts["spend"].prev = prev
    again = load_subscription(dump_subscription(sub))
    assert again.alerts["spend"].next_value == Decimal("999999999999999999.000000000001")
