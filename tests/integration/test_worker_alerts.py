"""Usage alerts through the live worker on the real broker (spec §11): alert records keyed by
subscription, as Avro and as JSON `{"alert": {...}}`, give the very `alert.triggered` bodies and
ids that `tollgate replay` prints, across partitions and batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.billing.timestamps import parse_instant
from pipeline.kernel.settings import Settings
from pipeline.wire import dumps
from tests.integration.test_worker import feed_lines, replayed, wait_caught_up
from tests.integration.timelines import START, busy_timeline
from tests.integration.worker_process import Deployment

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.fixture
def deployment(settings: Settings, kafka_bootstrap: str, tmp_path: Path):
    deployment = Deployment.create(settings, tmp_path)
    yield deployment
    deployment.stop_all()


def alert_line(at: str, alert: dict[str, object]) -> str:
    return json.dumps({"at": at, "type": "alert", "alert": alert})


def with_alerts(lines: list[str], subscriptions: int) -> list[str]:
    """`busy_timeline` with two alerts per subscription after the definitions, and an update
    and a deletion half-way through."""
    at = START.isoformat().replace("+00:00", "Z")
    definitions = lines[: 2 + subscriptions]
    alerts = []
    for index in range(subscriptions):
        sub = f"sub-{index}"
        alerts.append(
            alert_line(
                at,
                {
                    "external_subscription_id": sub,
                    "code": "spend",
                    "alert_type": "current_usage_amount",
                    "thresholds": [
                        {"code": "half", "value": "1000"},
                        {"value": "1500", "recurring": True},
                    ],
                },
            )
        )
        alerts.append(
            alert_line(
                at,
                {
                    "external_subscription_id": sub,
                    "code": "tokens",
                    "alert_type": "billable_metric_lifetime_usage_units",
                    "billable_metric_code": "tokens",
                    "thresholds": [{"value": "5000", "recurring": True}],
                },
            )
        )
    middle = len(lines) // 2
    halfway = json.loads(lines[middle])["at"]
    update = {
        "external_subscription_id": "sub-0",
        "code": "spend",
        "alert_type": "current_usage_amount",
        "thresholds": [{"value": "700", "recurring": True}],
    }
    deletion = {"external_subscription_id": "sub-1", "code": "tokens", "deleted": True}
    changes = [alert_line(halfway, update), alert_line(halfway, deletion)]
    events = lines[2 + subscriptions :]
    middle = len(events) // 2
    return definitions + alerts + events[:middle] + changes + events[middle:]


def test_the_live_worker_triggers_the_alerts_replay_prints(deployment: Deployment):
    lines = with_alerts(busy_timeline(subscriptions=12, events=900, seed=5), 12)
    feed_lines(deployment, lines)
    deployment.start_worker()
    wait_caught_up(deployment)
    live = {record.id: dumps(record.body) for record in deployment.outputs()}
    expected = dict(replayed(lines))
    assert sum('"alert.triggered"' in body for body in expected.values()) > 20
    assert live == expected, f"{len(live)} live vs {len(expected)} replayed\n{deployment.logs()}"


def test_the_scenario_timeline_and_alerts_sent_as_json(deployment: Deployment):
    lines = (SCENARIOS / "usage_alerts.jsonl").read_text().splitlines()
    feed_lines(deployment, lines[:4])  # the definitions and the subscription
    with deployment.producer() as producer:  # its alerts as Lago's POST body, in JSON
        for text in lines[4:7]:
            record = json.loads(text)
            value = json.dumps({"alert": record["alert"]}).encode()
            producer.send_raw_event(value, key="sub-1", at=parse_instant(record["at"]))
    feed_lines(deployment, lines[7:])
    deployment.start_worker()
    wait_caught_up(deployment)
    live = {record.id: dumps(record.body) for record in deployment.outputs()}
    assert live == dict(replayed(lines))


def test_entitlements_and_payments_through_the_live_worker_as_replay(deployment: Deployment):
    """Spec §12 live: features broadcast, payments keyed by subscription; one subscription walks
    inactive → allowed → quota_exhausted → payment_overdue after its grace (a clock tick) →
    back when paid → allowed at the next period, with the very bodies and ids of replay."""
    lines = (SCENARIOS / "entitlements_access.jsonl").read_text().splitlines()
    feed_lines(deployment, lines)
    deployment.start_worker()
    wait_caught_up(deployment)
    outputs = {record.id: dumps(record.body) for record in deployment.outputs()}
    # An event.error's id names where its record was (a line here, an offset there): compared
    # by body; every other output by id and body.
    live = {k: v for k, v in outputs.items() if '"event.error"' not in v}
    expected = {k: v for k, v in replayed(lines) if '"event.error"' not in v}
    assert live == expected, f"{len(live)} live vs {len(expected)} replayed\n{deployment.logs()}"
    errors = sorted(v for v in outputs.values() if '"event.error"' in v)
    assert errors == sorted(v for _, v in replayed(lines) if '"event.error"' in v)
    assert len(errors) == 2
    api = [
        json.loads(body)["access"]["reason"]
        for body in expected.values()
        if '"subscription.access_changed"' in body and '"feature_code":"api"' in body
    ]
    assert api == [
        "subscription_inactive",
        "allowed",
        "quota_exhausted",
        "payment_overdue",
        "quota_exhausted",
        "allowed",
    ]
