"""Deterministic ids: the same records give the same ids on every replay and every worker."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1d7a52-3c1e-4b8e-9a57-1b7f0c2d9e41")


def stable_id(*parts: object) -> str:
    """A UUID (v5) derived from `parts`; at-least-once delivery becomes exactly-once in effect."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(str(part) for part in parts)))


def text_id(value: object) -> str | None:
    """An id as spec §1 accepts it: a non-empty string, or an integer (compared as its text);
    None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    if isinstance(value, int) and value.bit_length() > 256:
        return None  # no id has 78 digits; str() would refuse past Python's digit limit
    text = str(value)
    return text or None


def subscription_id(external_id: str, generation: int) -> str:
    return stable_id("subscription", external_id, generation)


def plan_id(code: str) -> str:
    return stable_id("plan", code)


def customer_id(external_id: str) -> str:
    return stable_id("customer", external_id)


def metric_id(code: str) -> str:
    return stable_id("billable_metric", code)


def charge_id(plan_code: str, billable_metric_code: str) -> str:
    """A plan charges a metric at most once (spec §1): the pair names the charge."""
    return stable_id("charge", plan_code, billable_metric_code)


def alert_id(subscription_lago_id: str, code: str, serial: int) -> str:
    """The `serial`-th alert created under a subscription (an alert deleted and created again
    under the same code is a new alert)."""
    return stable_id("alert", subscription_lago_id, code, serial)


def lifetime_usage_id(subscription_lago_id: str) -> str:
    return stable_id("lifetime_usage", subscription_lago_id)


def organization_id() -> str:
    """tollgate bills for one organization: Lago's `lago_organization_id` is this constant."""
    return stable_id("organization")


def invoice_id(subscription_lago_id: str, sequential_id: int) -> str:
    return stable_id("invoice", subscription_lago_id, sequential_id)


def invoice_number(subscription_lago_id: str, sequential_id: int) -> str:
    return f"TG-{subscription_lago_id[:8].upper()}-{sequential_id:03d}"
