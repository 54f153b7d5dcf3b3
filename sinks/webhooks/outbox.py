"""The webhook outbox (`webhook_deliveries`): filled by the intake loop, drained by delivery.

Intake: every output becomes one pending delivery per endpoint that wants its webhook type,
in the transaction that stores the batch's offsets; the key (endpoint, output id) means an
output read twice never makes a second delivery.

Delivery claims due rows with ``FOR UPDATE SKIP LOCKED`` (several processes share the work) and
leases them by moving `next_attempt_at` past the end of the attempt, so no transaction stays
open during HTTP calls; a process killed mid-attempt leaves rows that fall due again when the
lease ends. An attempt's result is recorded only if nobody recorded one for that attempt yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.wire import dumps
from sinks.common.consumer import Consumed, Written
from sinks.common.db import Connection
from sinks.webhooks.retry import Outcome

DEFAULT_GROUP = "tollgate-sink-webhooks"


@dataclass(frozen=True, slots=True)
class Queued:
    """An output as the outbox keeps it: `body` is the exact text every attempt POSTs."""

    webhook_id: str
    webhook_type: str
    external_subscription_id: str | None
    body: str
    event_at: datetime


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed delivery with what its attempt needs."""

    id: int
    endpoint_id: int
    webhook_id: str
    webhook_type: str
    body: str
    attempts: int
    event_at: datetime
    url: str
    secrets: tuple[str, ...]
    lago_signature: bool


class OutboxWriter:
    """The `BatchWriter` of the webhook intake loop."""

    sink = "webhooks"

    def __init__(self, first_delay: float) -> None:
        self.first_delay = timedelta(seconds=first_delay)

    def prepare(self, item: Consumed) -> Queued:
        record = item.record
        body = dumps(record.body)
        return Queued(
            record.id, record.webhook_type, record.external_subscription_id, body, item.event_at
        )

    def write(self, conn: Connection, items: Sequence[Queued], now: datetime) -> Written:
        endpoints = conn.execute(
            "SELECT id, event_types FROM webhook_endpoints ORDER BY id FOR KEY SHARE"
        ).fetchall()
        due_at = now + self.first_delay
        rows = [
            (endpoint, item.webhook_id, item.webhook_type, item.external_subscription_id,
             item.body, due_at, item.event_at)
            for item in items
            for endpoint, types in endpoints
            if types is None or item.webhook_type in types
        ]  # fmt: skip
        if not rows:
            return Written({}, {})
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO webhook_deliveries (endpoint_id, webhook_id, webhook_type,"
                " external_subscription_id, body, next_attempt_at, event_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (endpoint_id, webhook_id) DO NOTHING",
                rows,
            )
            inserted = max(cursor.rowcount, 0)
        return Written({"webhook_deliveries": inserted}, {"webhook_deliveries": len(rows)})


def claim_due(conn: Connection, *, now: datetime, limit: int, lease: timedelta) -> list[Due]:
    """Lease up to `limit` due deliveries, oldest due first, skipping rows others hold."""
    rows = conn.execute(
        """
        WITH due AS (
            SELECT endpoint_id, webhook_id FROM webhook_deliveries
            WHERE status = 'pending' AND next_attempt_at <= %(now)s
            ORDER BY next_attempt_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE webhook_deliveries AS d SET next_attempt_at = %(lease_until)s
        FROM due, webhook_endpoints AS e
        WHERE d.endpoint_id = due.endpoint_id AND d.webhook_id = due.webhook_id
          AND e.id = d.endpoint_id
        RETURNING d.id, d.endpoint_id, d.webhook_id, d.webhook_type, d.body, d.attempts,
                  d.event_at, e.url, e.secret, e.previous_secret, e.previous_secret_expires_at,
                  e.lago_signature
        """,
        {"now": now, "limit": limit, "lease_until": now + lease},
    ).fetchall()
    return [
        Due(id_, endpoint, webhook, kind, body, attempts, event_at, url,
            _secrets(secret, previous, expires, now), lago)
        for (id_, endpoint, webhook, kind, body, attempts, event_at, url, secret, previous,
             expires, lago) in rows
    ]  # fmt: skip


def record_outcomes(conn: Connection, outcomes: Sequence[tuple[Due, Outcome]]) -> int:
    """Store each attempt's result; returns how many were stored (a result for an attempt that
    another process already recorded, after this one's lease ran out, is dropped)."""
    with conn.cursor() as cursor:
        cursor.executemany(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = %(status)s,"
            " next_attempt_at = %(next_attempt_at)s, last_attempt_at = %(attempted_at)s,"
            " last_status_code = %(status_code)s, last_error = %(error)s,"
            " delivered_at = %(delivered_at)s"
            " WHERE endpoint_id = %(endpoint_id)s AND webhook_id = %(webhook_id)s"
            " AND attempts = %(attempts)s AND status = 'pending'",
            [
                {
                    "status": outcome.status,
                    "next_attempt_at": outcome.next_attempt_at,
                    "attempted_at": outcome.attempted_at,
                    "status_code": outcome.status_code,
                    "error": outcome.error,
                    "delivered_at": outcome.attempted_at if outcome.delivered else None,
                    "endpoint_id": due.endpoint_id,
                    "webhook_id": due.webhook_id,
                    "attempts": due.attempts,
                }
                for due, outcome in outcomes
            ],
        )
        return max(cursor.rowcount, 0)


def exchange(
    conn: Connection,
    *,
    finished: Sequence[tuple[Due, Outcome]],
    now: datetime,
    limit: int,
    lease: timedelta,
) -> list[Due]:
    """Record finished attempts and claim up to `limit` new ones: one transaction, one commit."""
    if finished:
        record_outcomes(conn, finished)
    return claim_due(conn, now=now, limit=limit, lease=lease) if limit else []


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    oldest_pending_age: float
    failed: int


def outbox_stats(conn: Connection, now: datetime) -> OutboxStats:
    """Pending and failed counts (each served by its partial index) and the oldest pending."""
    pending = conn.execute(
        "SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending'"
    ).fetchone()
    failed = conn.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'"
    ).fetchone()
    assert pending is not None and failed is not None
    count, oldest = pending
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return OutboxStats(count, age, failed[0])


def _secrets(
    secret: str, previous: str | None, expires: datetime | None, now: datetime
) -> tuple[str, ...]:
    """The current secret, then the previous one while its rotation grace period lasts."""
    if previous is not None and expires is not None and now < expires:
        return (secret, previous)
    return (secret,)
