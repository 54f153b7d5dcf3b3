"""Catalogue files: YAML and JSON loading, and validation with the engine's parsers (no broker)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.billing.catalog import Catalog, parse_metric
from pipeline.cli import main
from pipeline.clients.catalog_file import (
    CatalogFileError,
    load_catalog_file,
    parse_catalog_text,
    validate_definitions,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml"

METRIC = {"code": "tokens", "aggregation_type": "sum_agg", "field_name": "tokens"}
PLAN = {
    "code": "starter",
    "interval": "monthly",
    "amount_cents": 1000,
    "amount_currency": "USD",
    "charges": [
        {
            "billable_metric_code": "tokens",
            "charge_model": "standard",
            "properties": {"amount": "0.001"},
        }
    ],
}
SUBSCRIPTION = {"external_id": "sub-1", "external_customer_id": "c1", "plan_code": "starter"}


def problems(text: str, *, is_json: bool = False, known: Catalog | None = None) -> list[str]:
    with pytest.raises(CatalogFileError) as caught:
        validate_definitions(parse_catalog_text(text, is_json=is_json), known)
    return caught.value.problems


def test_the_example_catalogue_is_valid() -> None:
    definitions = load_catalog_file(EXAMPLE)
    catalog = validate_definitions(definitions)

    assert [d.kind for d in definitions] == [
        *["billable_metric"] * 2,
        *["feature"] * 3,
        *["plan"] * 3,
        *["customer"] * 2,
        *["subscription"] * 3,
        *["alert"] * 3,
    ]
    assert set(catalog.plans) == {"ai-starter", "ai-team", "api-growth"}
    starter = catalog.plans["ai-starter"].thresholds
    assert [t.amount_cents for t in starter.fixed] == [5000]
    assert starter.recurring is not None and starter.recurring.amount_cents == 10000
    assert catalog.plans["api-growth"].charges[0].charge_model == "graduated"
    assert catalog.features["ai_tokens"].quota_metric == "llm_tokens"
    assert {code for code, _ in catalog.plans["ai-team"].entitlements} == {
        "ai_tokens",
        "support",
        "sso",
    }
    batch = next(d for d in definitions if d.key == "sub-acme-batch")
    assert batch.payload["usage_thresholds"][0]["recurring"] is True
    line = EXAMPLE.read_text().splitlines().index("  - external_id: sub-acme-batch") + 1
    assert batch.where == f"subscriptions[1] (line {line})"


def test_sections_apply_in_order_whatever_order_the_file_lists_them() -> None:
    document = {"subscriptions": [SUBSCRIPTION], "plans": [PLAN], "billable_metrics": [METRIC]}
    text = json.dumps(document)
    definitions = parse_catalog_text(text, is_json=True)

    assert [d.kind for d in definitions] == ["billable_metric", "plan", "subscription"]
    assert validate_definitions(definitions).plans["starter"].charges[0].billable_metric_code == (
        "tokens"
    )


def test_yaml_keeps_numbers_exact_and_timestamps_as_written() -> None:
    text = """
customers:
  - external_id: 42
    taxes: [{code: vat, rate: 0.1}]
subscriptions:
  - external_id: s
    subscription_at: 2025-03-01T00:00:00Z
    historical_usage_amount_cents: 1_500
"""
    customer, subscription = parse_catalog_text(text)

    assert customer.payload["taxes"][0]["rate"] == Decimal("0.1")
    assert isinstance(customer.payload["taxes"][0]["rate"], Decimal)
    assert customer.key == "42"
    assert subscription.payload["subscription_at"] == "2025-03-01T00:00:00Z"
    assert subscription.payload["historical_usage_amount_cents"] == 1500


def test_json_files_keep_numbers_exact(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{"customers": [{"external_id": "c", "taxes": [{"code": "t", "rate": 0.10}]}]}')

    (customer,) = load_catalog_file(path)

    assert customer.payload["taxes"][0]["rate"] == Decimal("0.10")
    assert str(customer.payload["taxes"][0]["rate"]) == "0.10"
    assert customer.where == "customers[0] (line 1)"


def test_a_bad_definition_is_named_by_path_and_line() -> None:
    text = """billable_metrics:
  - code: tokens
    aggregation_type: sum_agg
    field_name: tokens
plans:
  - code: fine
    interval: monthly
    amount_currency: USD
  - code: broken
    interval: fortnightly
    amount_currency: USD
