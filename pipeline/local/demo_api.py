"""The HTTP API in `tollgate demo`: its key, and at the end the same subscriptions' access asked
of the API, to be read beside the blocked-subscriptions table (the webhook's reason and the
API's answer come from the same state)."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from pipeline.kernel.commands import Echo
from pipeline.kernel.settings import Settings

FEATURE = "ai_tokens"


def demo_key(settings: Settings) -> str:
    """The configured key, else one made for this run."""
    keys = settings.api_key_list
    return keys[0] if keys else f"demo-{secrets.token_hex(12)}"


def local_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    return f"http://{host}:{settings.api_port}"


def announce(settings: Settings, key: str, subscription: str, echo: Echo) -> None:
    base = local_url(settings)
    echo(f"HTTP API: {base}  (key {key})")
    echo(
        f"  try: curl -H 'Authorization: Bearer {key}' "
        f"'{base}/api/v1/subscriptions/{subscription}/access?feature_code={FEATURE}'"
    )


def get(base: str, key: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def show_access(settings: Settings, key: str, subscriptions: Sequence[str], echo: Echo) -> None:
    """Each subscription's decision for the metered feature and its lifetime usage, asked of
    the API."""
    base = local_url(settings)
    echo(f"asked of the HTTP API ({base}):")
    for subscription in subscriptions:
        try:
            status, body = get(
                base, key, f"/api/v1/subscriptions/{subscription}/access?feature_code={FEATURE}"
            )
            _, usage = get(base, key, f"/api/v1/subscriptions/{subscription}/lifetime_usage")
        except (OSError, ValueError) as error:
            echo(f"  {subscription}: the API did not answer ({error})")
            continue
        echo("  " + describe(subscription, status, body, usage))


def describe(subscription: str, status: int, access: Any, usage: Any) -> str:
    if status != 200 or not isinstance(access, dict) or "access" not in access:
        return f"{subscription}: HTTP {status} {access}"
    decision = access["access"]
    remaining = decision.get("remaining")
    line = f"{subscription}: {FEATURE} {decision['reason']}"
    if remaining is not None:
        line += f" (remaining {remaining:,})"
    lifetime = usage.get("lifetime_usage") if isinstance(usage, dict) else None
    if isinstance(lifetime, dict):
        line += (
            f"; lifetime usage: invoiced {lifetime['invoiced_usage_amount_cents'] / 100:,.2f}, "
            f"current {lifetime['current_usage_amount_cents'] / 100:,.2f}"
        )
    return line
