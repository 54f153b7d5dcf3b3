"""The HTTP API (spec §13) of live workers, driven by Lago's own client (lago-python-client):
events in, usage, entitlements, alerts and access out, invoice payment status — every answer
parsed by the client's models — and hostile requests that must not disturb billing.

Two workers share the partitions, and every call goes to the first one: the subscriptions the
second one owns are answered through forwarding.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer, TopicPartition
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.alert import Alert, AlertsList, AlertThreshold, AlertThresholdList
from lago_python_client.models.customer_usage import CustomerUsageResponse
from lago_python_client.models.event import BatchEvent, Event
from lago_python_client.models.invoice import Invoice
from lago_python_client.models.lifetime_usage import LifetimeUsageResponse

from pipeline.kernel.settings import Settings
from tests.integration.worker_process import Deployment

pytestmark = pytest.mark.integration

KEY = "test-key-7f3a"
OTHER_KEY = "second-key-19c2"
SUBSCRIPTIONS = [f"sub-{n}" for n in range(8)]  # spread over both workers' partitions
T = TypeVar("T")


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def catalog(deployment: Deployment) -> None:
    """A tokens metric (1 cent a token), a metered feature with 1,000 tokens a month, a plan
    with a $50 progressive threshold; one customer with SUBSCRIPTIONS from this month's start."""
    now = datetime.now(UTC)
    start = _month_start(now)
    defined = start - timedelta(days=1)
    with deployment.producer() as producer:
        producer.send_definition(
            "billable_metric",
            {
                "code": "tokens",
                "name": "Tokens",
                "aggregation_type": "sum_agg",
                "field_name": "tokens",
            },
            defined,
        )
        producer.send_definition(
            "feature",
            {
                "code": "api",
                "name": "API access",
                "privileges": [{"code": "max_tokens", "value_type": "integer"}],
                "quota": {"billable_metric_code": "tokens", "privilege_code": "max_tokens"},
            },
            defined,
        )
        producer.send_definition(
            "plan",
            {
                "code": "api",
                "name": "API",
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
                "usage_thresholds": [{"amount_cents": 5000}],
                "entitlements": [{"feature_code": "api", "privileges": {"max_tokens": 1000}}],
            },
            defined,
        )
        producer.send_definition(
            "customer", {"external_id": "acme", "currency": "USD", "timezone": "UTC"}, defined
        )
        for external_id in SUBSCRIPTIONS:
            producer.send_subscription(
                {
                    "external_id": external_id,
                    "external_customer_id": "acme",
                    "plan_code": "api",
                    "subscription_at": start.isoformat(),
                    "payment_grace_seconds": 86400,
                },
                at=defined,
            )
        producer.tick(now - timedelta(seconds=5))


