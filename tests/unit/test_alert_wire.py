"""Alert records on the wire (spec §11): Avro `alert_record` and JSON `{"alert": {...}}` on the
usage-events topic both become the engine's `alert` record, keyed by the subscription."""

from __future__ import annotations

import json

import pytest

from pipeline.wire import (
    DEFAULT_SCHEMA_IDS,
    AlertRecord,
    WireError,
    decode_alert_record,
    decode_ledger_input,
    encode,
    encode_alert_record,
)
from pipeline.worker.records import InputMessage, decode_message

ALERT = {
    "external_subscription_id": "sub-1",
    "code": "budget",
    "alert_type": "current_usage_amount",
    "thresholds": [{"value": "1000"}],
}


def message(value: bytes) -> InputMessage:
    return InputMessage("usage", 2, 41, 1_740_787_200_000, b"sub-1", value)


def test_an_alert_and_a_deletion_round_trip_through_avro():
    upsert = AlertRecord.of(ALERT)
    assert decode_alert_record(encode_alert_record(upsert)) == upsert
    gone = AlertRecord.of({"external_subscription_id": 7, "code": "budget", "deleted": True})
    decoded = decode_alert_record(encode_alert_record(gone))
    assert decoded.alert == {"external_subscription_id": "7", "code": "budget", "deleted": True}
    assert decoded.external_subscription_id == "7"


@pytest.mark.parametrize(
    "value",
    [encode_alert_record(AlertRecord.of(ALERT)), json.dumps({"alert": ALERT}).encode()],
    ids=["avro", "json"],
)
def test_the_worker_reads_an_alert_record_as_an_alert_of_its_subscription(value: bytes):
    decoded = decode_message(message(value), DEFAULT_SCHEMA_IDS, 1 << 20)
    assert (decoded.record.kind, decoded.record.payload) == ("alert", ALERT)
    assert decoded.subscription == "sub-1"
    assert decoded.record.ref == "usage/2/41"


def test_a_json_alert_without_a_usable_subscription_id_still_reaches_the_engine():
    value = decode_ledger_input(json.dumps({"alert": {"code": "x"}}).encode())
    assert value == AlertRecord(None, {"code": "x"})


def test_avro_cannot_carry_an_alert_whose_ids_are_not_text():
    with pytest.raises(WireError, match="code must be a string"):
        encode_alert_record(AlertRecord.of({**ALERT, "code": ["x"]}))


def test_an_upsert_without_its_alert_is_malformed():
    record = {"external_subscription_id": "s", "code": "c", "deleted": False, "alert_json": None}
    with pytest.raises(WireError, match="malformed"):
        decode_alert_record(encode("alert_record", record))
