"""The wire codecs: Confluent framing, JSON/Avro detection, malformed input, exact numbers."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.wire import (
    DEFAULT_SCHEMA_IDS,
    MAX_DEPTH,
    CatalogRecord,
    DeadLetter,
    OutputRecord,
    SubscriptionRecord,
    Tick,
    WireError,
    decode,
    decode_catalog_record,
    decode_dead_letter,
    decode_output,
    decode_subscription_record,
    decode_subscriptions_topic,
    decode_tick,
    decode_usage_event,
    decode_usage_topic,
    dumps,
    encode,
    encode_catalog_record,
    encode_dead_letter,
    encode_output,
    encode_subscription_record,
    encode_tick,
    encode_usage_event,
    loads,
    parse_schema_ids,
    schema_ids_from_env,
)

EVENT: dict[str, Any] = {
    "transaction_id": "tx-1",
    "external_subscription_id": "sub-1",
    "code": "llm_tokens",
    "timestamp": "1717171717.25",
    "properties": {"tokens": Decimal("0.1"), "model": "größe-2", "tags": [1, None, True]},
}
EVENT_AVRO = encode_usage_event(EVENT)
OUTPUT = OutputRecord.from_body(
    "out-1",
    {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": {"total": 1234}},
    external_subscription_id="sub-1",
    external_customer_id="acme",
)
DECODERS: list[Callable[[bytes], object]] = [
    decode,
    decode_usage_event,
    decode_usage_topic,
    decode_catalog_record,
    decode_subscription_record,
    decode_subscriptions_topic,
    decode_tick,
    decode_output,
    decode_dead_letter,
]


def malformed(data: bytes | None, decoder: Any = decode_usage_event, **options: Any) -> str:
    with pytest.raises(WireError) as caught:
        decoder(data, **options)
    assert caught.value.reason == "malformed"
    return caught.value.message


def _avro_event(**fields: Any) -> bytes:
    record = {
        "transaction_id": "tx-1",
        "external_subscription_id": "sub-1",
        "code": "c",
        "timestamp": None,
        "properties_json": "{}",
    }
    return encode("usage_event", record | fields)


# --- framing and round trips -------------------------------------------------------------------


def test_confluent_frame_is_magic_byte_then_big_endian_schema_id() -> None:
    assert encode_tick("ticker") == b"\x00\x00\x00\x00\x04" + b"\x0cticker"
    ids = parse_schema_ids("clock_tick=16909060")
    assert encode_tick("ticker", ids=ids)[:5] == b"\x00\x01\x02\x03\x04"
    assert decode_tick(encode_tick("ticker", ids=ids), ids=ids) == Tick("ticker")


def test_usage_event_round_trips_through_avro() -> None:
    assert EVENT_AVRO[:5] == b"\x00\x00\x00\x00\x01"
    assert decode_usage_event(EVENT_AVRO) == EVENT
    assert decode_usage_topic(EVENT_AVRO) == EVENT


def test_usage_event_avro_writes_ids_and_timestamps_as_text() -> None:
    event = {"transaction_id": 7, "external_subscription_id": 12, "code": "c", "timestamp": 17}
    assert decode_usage_event(encode_usage_event(event)) == {
        "transaction_id": "7",
        "external_subscription_id": "12",
        "code": "c",
        "timestamp": "17",
        "properties": {},
    }
    for number, text in [(Decimal("1E+9"), "1000000000"), (1.5e9, "1500000000.0")]:
        encoded = encode_usage_event(EVENT | {"timestamp": number})
        assert decode_usage_event(encoded)["timestamp"] == text
    decimal_time = encode_usage_event(EVENT | {"timestamp": Decimal("1717171717.50")})
    assert decode_usage_event(decimal_time)["timestamp"] == "1717171717.50"
    assert "timestamp" not in decode_usage_event(encode_usage_event(EVENT | {"timestamp": None}))


def test_every_record_type_round_trips() -> None:
    catalog = CatalogRecord("plan", "startup", {"code": "startup", "amount_cents": 4900})
    upsert = SubscriptionRecord.upsert({"external_id": 42, "plan_code": "startup"})
    terminate = SubscriptionRecord.terminate("sub-1")
    letter = DeadLetter("malformed", "not JSON", "tollgate.usage-events", 3, 2**40, b"\xff\x00")
    assert upsert.external_id == "42"
    assert catalog.kafka_key == "plan:startup"
    assert decode_catalog_record(encode_catalog_record(catalog)) == catalog
    assert decode_subscription_record(encode_subscription_record(upsert)) == upsert
    assert decode_subscription_record(encode_subscription_record(terminate)) == terminate
    assert decode_subscriptions_topic(encode_subscription_record(upsert)) == upsert
    assert decode_subscriptions_topic(encode_tick("t")) == Tick("t")
    assert decode_usage_topic(encode_tick()) == Tick("ticker")
    assert decode_output(encode_output(OUTPUT)) == OUTPUT
    assert decode_dead_letter(encode_dead_letter(letter)) == letter
    for data in (encode_output(OUTPUT), encode_tick(), encode_dead_letter(letter)):
        assert encode(*decode(data)) == data


def test_output_body_text_is_reproduced_exactly() -> None:
    body = {"webhook_type": "x", "object_type": "o", "o": {"units": Decimal("1.50"), "n": "é"}}
    record = decode(encode_output(OutputRecord.from_body("id", body)))[1]
    assert (
        record["body_json"] == '{"webhook_type":"x","object_type":"o","o":{"units":1.50,"n":"é"}}'
    )
    assert (
        dumps(decode_output(encode_output(OutputRecord.from_body("id", body))).body)
        == (record["body_json"])
    )


# --- JSON versus Avro on the usage-events topic ------------------------------------------------


def test_json_and_avro_give_the_same_event() -> None:
    text = dumps(EVENT).encode()
    assert decode_usage_event(text) == decode_usage_event(EVENT_AVRO) == EVENT
    assert decode_usage_event(b" \r\n\t" + text + b"\n") == EVENT
    assert decode_usage_topic(text) == EVENT


def test_lago_post_body_is_unwrapped() -> None:
    assert decode_usage_event(dumps({"event": EVENT}).encode()) == EVENT
    not_a_wrapper = {"event": EVENT, "extra": 1}
    assert decode_usage_event(dumps(not_a_wrapper).encode()) == not_a_wrapper
    assert decode_usage_event(b'{"event": "x"}') == {"event": "x"}


def test_wrongly_typed_json_fields_are_left_to_the_engine() -> None:
    raw = b'{"transaction_id": [1], "code": 5, "timestamp": true, "properties": "x"}'
    assert decode_usage_event(raw) == json.loads(raw)


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b"\xde\xad\xbe\xef random", "neither Confluent Avro"),
        (b"hello", "neither Confluent Avro"),
        (b'{"transaction_id": "tx-1",', "not valid JSON"),
        (b'{"a": 1} {"b": 2}', "Extra data"),
        (b"[1, 2]", "JSON array is not an event object"),
        (b'"an event"', "JSON string is not an event object"),
        (b"42", "JSON number is not an event object"),
        (b"null", "JSON null is not an event object"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"\xef\xbb\xbf{}", "neither Confluent Avro"),
        (b'{"tokens": NaN}', "NaN is not a JSON number"),
        (b'{"tokens": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"tokens": 1e9999999999999999999999}', "out of range"),
        (b'{"id": "\\ud800"}', "unpaired surrogate"),
        (b'{"a": ' * 65 + b"1" + b"}" * 65, f"nested deeper than {MAX_DEPTH}"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", f"nested deeper than {MAX_DEPTH}"),
        (b"\x00\x00\x00", "truncated Confluent header"),
        (b"\x00\x00\x00\x00\x63\x02a", "unknown schema id 99"),
        (encode_output(OUTPUT), "schema id 5 (output) is not accepted"),
        (encode_tick(), "schema id 4 (clock_tick) is not accepted"),
        (EVENT_AVRO[:-3], "does not match schema usage_event"),
        (EVENT_AVRO[:6], "does not match schema usage_event"),
        (EVENT_AVRO + b"\x00", "1 bytes left over"),
        (_avro_event(properties_json='{"tokens":'), "properties_json: not valid JSON"),
        (_avro_event(properties_json="NaN"), "properties_json: NaN"),
    ],
)
def test_malformed_usage_message_says_why(data: bytes | None, expected: str) -> None:
    message = malformed(data)
    assert expected in message
    assert message.isprintable()


def test_message_over_the_size_limit_is_refused_before_parsing() -> None:
    huge = b'{"transaction_id": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    started = time.perf_counter()
    for decoder in DECODERS:
        assert "over the 1048576-byte limit" in malformed(huge, decoder)
    assert time.perf_counter() - started < 0.5
    assert "over the 100-byte limit" in malformed(EVENT_AVRO + b"x" * 100, max_bytes=100)
    big_event = dumps(EVENT | {"code": "c" * 2_000_000}).encode()
    assert decode_usage_event(big_event, max_bytes=4 << 20)["code"] == "c" * 2_000_000


def test_records_breaking_their_own_contract_are_malformed() -> None:
    upsert_without_body = encode(
        "subscription_record",
        {"action": "upsert", "external_id": "s", "subscription_json": None},
    )
    assert "needs a subscription" in malformed(upsert_without_body, decode_subscription_record)
    array_definition = encode(
        "catalog_record", {"kind": "plan", "key": "p", "definition_json": "[1]"}
    )
    assert "not an object" in malformed(array_definition, decode_catalog_record)
    bad_body = encode(
        "output",
        {"id": "i", "webhook_type": "w", "object_type": "o", "body_json": "{"},
    )
    assert "body_json: not valid JSON" in malformed(bad_body, decode_output)
    assert "not accepted" in malformed(EVENT_AVRO, decode_subscriptions_topic)
    assert "not Confluent Avro" in malformed(b'{"action": "upsert"}', decode_subscription_record)


def test_unknown_enum_symbol_is_malformed() -> None:
    data = b"\x00\x00\x00\x00\x03" + b"\x04" + b"\x02s" + b"\x00"  # action index 2 of 2
    assert "does not match schema subscription_record" in malformed(
        data, decode_subscription_record
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_wire_error(data: bytes) -> None:
    for decoder in DECODERS:
        try:
            decoder(data)
        except WireError as error:
            assert error.reason == "malformed"
            assert error.message


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(0, 8)), st.binary(max_size=200))
def test_random_avro_bodies_only_ever_raise_wire_error(schema_id: int, body: bytes) -> None:
    data = b"\x00" + schema_id.to_bytes(4, "big") + body
    for decoder in DECODERS:
        try:
            decoder(data)
        except WireError as error:
            assert error.reason == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_json_like_text_only_ever_raises_wire_error(text: str) -> None:
    try:
        decode_usage_event(("{" + text).encode("utf-8", "surrogatepass"))
    except WireError as error:
        assert error.reason == "malformed"


# --- exact numbers -----------------------------------------------------------------------------


def test_decimals_stay_exact() -> None:
    event = decode_usage_event(
        b'{"transaction_id": "t", "external_subscription_id": "s", "code": "c",'
        b' "properties": {"tokens": 0.1, "n": 3, "e": 1e3, "z": -0.0}}'
    )
    assert event["properties"] == {"tokens": Decimal("0.1"), "n": 3, "e": Decimal("1E+3"), "z": 0}
    assert type(event["properties"]["tokens"]) is Decimal
    assert type(event["properties"]["n"]) is int
    via_avro = decode_usage_event(encode_usage_event(event))
    assert str(via_avro["properties"]["tokens"]) == "0.1"
    assert dumps(event["properties"]) == '{"tokens":0.1,"n":3,"e":1E+3,"z":-0.0}'


def test_huge_integers_stay_exact() -> None:
    digits = "9" * 5000
    assert loads(digits) == Decimal(digits)
    assert dumps(loads(digits)) == digits
    assert loads("123456789012345678901234567890") == 123456789012345678901234567890


def test_dumps_writes_compact_ordered_unescaped_json() -> None:
    value = {"b": [1, Decimal("2.50"), 0.1, None, True, False], "a": 'é\n"', "t": ("x",)}
    assert dumps(value) == '{"b":[1,2.50,0.1,null,true,false],"a":"é\\n\\"","t":["x"]}'
    with pytest.raises(ValueError, match="not a JSON number"):
        dumps({"x": Decimal("NaN")})
    with pytest.raises(ValueError, match="not a JSON number"):
        dumps([float("inf")])
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"x": object()})
    with pytest.raises(TypeError, match="keys must be str"):
        dumps({1: "x"})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_json_text_round_trips_exactly(value: Any) -> None:
    text = dumps(value)
    assert loads(text) == value
    assert dumps(loads(text)) == text
    assert json.loads(text, parse_float=Decimal) == value


# --- encoding refuses values that do not fit ---------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        EVENT | {"transaction_id": ["x"]},
        EVENT | {"code": True},
        {"code": "c", "external_subscription_id": "s"},
        EVENT | {"timestamp": True},
        EVENT | {"timestamp": {"at": 1}},
        EVENT | {"properties": {"x": object()}},
        EVENT | {"properties": {"x": Decimal("Infinity")}},
        EVENT | {"code": "\ud800"},
    ],
)
def test_encoding_a_bad_event_is_invalid(event: dict[str, Any]) -> None:
    with pytest.raises(WireError) as caught:
        encode_usage_event(event)
    assert caught.value.reason == "invalid"


def test_encoding_other_bad_values_is_invalid() -> None:
    with pytest.raises(WireError, match="invalid"):
        encode("output", {"id": "x"})
    with pytest.raises(WireError, match="invalid"):
        encode_catalog_record(CatalogRecord("coupon", "x", {}))  # type: ignore[arg-type]
    with pytest.raises(WireError, match="needs a subscription"):
        encode_subscription_record(SubscriptionRecord("upsert", "s"))
    with pytest.raises(WireError, match="carries no subscription"):
        encode_subscription_record(SubscriptionRecord("terminate", "s", {}))
    with pytest.raises(WireError, match="webhook_type"):
        OutputRecord.from_body("id", {"object_type": "invoice"})
    with pytest.raises(WireError, match="external_id"):
        SubscriptionRecord.upsert({"plan_code": "p"})
    with pytest.raises(ValueError, match="unknown schema"):
        encode("invoice", {})


def test_wire_error_carries_reason_and_message() -> None:
    error = WireError("malformed", "empty message")
    assert str(error) == "malformed: empty message"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.message) == ("malformed", "empty message")


# --- schema ids --------------------------------------------------------------------------------


def test_default_schema_ids_are_fixed() -> None:
    assert DEFAULT_SCHEMA_IDS.as_dict() == {
        "usage_event": 1,
        "catalog_record": 2,
        "subscription_record": 3,
        "clock_tick": 4,
        "output": 5,
        "dead_letter": 6,
        "usage_batch": 7,
        "alert_record": 8,
        "invoice_payment_record": 9,
    }


def test_schema_ids_override_from_the_environment() -> None:
    ids = schema_ids_from_env({"TOLLGATE_SCHEMA_IDS": " usage_event=101 , output=105,"})
    assert ids.id_of("usage_event") == 101
    assert ids.id_of("output") == 105
    assert ids.id_of("clock_tick") == 4
    data = encode_usage_event(EVENT, ids=ids)
    assert data[:5] == b"\x00\x00\x00\x00\x65"
    assert decode_usage_event(data, ids=ids) == EVENT
    assert "unknown schema id 101" in malformed(data)
    assert schema_ids_from_env({}) == DEFAULT_SCHEMA_IDS
    assert parse_schema_ids("") == DEFAULT_SCHEMA_IDS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("invoice=7", "expected name=id"),
        ("usage_event", "expected name=id"),
        ("usage_event=x", "must be digits"),
        ("usage_event=-1", "must be digits"),
        ("usage_event=5", "must be distinct"),
        ("usage_event=2147483648", "must be in 0.."),
    ],
)
def test_bad_schema_id_overrides_are_refused(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_schema_ids(text)


def test_wire_imports_neither_faust_nor_the_engine() -> None:
    code = (
        "import sys, pipeline.wire; "
        "bad = [m for m in sys.modules if m.split('.')[0] in {'faust', 'mode', 'confluent_kafka'}"
        " or m.startswith('pipeline.billing')]; "
        "sys.exit(', '.join(bad) or None)"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root)}
    )