"""
    assert problems(text) == [
        "plans[1] (line 9): plan 'broken': interval must be one of "
        "['monthly', 'quarterly', 'weekly', 'yearly'], got 'fortnightly'"
    ]


def test_every_problem_is_listed_and_the_message_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "billable_metrics:\n"
        "  - {code: m, aggregation_type: median_agg}\n"
        "plans:\n"
        "  - {code: p, interval: monthly, amount_currency: USD,\n"
        "     charges: [{billable_metric_code: m, charge_model: standard,\n"
        "                properties: {amount: '1'}}]}\n"
        "subscriptions:\n"
        "  - {external_id: s, external_customer_id: c, plan_code: nowhere}\n"
    )
    with pytest.raises(CatalogFileError) as caught:
        validate_definitions(load_catalog_file(path), name=str(path))

    message = str(caught.value)
    assert message.startswith(f"{path} refused, nothing published (3 problems):")
    assert caught.value.problems == [
        "billable_metrics[0] (line 2): billable metric 'm': aggregation_type must be one of "
        "['count_agg', 'latest_agg', 'max_agg', 'sum_agg', 'unique_count_agg'], got 'median_agg'",
        "plans[0] (line 4): plan 'p': unknown billable metric 'm'",
        "subscriptions[0] (line 8): subscription 's': unknown plan 'nowhere'",
    ]


def test_plans_see_metrics_already_published() -> None:
    known = Catalog()
    known.define_metric(parse_metric(METRIC))
    text = json.dumps({"plans": [PLAN], "subscriptions": [SUBSCRIPTION]})

    catalog = validate_definitions(parse_catalog_text(text, is_json=True), known)

    assert set(catalog.plans) == {"starter"} and set(catalog.metrics) == {"tokens"}
    assert problems(json.dumps({"plans": [PLAN]}), is_json=True) == [
        "plans[0] (line 1): plan 'starter': unknown billable metric 'tokens'"
    ]


def test_a_published_metric_cannot_change_its_aggregation() -> None:
    known = Catalog()
    known.define_metric(parse_metric(METRIC))
    changed = {**METRIC, "aggregation_type": "max_agg"}

    assert problems(json.dumps({"billable_metrics": [changed]}), is_json=True, known=known) == [
        "billable_metrics[0] (line 1): billable metric 'tokens': aggregation_type and "
        "field_name cannot change"
    ]


def test_the_same_code_twice_in_one_file_is_refused() -> None:
    text = "customers:\n  - external_id: acme\n  - external_id: beta\n  - external_id: acme\n"

    assert problems(text) == [
        "customers[2] (line 4): customer 'acme' is already defined at customers[0] (line 2)"
    ]


def test_subscription_threshold_overrides_are_validated() -> None:
    override = {**SUBSCRIPTION, "usage_thresholds": [{"amount_cents": 500}, {"amount_cents": 500}]}
    text = json.dumps({"billable_metrics": [METRIC], "plans": [PLAN], "subscriptions": [override]})

    assert problems(text, is_json=True) == [
        "subscriptions[0] (line 1): subscription 'sub-1': two fixed usage thresholds with the "
        "same amount"
    ]


def test_an_unquoted_price_gets_a_hint() -> None:
    text = "billable_metrics: [{code: m, aggregation_type: count_agg}]\nplans:\n" + (
        "  - {code: p, interval: monthly, amount_currency: USD, charges: "
        "[{billable_metric_code: m, charge_model: standard, properties: {amount: 0.5}}]}\n"
    )
    (problem,) = problems(text)

    assert problem.startswith("plans[0] (line 3): plan 'p': charge on 'm': amount must be")
    assert problem.endswith("(write amounts and rates as quoted strings: '0.5')")


LISTS = "billable_metrics, features, plans, customers, subscriptions, alerts"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", f"expected an object with {LISTS}, got nothing"),
        ("- plans\n", f"expected an object with {LISTS}, got a list"),
        ("plans: []\nplan: []\n", f"unknown key 'plan' (line 2): expected {LISTS}"),
        ("plans: {code: p}\n", "plans (line 1): expected a list"),
        ("customers:\n  - acme\n", "customers[0] (line 2): expected an object, got str"),
        (
            "plans:\n  - code: a\n    code: b\n",
            "not valid YAML (line 3, column 5): duplicate key 'code'",
        ),
        (
            "plans: [\n",
            "not valid YAML (line 2, column 1): while parsing a flow node: "
            "expected the node content, but found '<stream end>'",
        ),
        (
            "plans: [{amount: .nan}]\n",
            "not valid YAML (line 1, column 18): '.nan' is not a finite decimal number",
        ),
    ],
)
def test_shape_and_syntax_errors(text: str, expected: str) -> None:
    with pytest.raises(CatalogFileError) as caught:
        parse_catalog_text(text, name="f.yaml")

    assert caught.value.problems == [expected]


def test_json_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{\n  "plans": [\n    {"code": "p",}\n  ]\n}\n')

    with pytest.raises(CatalogFileError) as caught:
        load_catalog_file(path)

    (problem,) = caught.value.problems
    assert problem.startswith("not valid JSON: ") and "line 3" in problem


def test_catalog_apply_check_validates_without_a_broker(tmp_path: Path) -> None:
    runner = CliRunner()

    valid = runner.invoke(main, ["catalog", "apply", "--check", str(EXAMPLE)])
    assert valid.exit_code == 0, valid.output
    assert valid.stdout == (
        f"{EXAMPLE}: valid (2 billable_metrics, 3 features, 3 plans, 2 customers, "
        "3 subscriptions, "
        "3 alerts); "
        "nothing published\n"
    )

    bad = tmp_path / "bad.yaml"
    bad.write_text("plans:\n  - {code: p, interval: daily, amount_currency: USD}\n")
    refused = runner.invoke(main, ["catalog", "apply", "--check", str(bad)])
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"Error: {bad} refused, nothing published (1 problem):")
    assert "plans[0] (line 2): plan 'p': interval must be one of" in refused.stderr


ALERTS_FILE = """
billable_metrics: [{code: tokens, aggregation_type: sum_agg, field_name: t}]
plans:
  - code: starter
    interval: monthly
    amount_currency: USD
    charges: [{billable_metric_code: tokens, charge_model: standard, properties: {amount: "1"}}]