def http(
    method: str, url: str, body: bytes | None = None, key: str | None = KEY, **headers: str
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 90.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read()
            if done(value):
                return value
        except (LagoApiError, OSError) as error:
            value = error  # type: ignore[assignment]
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s; last: {value!r}")
        time.sleep(0.3)


def access(base: str, external_id: str, feature: str = "api") -> dict[str, Any]:
    status, body = http(
        "GET", f"{base}/api/v1/subscriptions/{external_id}/access?feature_code={feature}"
    )
    assert status == 200, body
    result: dict[str, Any] = body["access"]
    return result


@pytest.fixture(scope="module")
def live(
    settings: Settings, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    # Two workers on one machine: each keeps its state in memory (one RocksDB folder each
    # would need a run folder each).
    deployment = Deployment.create(settings, tmp_path_factory.mktemp("api"), store="memory://")
    deployment.worker_env = {"TOLLGATE_API_KEYS": f"{KEY}, {OTHER_KEY}"}
    try:
        catalog(deployment)
        deployment.start_worker()
        deployment.start_worker()
        # Both workers answer for every subscription: the group is settled, the state recovered.
        for base in deployment.api_urls:
            for external_id in SUBSCRIPTIONS:
                url = f"{base}/api/v1/subscriptions/{external_id}/access?feature_code=api"
                eventually(
                    lambda url=url: http("GET", url),  # type: ignore[misc]
                    lambda answer: answer[0] == 200 and answer[1]["access"]["reason"] == "allowed",
                    timeout=120,
                )
        yield deployment
    finally:
        deployment.stop_all()


def client(base: str, key: str = KEY) -> Client:
    return Client(api_key=key, api_url=base + "/")


def test_lago_client_events_usage_alerts_and_invoices(live: Deployment) -> None:
    base = live.api_urls[0]
    lago = client(base)
    now = int(time.time())
    for external_id in SUBSCRIPTIONS:
        created = lago.events.create(
            Event(
                transaction_id=f"{external_id}-t1",
                external_subscription_id=external_id,
                code="tokens",
                timestamp=now,
                properties={"tokens": 600},
            )
        )
        assert created is not None and created.transaction_id == f"{external_id}-t1"
        assert created.external_subscription_id == external_id and created.lago_id
    lago.events.batch_create(
        BatchEvent(
            events=[
                Event(
                    transaction_id=f"{external_id}-t2",
                    external_subscription_id=external_id,
                    code="tokens",
                    timestamp=now,
                    properties={"tokens": "400"},
                )
                for external_id in SUBSCRIPTIONS
            ]
        )
    )
    for external_id in SUBSCRIPTIONS:  # half of them are answered by the second worker
        usage = eventually(
            lambda external_id=external_id: lago.subscriptions.lifetime_usage(external_id),  # type: ignore[misc]
            lambda u: u.current_usage_amount_cents == 1000,
        )
        assert isinstance(usage, LifetimeUsageResponse)
        assert usage.external_subscription_id == external_id
        assert usage.invoiced_usage_amount_cents == 0
        assert [t.amount_cents for t in usage.usage_thresholds or []] == [5000]
        current = lago.customers.current_usage("acme", external_id)
        assert isinstance(current, CustomerUsageResponse)
        assert current.amount_cents == 1000 and current.currency == "USD"
        (charge,) = current.charges_usage
        assert charge.billable_metric.code == "tokens" and charge.amount_cents == 1000
        assert charge.events_count == 2
        # the same answers from either worker
        other = client(live.api_urls[1]).subscriptions.lifetime_usage(external_id)
        assert other.dict() == usage.dict()

    # 1,000 tokens used of 1,000: the quota is exhausted, on every worker
    decision = access(base, "sub-0")
    assert decision["allowed"] is False and decision["reason"] == "quota_exhausted"
    assert decision["remaining"] == 0 and decision["feature_code"] == "api"
    assert access(live.api_urls[1], "sub-0")["reason"] == "quota_exhausted"
    status, body = http("GET", f"{base}/api/v1/subscriptions/sub-0/entitlements")
    assert status == 200 and [f["code"] for f in body["entitlements"]] == ["api"]
    (privilege,) = body["entitlements"][0]["privileges"]
    assert privilege["code"] == "max_tokens" and privilege["value"] == 1000

    # alerts: created through Lago's create_alerts, applied by the worker, deleted again
    alerts = lago.subscriptions.create_alerts(
        "sub-1",
        AlertsList(
            alerts=[
                Alert(
                    alert_type="current_usage_amount",
                    code="spend",
                    name="Spend",
                    thresholds=AlertThresholdList(__root__=[AlertThreshold(value="2000")]),
                )
            ]
        ),
    )
    assert [a.code for a in alerts["alerts"]] == ["spend"]
    listed = eventually(
        lambda: http("GET", f"{base}/api/v1/subscriptions/sub-1/alerts"),
        lambda answer: answer[0] == 200 and len(answer[1]["alerts"]) == 1,
    )
    assert listed[1]["alerts"][0]["lago_id"] == alerts["alerts"][0].lago_id
    lago.subscriptions.delete_alerts("sub-1")
    eventually(
        lambda: http("GET", f"{base}/api/v1/subscriptions/sub-1/alerts"),
        lambda answer: answer[0] == 200 and answer[1]["alerts"] == [],
    )

    # 4,000 more tokens cross the $50 threshold: a progressive invoice, paid through the API
    lago.events.create(
        Event(
            transaction_id="sub-2-t3",
            external_subscription_id="sub-2",
            code="tokens",
            timestamp=now,
            properties={"tokens": 4000},
        )
    )
    usage = eventually(
        lambda: lago.subscriptions.lifetime_usage("sub-2"),
        lambda u: u.current_usage_amount_cents == 5000,
    )
    # I counts closed periods only (spec §4): the progressive invoice is in the outputs
    assert usage.invoiced_usage_amount_cents == 0
    assert usage.usage_thresholds and usage.usage_thresholds[0].completion_ratio == 1.0
    invoice_id = _progressive_invoice(live, "sub-2")
    paid = eventually(
        lambda: lago.invoices.update(Invoice(payment_status="succeeded"), invoice_id),
        lambda invoice: invoice.payment_status == "succeeded",
    )
    assert paid.lago_id == invoice_id and paid.total_amount_cents == 5000
    updated = _outputs_of(live, "invoice.payment_status_updated")
    assert [o.body["invoice"]["lago_id"] for o in updated] == [invoice_id]
    # a settled invoice leaves the state (spec §12): once the payment is applied, 404
    deadline = time.monotonic() + 60
    while True:
        try:
            lago.invoices.update(Invoice(payment_status="succeeded"), invoice_id)
        except LagoApiError as error:
            assert error.status_code == 404
            assert error.response == {
                "status": 404,
                "error": "Not Found",
                "code": "invoice_not_found",
            }
            break
        assert time.monotonic() < deadline, "the paid invoice is still unpaid in the state"
        time.sleep(0.3)


def _outputs_of(live: Deployment, webhook_type: str, timeout: float = 60.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [o for o in live.outputs(idle_exit=2.0) if o.webhook_type == webhook_type]
        if found:
            return found
    raise AssertionError(f"no {webhook_type} output in {timeout} s")


def _progressive_invoice(live: Deployment, external_id: str) -> str:
    for output in _outputs_of(live, "invoice.created"):
        invoice = output.body["invoice"]
        if (
            output.external_subscription_id == external_id
            and invoice["invoice_type"] == "progressive_billing"
        ):
            return str(invoice["lago_id"])
    raise AssertionError("no progressive invoice")


def test_unknown_ids_answer_as_lago(live: Deployment) -> None:
    base = live.api_urls[0]
    lago = client(base)
    with pytest.raises(LagoApiError) as error:
        lago.subscriptions.lifetime_usage("nobody")
    assert error.value.status_code == 404
    status, body = http("GET", f"{base}/api/v1/subscriptions/nobody/lifetime_usage")
    assert (status, body) == (
        404,
        {"status": 404, "error": "Not Found", "code": "subscription_not_found"},
    )
    decision = access(base, "nobody")
    assert decision["reason"] == "unknown_subscription" and decision["allowed"] is False
    status, body = http(
        "PUT",
        f"{base}/api/v1/invoices/no-such-invoice",
        b'{"invoice": {"payment_status": "succeeded"}}',
    )
    assert status == 404 and body["code"] == "invoice_not_found"


def _usage_events_end(live: Deployment) -> int:
    consumer = Consumer(
        {"bootstrap.servers": live.settings.kafka_bootstrap, "group.id": "api-probe"}
    )
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(live.topics.usage_events, p), timeout=10)[
                1
            ]
            for p in range(live.settings.partitions)
        )
    finally:
        consumer.close()


def test_hostile_requests_get_clear_answers_and_billing_goes_on(live: Deployment) -> None:
    base = live.api_urls[0]
    events = f"{base}/api/v1/events"
    good = json.dumps(
        {
            "event": {
                "transaction_id": "h1",
                "external_subscription_id": "sub-5",
                "code": "tokens",
                "properties": {"tokens": 1},
            }
        }
    ).encode()
    before = _usage_events_end(live)

    assert http("POST", events, good, key=None)[0] == 401
    status, body = http("POST", events, good, key="wrong")
    assert (status, body) == (401, {"status": 401, "error": "Unauthorized", "code": "unauthorized"})
    assert http("POST", events, good, key="", Authorization="Basic " + KEY)[0] == 401
    assert http("GET", f"{base}/api/v1/nothing/here")[0] == 404
    assert http("DELETE", events)[0] == 405
    status, body = http("POST", events, b'{"event": {"transaction_id": ')
    assert status == 400 and body["error"].startswith("BadRequest")
    status, body = http("POST", events, b'{"event": {"transaction_id": ["x"], "code": 5}}')
    assert status == 422 and body["code"] == "validation_errors" and body["error_details"]
    status, body = http(
        "POST",
        f"{events}/batch",
        json.dumps({"events": [json.loads(good)["event"], {"code": 1}]}).encode(),
    )
    assert status == 422 and list(body["error_details"]) == ["1"]  # and the good one not sent
    status, body = http("POST", events, b'{"event": "x"}')
    assert status == 400
    status, body = http("POST", events, b"[" * 100_000)
    assert status == 400
    status, body = http("POST", events, b" " * (2 << 20))
    assert status == 413 and body["code"] == "payload_too_large"
    assert http("GET", f"{base}/api/v1/subscriptions/sub-5/access")[0] == 422  # no feature_code
    assert _usage_events_end(live) == before  # nothing was published

    # A slow client holds its connection; the others are served meanwhile.
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as slow:
        slow.sendall(
            b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + KEY.encode()
            + b'\r\nContent-Length: 1000\r\n\r\n{"event":'
        )
        started = time.monotonic()
        assert access(base, "sub-5")["feature_code"] == "api"
        assert time.monotonic() - started < 5
        assert http("POST", events, good)[0] == 200
    # and billing went on: the good event was billed
    eventually(
        lambda: client(base, OTHER_KEY).subscriptions.lifetime_usage("sub-5"),
        lambda u: u.current_usage_amount_cents >= 1,
    )
    assert all(process.poll() is None for process in live.processes)
