"""`tollgate sink webhooks` against a real HTTP receiver (aiohttp) that verifies every request
with the `standardwebhooks` package and drops duplicates by `webhook-id`, as receivers should."""

from __future__ import annotations

import pytest

from pipeline.wire import OutputRecord, dumps
from tests.integration.sinks_support import Slice, outputs_of, publish, stack_slice, stop, wait_for
from tests.integration.webhook_receiver import TIMEOUT, Receiver, Route, receiver

__all__ = ["receiver", "stack_slice"]  # fixtures, used by name

pytestmark = pytest.mark.integration

FAST = {
    "TOLLGATE_WEBHOOK_TIMEOUT": str(TIMEOUT),
    "TOLLGATE_WEBHOOK_POLL_INTERVAL": "0.1",
    "TOLLGATE_SINK_BATCH_WAIT": "0.1",
}


def _status_counts(stack: Slice, endpoint: int) -> dict[str, int]:
    rows = stack.query(
        "SELECT status, count(*) FROM webhook_deliveries WHERE endpoint_id = %s GROUP BY status",
        (endpoint,),
    )
    return dict(rows)


def _bodies(records: list[OutputRecord]) -> dict[str, bytes]:
    return {record.id: dumps(record.body).encode() for record in records}


def test_failing_receiver_gets_each_webhook_once_across_retries_and_a_kill(
    stack_slice: Slice, receiver: Receiver
) -> None:
    stack = stack_slice
    records = outputs_of("ai_tokens_recurring.jsonl", "seats_credit_note.jsonl")
    expected = _bodies(records)
    endpoint, secret = stack.add_endpoint(receiver.url("/hook"), "--lago-signature")
    # Refused connections until the receiver starts, then per id: 500, a timeout, then 2xx.
    route = Route(secret, lambda n: {1: "500", 2: "timeout"}.get(n, "ok"))
    receiver.routes["/hook"] = route
    publish(stack.settings.kafka_bootstrap, stack.topics.outputs, records * 2)  # redelivered

    env = {**FAST, "TOLLGATE_WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5,1,1,1,1,1,1,1,1,1"}
    sink = ("sink", "webhooks", "--group", stack.group("webhooks"))
    first = stack.start(*sink, name="first", **env)

    def all_refused_once() -> bool:
        return stack.scalar(
            "SELECT count(*) FILTER (WHERE attempts >= 1 AND last_status_code IS NULL) = %s"
            " AND count(*) = %s FROM webhook_deliveries",
            (len(expected), len(expected)),
        )

    wait_for(all_refused_once, timeout=60, what="a refused first attempt of every delivery")
    receiver.start()
    wait_for(lambda: sum(route.seen.values()) >= 5, timeout=30, what="attempts on the receiver")
    first.kill()  # mid-retries, maybe mid-attempt: leased rows fall due again later
    first.wait(10)
    assert _status_counts(stack, endpoint).get("pending"), (
        "everything was delivered before the kill"
    )

    second = stack.start(*sink, name="second", **env)
    try:
        wait_for(
            lambda: _status_counts(stack, endpoint).get("delivered") == len(expected),
            timeout=90,
            what="every delivery delivered",
        )
    finally:
        assert stop(second) == 0, stack.log_text("second")

    assert route.bad_signatures == []
    assert route.accepted == expected  # each id once, with the exact bytes of its body
    assert route.lago_signatures >= len(expected)
    assert all(route.seen[webhook_id] >= 3 for webhook_id in expected)
    # Recorded attempts: a refused one, a 500, then the 2xx (the timeout may have been in
    # flight at the kill, its result never recorded).
    assert stack.query("SELECT min(attempts) >= 3, count(*) FROM webhook_deliveries") == [
        (True, len(expected))
    ]
    listing = stack.tollgate("webhooks", "deliveries", "--limit", "100")
    assert listing.count("delivered") == len(expected)


def test_failed_deliveries_retry_on_demand_and_endpoints_filter_types(
    stack_slice: Slice, receiver: Receiver
) -> None:
    stack = stack_slice
    records = outputs_of("seats_credit_note.jsonl")
    expected = _bodies(records)
    invoices = {r.id for r in records if r.webhook_type == "invoice.created"}
    down, down_secret = stack.add_endpoint(receiver.url("/down"))
    picky, picky_secret = stack.add_endpoint(receiver.url("/picky"), "--events", "invoice.created")
    receiver.routes["/down"] = down_route = Route(down_secret, lambda n: "500")
    receiver.routes["/picky"] = picky_route = Route(picky_secret, lambda n: "ok")
    receiver.start()
    publish(stack.settings.kafka_bootstrap, stack.topics.outputs, records)

    env = {**FAST, "TOLLGATE_WEBHOOK_RETRY_SCHEDULE": "0,0.2,0.2"}
    sink = stack.start("sink", "webhooks", "--group", stack.group("webhooks"), **env)
    try:
        wait_for(
            lambda: _status_counts(stack, down) == {"failed": len(expected)},
            timeout=60,
            what="every delivery to the failing endpoint failed",
        )
        wait_for(
            lambda: _status_counts(stack, picky) == {"delivered": len(invoices)},
            timeout=30,
            what="the invoices delivered to the filtered endpoint",
        )
        assert set(picky_route.accepted) == invoices
        assert all(down_route.seen[webhook_id] == 3 for webhook_id in expected)
        assert stack.tollgate("webhooks", "deliveries", "--failed").count("failed") == len(expected)
        listing = stack.tollgate("webhooks", "list")
        assert "invoice.created" in listing and receiver.url("/down") in listing

        # A new secret: deliveries carry both signatures for a while, and the new one verifies.
        rotated = stack.tollgate("webhooks", "rotate-secret", str(down))
        new_secret = rotated.split()[-1]
        assert new_secret.startswith("whsec_") and new_secret != down_secret
        receiver.routes["/down"] = fixed = Route(new_secret, lambda n: "ok")
        assert stack.tollgate("webhooks", "retry", "--all-failed").startswith(str(len(expected)))
        wait_for(
            lambda: _status_counts(stack, down) == {"delivered": len(expected)},
            timeout=30,
            what="the retried deliveries delivered",
        )
    finally:
        assert stop(sink) == 0, stack.log_text()
    assert fixed.accepted == expected and fixed.bad_signatures == []
    assert picky_route.bad_signatures == []
    one = stack.scalar("SELECT min(id) FROM webhook_deliveries WHERE endpoint_id = %s", (down,))
    refused = stack.start("webhooks", "retry", str(one), name="retry")
    assert refused.wait(30) == 1 and "delivered already" in stack.log_text("retry")

    # Housekeeping: delivered rows can be pruned (the others stay); an endpoint can be removed.
    kept = stack.tollgate("webhooks", "prune")  # default: older than 30 days, none here
    assert kept.startswith("deleted 0 deliveries")
    pruned = stack.tollgate("webhooks", "prune", "--older-than-days", "0")
    assert pruned.startswith(f"deleted {len(expected) + len(invoices)} deliveries")
    assert _status_counts(stack, down) == {} and _status_counts(stack, picky) == {}
    removed = stack.tollgate("webhooks", "remove", str(picky))
    assert removed == f"removed endpoint {picky} ({receiver.url('/picky')}) and 0 deliveries\n"
    assert receiver.url("/picky") not in stack.tollgate("webhooks", "list")
    missing = stack.start("webhooks", "remove", str(picky), name="remove")
    assert missing.wait(30) == 1 and "no webhook endpoint with id" in stack.log_text("remove")
