"""Webhook signatures, pure: no I/O, no clock, no randomness (callers pass them in).

Standard Webhooks (https://www.standardwebhooks.com): the secret is ``whsec_`` + base64 of
random bytes; the key is those bytes. Each delivery carries

    webhook-id         the output's deterministic id (the same on every retry and replay)
    webhook-timestamp  unix seconds of this attempt
    webhook-signature  "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))

During a secret rotation the header holds one signature per secret, space-separated, and a
receiver accepts the delivery when any of them matches. Lago's own header, as an option:
``X-Lago-Signature`` = base64(HMAC-SHA256(secret text, body)) with
``X-Lago-Signature-Algorithm: hmac``, the key being the whole secret text as printed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

SECRET_PREFIX: Final = "whsec_"
MIN_SECRET_BYTES: Final = 24
SECRET_BYTES: Final = 32
"""Random bytes in a new secret (Standard Webhooks asks for 24 to 64)."""


class SecretError(ValueError):
    """A secret that is not ``whsec_`` followed by base64 of at least 24 bytes."""


def new_secret(random_bytes: bytes) -> str:
    """A secret from fresh random bytes, e.g. ``new_secret(secrets.token_bytes(SECRET_BYTES))``."""
    if len(random_bytes) < MIN_SECRET_BYTES:
        raise SecretError(f"a secret needs at least {MIN_SECRET_BYTES} random bytes")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: base64-decoded text after the prefix."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError(f"a secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise SecretError("the text after whsec_ is not base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise SecretError(f"a secret holds at least {MIN_SECRET_BYTES} bytes")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """One Standard Webhooks signature: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{webhook_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], webhook_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    if not secrets:
        raise SecretError("signing needs at least one secret")
    return " ".join(sign(secret, webhook_id, timestamp, body) for secret in secrets)


def lago_signature(secret: str, body: str) -> str:
    """Lago's ``X-Lago-Signature`` (algorithm ``hmac``): base64 HMAC-SHA256 of the body."""
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def webhook_headers(
    webhook_id: str,
    timestamp: int,
    body: str,
    secrets: Sequence[str],
    *,
    lago: bool = False,
) -> dict[str, str]:
    """Every header of one delivery attempt; `secrets` starts with the current secret."""
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, webhook_id, timestamp, body),
    }
    if lago:
        headers["X-Lago-Signature"] = lago_signature(secrets[0], body)
        headers["X-Lago-Signature-Algorithm"] = "hmac"
        headers["X-Lago-Unique-Key"] = webhook_id
    return headers
