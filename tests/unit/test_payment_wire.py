"""Payment records and features on the wire (spec §12): Avro `invoice_payment_record` and JSON
`{"invoice_payment": {...}}` on the usage-events topic become the engine's `invoice_payment`
record, keyed by the subscription; a feature travels as a catalog record."""

from __future__ import annotations

import json

import pytest

from pipeline.wire import (
    DEFAULT_SCHEMA_IDS,
    CatalogRecord,
    PaymentRecord,
    WireError,
    decode_catalog_record,
    decode_payment_record,
    encode_catalog_record,
    encode_payment_record,
)
from pipeline.worker.records import InputMessage, decode_message

PAYMENT = {
    "lago_invoice_id": "3de8139d-328d-5ed5-962c-b719e961403c",
    "external_subscription_id": "sub-1",
    "payment_status": "succeeded",
}


def message(value: bytes) -> InputMessage:
    return InputMessage("usage", 1, 7, 1_740_787_200_000, b"sub-1", value)


def test_a_payment_round_trips_through_avro():
    record = PaymentRecord.of(PAYMENT)
    assert decode_payment_record(encode_payment_record(record)) == record
    assert record.external_subscription_id == "sub-1"


def test_the_client_builds_the_record_tollgate_invoices_pay_publishes():
    from pipeline.clients.payments import invoice_payment

    assert invoice_payment(PAYMENT["lago_invoice_id"], "sub-1") == PAYMENT
    failed = PaymentRecord.of(invoice_payment(PAYMENT["lago_invoice_id"], "sub-1", "failed"))
    assert decode_payment_record(encode_payment_record(failed)) == failed


@pytest.mark.parametrize(
    "value",
    [
        encode_payment_record(PaymentRecord.of(PAYMENT)),
        json.dumps({"invoice_payment": PAYMENT}).encode(),
    ],
    ids=["avro", "json"],
)
def test_the_worker_reads_a_payment_as_an_invoice_payment_of_its_subscription(value: bytes):
    decoded = decode_message(message(value), DEFAULT_SCHEMA_IDS, 1 << 20)
    assert (decoded.record.kind, decoded.record.payload) == ("invoice_payment", PAYMENT)
    assert decoded.subscription == "sub-1"


def test_avro_cannot_carry_a_status_that_is_not_text():
    with pytest.raises(WireError, match="payment_status must be a string"):
        encode_payment_record(PaymentRecord.of(PAYMENT | {"payment_status": 1}))


def test_a_feature_is_a_catalog_record_the_worker_applies_as_a_feature():
    feature = {"code": "sso", "privileges": [{"code": "on", "value_type": "boolean"}]}
    data = encode_catalog_record(CatalogRecord("feature", "sso", feature))
    assert decode_catalog_record(data).definition == feature
    decoded = decode_message(message(data), DEFAULT_SCHEMA_IDS, 1 << 20)
    assert (decoded.record.kind, decoded.record.payload) == ("feature", feature)
