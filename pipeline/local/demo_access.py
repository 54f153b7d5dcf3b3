"""Which demo subscriptions are blocked at the end, and why, from the `subscription.access_changed`
webhooks the webhook sink stored (spec §12): a gateway's view, rebuilt from what it was told.

A (subscription, feature) pair's decision is the reason of its latest change; a subscription
is blocked while some pair's latest decision is not `allowed`, for the reason of its latest such
change. Reading and grouping are pure; `read_access_changes` is the one query.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sinks.common.db import Connection

ALLOWED = "allowed"
ACCESS_CHANGES = (
    "SELECT body FROM webhook_deliveries WHERE webhook_type = 'subscription.access_changed'"
    " AND endpoint_id = (SELECT min(id) FROM webhook_endpoints) ORDER BY id"
)


@dataclass(frozen=True, slots=True)
class AccessChange:
    subscription: str
    feature: str
    reason: str


@dataclass(frozen=True, slots=True)
class Blocked:
    subscription: str
    reason: str
    features: tuple[str, ...]  # blocked features, in code order


def parse_access_change(body: str) -> AccessChange | None:
    """The change a stored webhook body reports; None for a body of another shape."""
    try:
        access = json.loads(body).get("access")
    except (ValueError, AttributeError):
        return None
    if not isinstance(access, dict):
        return None
    fields = (access.get(k) for k in ("external_subscription_id", "feature_code", "reason"))
    subscription, feature, reason = fields
    if not all(isinstance(field, str) for field in (subscription, feature, reason)):
        return None
    return AccessChange(str(subscription), str(feature), str(reason))


def blocked_subscriptions(changes: Iterable[AccessChange]) -> list[Blocked]:
    """The blocked subscriptions, by external id, given every change in the order emitted."""
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    for order, change in enumerate(changes):
        latest[(change.subscription, change.feature)] = (order, change.reason)
    blocking: defaultdict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for (subscription, feature), (order, reason) in latest.items():
        if reason != ALLOWED:
            blocking[subscription].append((order, reason, feature))
    return [
        Blocked(subscription, max(pairs)[1], tuple(sorted(feature for _, _, feature in pairs)))
        for subscription, pairs in sorted(blocking.items())
    ]


def by_reason(blocked: Iterable[Blocked]) -> dict[str, list[Blocked]]:
    """Blocked subscriptions grouped by reason, the most frequent reason first."""
    groups: defaultdict[str, list[Blocked]] = defaultdict(list)
    for item in blocked:
        groups[item.reason].append(item)
    return dict(sorted(groups.items(), key=lambda group: (-len(group[1]), group[0])))


def read_access_changes(conn: Connection) -> list[AccessChange]:
    """Every access change delivered to the demo's (first) endpoint, in the order the sink
    stored them: a subscription's outputs come from one partition, in order."""
    rows = conn.execute(ACCESS_CHANGES).fetchall()
    return [change for (body,) in rows if (change := parse_access_change(body)) is not None]
