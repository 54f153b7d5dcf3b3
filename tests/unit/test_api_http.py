"""The API's HTTP layer without a broker: keys, Lago's error bodies, limits, event checks, and
where a read is answered. The publisher records instead of sending (the live worker's API, with
Kafka and Lago's client, is tests/integration/test_api.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from lago_python_client.models.event import EventResponse

from pipeline.api.auth import Keys
from pipeline.api.directory import Here, Location, Nowhere, There
from pipeline.api.forwarding import Forwarder
from pipeline.api.handlers import Handlers
from pipeline.api.publishing import Publisher
from pipeline.api.server import build_application
from pipeline.billing.context import EngineSettings
from pipeline.billing.engine import Ledger
from pipeline.wire import DEFAULT_SCHEMA_IDS, decode_usage_event

KEY = "k-123"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MAX_BODY = 64 * 1024


class Recorder(Publisher):
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, records: Sequence[tuple[str, bytes]], at: datetime) -> None:
        self.sent.extend(records)


class OneLedger:
    """Every subscription lives here, except those named `remote-*` (another worker) and
    `moving-*` (nobody, a rebalance)."""

    def __init__(self) -> None:
        self.ledger = Ledger(EngineSettings.of(0, 35))

    def locate(self, external_subscription_id: str) -> Location:
        if external_subscription_id.startswith("remote-"):
            return There("http://127.0.0.1:9")  # nothing listens: unreachable
        if external_subscription_id.startswith("moving-"):
            return Nowhere("partitions are being reassigned; retry")
        return Here(self.ledger, NOW)

    def local(self) -> Sequence[Here]:
        return [Here(self.ledger, NOW)]

    def peers(self) -> Sequence[str]:
        return []


def call(
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = KEY,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Recorder]:
    recorder = Recorder()
    handlers = Handlers(
        OneLedger(),
        recorder,
        Forwarder(timeout=2.0),
        DEFAULT_SCHEMA_IDS,
        max_body_bytes=MAX_BODY,
        clock=lambda: NOW,
    )
    application = build_application(
        handlers, Keys([KEY, "other"]), max_body_bytes=MAX_BODY, served_by="http://here:1"
    )

    async def run() -> tuple[int, Any]:
        async with TestClient(TestServer(application)) as client:
            sent = dict(headers or {})
            if key is not None:
                sent["Authorization"] = f"Bearer {key}"
            data = raw if raw is not None else (None if body is None else json.dumps(body))
            async with client.request(method, path, data=data, headers=sent) as answer:
                return answer.status, json.loads(await answer.read() or b"null")

    status, answer = asyncio.run(run())
    return status, answer, recorder


EVENT = {
    "transaction_id": "t-1",
    "external_subscription_id": "sub-1",
    "code": "tokens",
    "timestamp": 1772366400,
    "properties": {"tokens": "1.5"},
}


def test_an_event_is_published_keyed_by_its_subscription_and_answered_as_lago() -> None:
    status, body, recorder = call("POST", "/api/v1/events", {"event": EVENT})
    assert status == 200
    parsed = EventResponse.parse_obj(body["event"])
    assert parsed.transaction_id == "t-1" and parsed.external_subscription_id == "sub-1"
    assert (
        parsed.timestamp == "2026-03-01T12:00:00Z" and parsed.created_at == "2026-03-01T12:00:00Z"
    )
    ((key, value),) = recorder.sent
    assert key == "sub-1"
    assert decode_usage_event(value)["properties"] == {"tokens": "1.5"}


def test_keys_are_required_and_compared_whole() -> None:
    for key in (None, "", "k-12", "k-1234", "K-123"):
        status, body, recorder = call("POST", "/api/v1/events", {"event": EVENT}, key=key)
        assert (status, body) == (
            401,
            {"status": 401, "error": "Unauthorized", "code": "unauthorized"},
        )
        assert recorder.sent == []
    status, _, _ = call(
        "POST",
        "/api/v1/events",
        {"event": EVENT},
        key=None,
        headers={"Authorization": f"Basic {KEY}"},
    )
    assert status == 401
    assert call("POST", "/api/v1/events", {"event": EVENT}, key="other")[0] == 200
    assert KEY not in repr(Keys([KEY]))


def test_unknown_paths_and_methods() -> None:
    status, body, _ = call("GET", "/api/v1/nothing")
    assert status == 404 and body["code"] == "route_not_found"
    status, body, _ = call("GET", "/api/v1/events")
    assert status == 405 and body["code"] == "method_not_allowed"


def test_bad_bodies_publish_nothing() -> None:
    cases: list[tuple[bytes, int]] = [
        (b"{", 400),
        (b"\xff\xfe", 400),
        (b'{"event": 5}', 400),
        (b"[]", 400),
        (b"NaN", 400),
        (b'{"event": {"transaction_id": "t", "code": "c"}}', 422),
        (
            b'{"event": {"transaction_id": ["t"], "external_subscription_id": "s", "code": "c"}}',
            422,
        ),
        (
            b'{"event": {"transaction_id": "t", "external_subscription_id": "s", "code": "c", '
            b'"timestamp": "yesterday"}}',
            422,
        ),
        (
            b'{"event": {"transaction_id": "t", "external_subscription_id": "s", "code": "c", '
            b'"properties": [1]}}',
            422,
        ),
        (b"[" * 3000, 400),
    ]
    for raw, expected in cases:
        status, body, recorder = call("POST", "/api/v1/events", raw=raw)
        assert status == expected, (raw, body)
        assert body["status"] == expected and recorder.sent == []
        if expected == 422:
            assert body["code"] == "validation_errors" and body["error_details"]


def test_a_body_over_the_limit_is_413_from_its_length() -> None:
    status, body, recorder = call("POST", "/api/v1/events", raw=b" " * (MAX_BODY + 1))
    assert status == 413 and body["code"] == "payload_too_large" and recorder.sent == []


def test_one_bad_event_refuses_the_whole_batch() -> None:
    batch = {"events": [EVENT, {**EVENT, "transaction_id": None}, EVENT]}
    status, body, recorder = call("POST", "/api/v1/events/batch", batch)
    assert status == 422 and list(body["error_details"]) == ["1"]
    assert recorder.sent == []
    status, body, _ = call("POST", "/api/v1/events/batch", {"events": [EVENT] * 101})
    assert status == 422
    status, body, recorder = call("POST", "/api/v1/events/batch", {"events": [EVENT, EVENT]})
    assert status == 200 and len(body["events"]) == 2 and len(recorder.sent) == 2


def test_reads_answer_404_503_or_forward_as_lago() -> None:
    status, body, _ = call("GET", "/api/v1/subscriptions/nobody/lifetime_usage")
    assert (status, body) == (
        404,
        {"status": 404, "error": "Not Found", "code": "subscription_not_found"},
    )
    status, body, _ = call("GET", "/api/v1/subscriptions/moving-1/lifetime_usage")
    assert status == 503 and body["code"] == "service_unavailable"
    status, body, _ = call("GET", "/api/v1/subscriptions/remote-1/lifetime_usage")
    assert status == 503 and "did not answer" in body["message"]  # the owner is unreachable
    status, body, _ = call(
        "GET",
        "/api/v1/subscriptions/remote-1/lifetime_usage",
        headers={"X-Tollgate-Forwarded": "1"},
    )
    assert status == 503  # forwarded once, never again
    status, body, _ = call("GET", "/api/v1/subscriptions/nobody/access?feature_code=api")
    assert status == 200 and body["access"]["reason"] == "unknown_subscription"
    assert body["access"]["allowed"] is False
    assert call("GET", "/api/v1/subscriptions/nobody/access")[0] == 422
    status, body, _ = call("GET", "/api/v1/customers/acme/current_usage")
    assert status == 422 and "external_subscription_id" in body["error_details"]
    status, body, _ = call("PUT", "/api/v1/invoices/x", {"invoice": {"payment_status": "paid"}})
    assert status == 422
    status, body, _ = call(
        "PUT", "/api/v1/invoices/x", {"invoice": {"payment_status": "succeeded"}}
    )
    assert status == 404 and body["code"] == "invoice_not_found"
