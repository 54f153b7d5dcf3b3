"""`tollgate webhooks ...`: endpoints (add, list, rotate the secret, remove) and the outbox
(list deliveries, retry them, prune delivered ones). Plain queries on one connection; the CLI
formats the results."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from pipeline.kernel.errors import TollgateError
from sinks.common.db import Connection

WEBHOOK_TYPES = (
    "invoice.created",
    "subscription.usage_threshold_reached",
    "credit_note.created",
    "event.error",
)
ROTATION_GRACE = timedelta(hours=24)
"""After `rotate-secret`, deliveries carry a signature with the previous secret too, this long."""

_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


class AdminError(TollgateError):
    """A webhook command that cannot be carried out as asked."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    url: str
    secret: str
    event_types: tuple[str, ...] | None
    lago_signature: bool
    created_at: datetime
    pending: int = 0
    delivered: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    endpoint_id: int
    url: str
    webhook_id: str
    webhook_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def parse_event_types(text: str | None) -> tuple[str, ...] | None:
    """``invoice.created,credit_note.created`` → a tuple; None or empty: every type."""
    if not text:
        return None
    types = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in types if kind not in WEBHOOK_TYPES]
    if unknown:
        raise AdminError(
            f"unknown webhook type(s) {', '.join(unknown)}: use {', '.join(WEBHOOK_TYPES)}"
        )
    return types or None


def add_endpoint(
    conn: Connection,
    url: str,
    *,
    secret: str,
    event_types: Sequence[str] | None,
    lago_signature: bool,
) -> Endpoint:
    if not _URL.match(url):
        raise AdminError(f"{url!r} is not an http:// or https:// URL")
    try:
        row = conn.execute(
            "INSERT INTO webhook_endpoints (url, secret, event_types, lago_signature)"
            " VALUES (%s, %s, %s, %s) RETURNING id, created_at",
            (url, secret, list(event_types) if event_types else None, lago_signature),
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise AdminError(
            f"an endpoint for {url} already exists (`tollgate webhooks list`)"
        ) from None
    assert row is not None
    types = tuple(event_types) if event_types else None
    return Endpoint(row[0], url, secret, types, lago_signature, row[1])


def list_endpoints(conn: Connection) -> list[Endpoint]:
    rows = conn.execute(
        "SELECT e.id, e.url, e.secret, e.event_types, e.lago_signature, e.created_at,"
        " count(d.*) FILTER (WHERE d.status = 'pending'),"
        " count(d.*) FILTER (WHERE d.status = 'delivered'),"
        " count(d.*) FILTER (WHERE d.status = 'failed')"
        " FROM webhook_endpoints e LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.id"
        " GROUP BY e.id ORDER BY e.id"
    ).fetchall()
    return [
        Endpoint(id_, url, secret, tuple(types) if types else None, lago, created, p, d, f)
        for id_, url, secret, types, lago, created, p, d, f in rows
    ]


def rotate_secret(conn: Connection, endpoint_id: int, *, secret: str, now: datetime) -> str:
    """Make `secret` current; the old one still signs (alongside) for `ROTATION_GRACE`."""
    row = conn.execute(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = %s,"
        " previous_secret_expires_at = %s WHERE id = %s RETURNING id",
        (secret, now + ROTATION_GRACE, endpoint_id),
    ).fetchone()
    if row is None:
        raise AdminError(f"no webhook endpoint with id {endpoint_id} (`tollgate webhooks list`)")
    return secret


def remove_endpoint(conn: Connection, endpoint_id: int) -> tuple[str, int]:
    """Delete an endpoint and its deliveries (pending ones are never sent); returns its URL and
    how many deliveries went with it."""
    with conn.transaction():
        deliveries = conn.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %s", (endpoint_id,)
        ).fetchone()
        row = conn.execute(
            "DELETE FROM webhook_endpoints WHERE id = %s RETURNING url", (endpoint_id,)
        ).fetchone()
    if row is None:
        raise AdminError(f"no webhook endpoint with id {endpoint_id} (`tollgate webhooks list`)")
    return row[0], deliveries[0] if deliveries else 0


def prune_delivered(conn: Connection, *, before: datetime) -> int:
    """Delete deliveries delivered before `before`; pending and failed ones stay. Returns how
    many. A pruned delivery no longer guards its output: if the sink's group were rewound past
    it, that output would be delivered again (receivers de-duplicate by `webhook-id`)."""
    cursor = conn.execute(
        "DELETE FROM webhook_deliveries WHERE status = 'delivered' AND delivered_at < %s",
        (before,),
    )
    return max(cursor.rowcount, 0)


def list_deliveries(conn: Connection, *, failed_only: bool, limit: int) -> list[Delivery]:
    where = "WHERE d.status = 'failed'" if failed_only else ""
    rows = conn.execute(
        "SELECT d.id, d.endpoint_id, e.url, d.webhook_id, d.webhook_type, d.status, d.attempts,"
        " d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at"
        f" FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id {where}"
        " ORDER BY d.id DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [Delivery(*row) for row in rows]


def retry_delivery(conn: Connection, delivery_id: int, *, now: datetime) -> int:
    """A failed or pending delivery becomes due now; returns 1 (0: already delivered)."""
    row = conn.execute("SELECT status FROM webhook_deliveries WHERE id = %s", (delivery_id,))
    found = row.fetchone()
    if found is None:
        raise AdminError(
            f"no webhook delivery with id {delivery_id} (`tollgate webhooks deliveries`)"
        )
    if found[0] == "delivered":
        raise AdminError(f"delivery {delivery_id} was delivered already")
    return _requeue(conn, "id = %s", (delivery_id,), now)


def retry_failed(conn: Connection, *, now: datetime) -> int:
    """Every failed delivery becomes pending and due now; returns how many."""
    return _requeue(conn, "status = 'failed'", (), now)


def _requeue(conn: Connection, where: str, params: tuple[object, ...], now: datetime) -> int:
    cursor = conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = %s"
        f" WHERE status <> 'delivered' AND {where}",
        (now, *params),
    )
    return max(cursor.rowcount, 0)
