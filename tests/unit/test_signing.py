"""sinks.webhooks.signing against the reference verifier, the `standardwebhooks` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from sinks.webhooks.signing import (
    SECRET_BYTES,
    SecretError,
    lago_signature,
    new_secret,
    secret_key,
    sign,
    webhook_headers,
)

SECRET = new_secret(bytes(range(SECRET_BYTES)))
OTHER = new_secret(bytes(range(100, 100 + SECRET_BYTES)))
BODY = '{"webhook_type":"invoice.created","object_type":"invoice","invoice":{"total":6600}}'
WEBHOOK_ID = "706a4bb2-006c-5433-a4c1-5cf08a6e2b57"


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


def test_a_new_secret_is_whsec_and_base64_of_the_random_bytes() -> None:
    raw = bytes(range(32))
    secret = new_secret(raw)
    assert secret.startswith("whsec_")
    assert secret_key(secret) == raw
    assert base64.b64decode(secret.removeprefix("whsec_")) == raw


@pytest.mark.parametrize(
    "secret", ["whsec_" + base64.b64encode(b"short").decode(), "abc", "whsec_not base64!"]
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(SecretError):
        secret_key(secret)


def test_too_few_random_bytes_are_refused() -> None:
    with pytest.raises(SecretError):
        new_secret(b"x" * 23)


def test_the_signature_is_hmac_sha256_of_id_timestamp_body() -> None:
    expected = hmac.new(
        bytes(range(SECRET_BYTES)), f"{WEBHOOK_ID}.1700000000.{BODY}".encode(), hashlib.sha256
    ).digest()
    assert sign(SECRET, WEBHOOK_ID, 1700000000, BODY) == "v1," + base64.b64encode(expected).decode()


def test_the_reference_library_accepts_our_headers() -> None:
    headers = webhook_headers(WEBHOOK_ID, _now(), BODY, [SECRET])
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == WEBHOOK_ID
    assert Webhook(SECRET).verify(BODY, headers)["invoice"]["total"] == 6600


def test_the_reference_library_signs_as_we_do() -> None:
    timestamp = _now()
    theirs = Webhook(SECRET).sign(WEBHOOK_ID, datetime.fromtimestamp(timestamp, UTC), BODY)
    assert theirs == sign(SECRET, WEBHOOK_ID, timestamp, BODY)


def test_a_tampered_body_fails_verification() -> None:
    headers = webhook_headers(WEBHOOK_ID, _now(), BODY, [SECRET])
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(BODY.replace("6600", "6601"), headers)


def test_another_id_fails_verification() -> None:
    headers = webhook_headers(WEBHOOK_ID, _now(), BODY, [SECRET])
    headers["webhook-id"] = "someone-else"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_an_old_timestamp_fails_verification() -> None:
    old = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp())
    headers = webhook_headers(WEBHOOK_ID, old, BODY, [SECRET])
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(BODY, headers)


def test_a_replayed_signature_with_a_fresh_timestamp_fails() -> None:
    old = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp())
    headers = webhook_headers(WEBHOOK_ID, old, BODY, [SECRET])
    headers["webhook-timestamp"] = str(_now())
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_the_wrong_secret_fails_verification() -> None:
    headers = webhook_headers(WEBHOOK_ID, _now(), BODY, [SECRET])
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    headers = webhook_headers(WEBHOOK_ID, _now(), BODY, [OTHER, SECRET])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(OTHER).verify(BODY, headers)
    Webhook(SECRET).verify(BODY, headers)


def test_lago_signature_is_base64_hmac_of_the_body_with_the_secret_text() -> None:
    headers = webhook_headers(WEBHOOK_ID, _now(), BODY, [SECRET], lago=True)
    digest = hmac.new(SECRET.encode(), BODY.encode(), hashlib.sha256).digest()
    assert headers["X-Lago-Signature"] == base64.b64encode(digest).decode()
    assert headers["X-Lago-Signature"] == lago_signature(SECRET, BODY)
    assert headers["X-Lago-Signature-Algorithm"] == "hmac"
    assert headers["X-Lago-Unique-Key"] == WEBHOOK_ID


def test_without_the_option_there_is_no_lago_header() -> None:
    assert "X-Lago-Signature" not in webhook_headers(WEBHOOK_ID, _now(), BODY, [SECRET])


def test_signing_needs_a_secret() -> None:
    with pytest.raises(SecretError):
        webhook_headers(WEBHOOK_ID, _now(), BODY, [])