subscriptions: [{external_id: sub-1, external_customer_id: c1, plan_code: starter}]
alerts:
"""


def test_alerts_are_checked_against_the_files_subscriptions() -> None:
    text = ALERTS_FILE + (
        "  - {external_subscription_id: sub-1, code: a, alert_type: current_usage_amount,"
        " thresholds: [{value: '100'}]}\n"
        "  - {external_subscription_id: sub-1, code: b, alert_type: current_usage_amount,"
        " thresholds: [{value: '200'}]}\n"
        "  - {external_subscription_id: sub-1, code: c, alert_type:"
        " billable_metric_current_usage_units, billable_metric_code: calls,"
        " thresholds: [{value: '1'}]}\n"
        "  - {external_subscription_id: sub-1, code: a, alert_type: lifetime_usage_amount,"
        " thresholds: [{value: '1'}, {value: '1.0'}]}\n"
    )
    found = problems(text)
    assert len(found) == 3, found
    assert "alerts[1] (line 11)" in found[0] and "already watches" in found[0]
    assert "alerts[2]" in found[1] and "does not charge 'calls'" in found[1]
    assert "alerts[3]" in found[2] and "same value" in found[2]


def test_an_alert_may_name_a_subscription_defined_elsewhere_and_keys_are_per_subscription() -> None:
    text = ALERTS_FILE + (
        "  - {external_subscription_id: other, code: a, alert_type: current_usage_amount,"
        " thresholds: [{value: '100'}]}\n"
        "  - {external_subscription_id: sub-1, code: a, alert_type: current_usage_amount,"
        " thresholds: [{value: '100'}]}\n"
    )
    definitions = parse_catalog_text(text)
    validate_definitions(definitions)
    assert [d.key for d in definitions if d.kind == "alert"] == ["other/a", "sub-1/a"]


FEATURES = """\
billable_metrics:
  - {code: tokens, aggregation_type: sum_agg, field_name: tokens}
features:
  - code: api
    privileges: [{code: max_tokens, value_type: integer}]
    quota: {billable_metric_code: tokens, privilege_code: max_tokens}
plans:
  - code: p
    interval: monthly
    amount_currency: USD
    charges:
      - {billable_metric_code: tokens, charge_model: standard, properties: {amount: '0.01'}}
    entitlements:
      - {feature_code: api, privileges: {max_tokens: 1000}}
subscriptions:
  - external_id: s1
    external_customer_id: c1
    plan_code: p
    entitlements: [{feature_code: api, privileges: {max_tokens: '5000'}}]
    payment_grace_seconds: 86400
    max_unpaid_amount_cents: 100000
"""


def test_features_and_entitlements_are_applied_before_plans_and_checked() -> None:
    definitions = parse_catalog_text(FEATURES)
    assert [d.kind for d in definitions] == ["billable_metric", "feature", "plan", "subscription"]
    catalog = validate_definitions(definitions)
    assert catalog.plans["p"].entitlements == (("api", (("max_tokens", 1000),)),)
    bad = FEATURES.replace("max_tokens: 1000", "max_tokens: lots")
    problem, then = problems(bad)
    assert problem.startswith("plans[0] (line 8): plan 'p': api.max_tokens: 'lots' is not a valid")
    assert then.startswith("subscriptions[0]") and "unknown plan 'p'" in then
