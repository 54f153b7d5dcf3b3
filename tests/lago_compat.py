"""Spec §10: our objects must parse with Lago's own Python client's response models."""

from __future__ import annotations

from typing import Any

from lago_python_client.models.alert import AlertThresholdResponseList
from lago_python_client.models.credit_note import CreditNoteResponse
from lago_python_client.models.invoice import InvoiceResponse
from lago_python_client.models.subscription import SubscriptionResponse

_MODELS = {
    "invoice": InvoiceResponse,
    "subscription": SubscriptionResponse,
    "credit_note": CreditNoteResponse,
}


_ACCESS_KEYS = {
    "external_subscription_id",
    "feature_code",
    "allowed",
    "reason",
    "remaining",
    "evaluated_at",
}


def assert_parses_with_lago_client(body: dict[str, Any]) -> None:
    """Parse the body's object with Lago's model; fields it requires must be there."""
    object_type = body["object_type"]
    model = _MODELS.get(object_type)
    if object_type == "triggered_alert":
        # Lago's client has no model of the triggered alert itself; its thresholds are Lago's.
        crossed = body[object_type]["crossed_thresholds"]
        parsed_thresholds = AlertThresholdResponseList.parse_obj(crossed)
        assert [t.value for t in parsed_thresholds.__root__] == [t["value"] for t in crossed]
        return
    if object_type == "access":
        # Spec §12's access decision is tollgate's own: Lago's client has no model of it.
        assert set(body["access"]) == _ACCESS_KEYS, body["access"]
        return
    if model is None:
        assert object_type == "event_error", object_type
        return
    parsed = model.parse_obj(body[object_type])
    assert parsed.lago_id == body[object_type]["lago_id"]
    if object_type == "invoice":
        invoice = body["invoice"]
        assert parsed.fees is not None and len(parsed.fees.__root__) == len(invoice["fees"])
        assert parsed.billing_periods is not None
        assert parsed.customer is not None
