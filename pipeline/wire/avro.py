"""Avro in the Confluent wire format: magic byte 0x00, 4-byte big-endian schema id, Avro body.

The schemas are the `.avsc` files under `schemas/` at the repository root, one per topic value.
Schema ids come from a fixed table (`DEFAULT_SCHEMA_IDS`), so no registry is needed at run time;
`TOLLGATE_SCHEMA_IDS` replaces some or all of them with the ids a real Confluent Schema Registry
assigned (see docs/schemas.md). Bodies are schemaless fastavro encodings, byte-compatible with
Confluent's serializers.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import fastavro

from pipeline.wire.errors import INVALID, MALFORMED, WireError

SCHEMA_NAMES: Final = (
    "usage_event",
    "catalog_record",
    "subscription_record",
    "clock_tick",
    "output",
    "dead_letter",
    "usage_batch",
    "alert_record",
    "invoice_payment_record",
)
SCHEMA_IDS_ENV: Final = "TOLLGATE_SCHEMA_IDS"
DEFAULT_MAX_BYTES: Final = 1 << 20
"""Largest message a decoder accepts (1 MiB); a larger one is `malformed` before any parsing."""

MAGIC_BYTE: Final = 0
_HEADER: Final = struct.Struct(">bI")
_MAX_SCHEMA_ID: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SchemaIds:
    """Which Confluent schema id each schema name is written with and recognised by."""

    pairs: tuple[tuple[str, int], ...]

    @classmethod
    def from_mapping(cls, ids: Mapping[str, int]) -> SchemaIds:
        """Every schema name exactly once, distinct ids in 0..2^31-1; `ValueError` otherwise."""
        unknown = sorted(set(ids) - set(SCHEMA_NAMES))
        missing = [name for name in SCHEMA_NAMES if name not in ids]
        if unknown or missing:
            raise ValueError(f"schema ids: unknown names {unknown}, missing names {missing}")
        for name, schema_id in ids.items():
            if isinstance(schema_id, bool) or not isinstance(schema_id, int):
                raise ValueError(f"schema id of {name} must be an integer, got {schema_id!r}")
            if not 0 <= schema_id <= _MAX_SCHEMA_ID:
                raise ValueError(f"schema id of {name} must be in 0..{_MAX_SCHEMA_ID}")
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"schema ids must be distinct, got {dict(ids)}")
        return cls(tuple((name, ids[name]) for name in SCHEMA_NAMES))

    def id_of(self, schema_name: str) -> int:
        for name, schema_id in self.pairs:
            if name == schema_name:
                return schema_id
        raise ValueError(f"unknown schema {schema_name!r}")

    def name_of(self, schema_id: int) -> str | None:
        for name, known_id in self.pairs:
            if known_id == schema_id:
                return name
        return None

    def as_dict(self) -> dict[str, int]:
        return dict(self.pairs)


DEFAULT_SCHEMA_IDS: Final = SchemaIds.from_mapping(
    {
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
)


def parse_schema_ids(text: str, base: SchemaIds = DEFAULT_SCHEMA_IDS) -> SchemaIds:
    """`"usage_event=101,output=105"` → `base` with those ids replaced; `ValueError` if bad.

    Blank text keeps `base`. Entries are separated by commas, spaces around them are ignored.
    """
    ids = base.as_dict()
    for entry in text.split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in ids:
            raise ValueError(
                f"{SCHEMA_IDS_ENV}: expected name=id with a name among {list(SCHEMA_NAMES)}, "
                f"got {entry.strip()!r}"
            )
        if not value.isascii() or not value.isdigit():
            raise ValueError(f"{SCHEMA_IDS_ENV}: schema id of {name} must be digits: {value!r}")
        ids[name] = int(value)
    return SchemaIds.from_mapping(ids)


def schema_ids_from_env(environ: Mapping[str, str]) -> SchemaIds:
    """The id table for this process: defaults, overridden by `TOLLGATE_SCHEMA_IDS` if set."""
    return parse_schema_ids(environ.get(SCHEMA_IDS_ENV, ""))


def schema_dir() -> Path:
    """The directory holding the `.avsc` files.

    `schemas/` at the repository root (a source checkout or an editable install), else a
    `schemas/` directory shipped inside this package, else `schemas/` in the current directory
    (an installed package run from the checkout or image folder that holds the schemas).
    """
    here = Path(__file__).resolve().parent
    candidates = (here.parents[1] / "schemas", here / "schemas", Path.cwd() / "schemas")
    for candidate in candidates:
        if (candidate / "usage_event.avsc").is_file():
            return candidate
    raise FileNotFoundError(f"no usage_event.avsc in any of {[str(c) for c in candidates]}")


@cache
def schema_text(schema_name: str) -> str:
    """The `.avsc` text of a schema, as registered in a Schema Registry."""
    if schema_name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {schema_name!r}")
    return (schema_dir() / f"{schema_name}.avsc").read_text(encoding="utf-8")


@cache
def parsed_schema(schema_name: str) -> Any:
    """The fastavro-parsed schema (loaded once per process)."""
    return fastavro.parse_schema(json.loads(schema_text(schema_name)))


def encode(
    schema_name: str, value: Mapping[str, Any], *, ids: SchemaIds = DEFAULT_SCHEMA_IDS
) -> bytes:
    """One record in the Confluent wire format; `WireError("invalid")` if it breaks the schema."""
    schema = parsed_schema(schema_name)
    out = io.BytesIO()
    out.write(_HEADER.pack(MAGIC_BYTE, ids.id_of(schema_name)))
    try:
        fastavro.schemaless_writer(out, schema, value)
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise WireError(INVALID, f"value does not fit schema {schema_name}: {error}") from None
    return out.getvalue()


def decode(
    data: bytes | None,
    *,
    ids: SchemaIds = DEFAULT_SCHEMA_IDS,
    accept: Collection[str] = SCHEMA_NAMES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[str, dict[str, Any]]:
    """`(schema name, record)` of a Confluent-framed Avro message whose schema is in `accept`.

    Raises `WireError("malformed")` for an empty or oversized message, a bad header, an unknown or
    unaccepted schema id, a body that does not match its schema, or bytes left over after it.
    """
    data = check_size(data, max_bytes)
    schema_name = _schema_name(data, ids, accept)
    body = io.BytesIO(data)
    body.seek(_HEADER.size)
    try:
        record = fastavro.schemaless_reader(body, parsed_schema(schema_name))
    # fastavro reports bad bytes with whatever the failing read raised (EOFError on a short
    # body, IndexError on a bad union or enum index, UnicodeDecodeError on a bad string, ...).
    except (EOFError, IndexError, KeyError, ValueError, TypeError, OverflowError) as error:
        detail = str(error) or "body ends early"
        raise WireError(
            MALFORMED, f"Avro body does not match schema {schema_name}: {detail}"
        ) from None
    left_over = len(data) - body.tell()
    if left_over:
        raise WireError(MALFORMED, f"{left_over} bytes left over after the {schema_name} record")
    if not isinstance(record, dict):  # every tollgate schema is a record
        raise WireError(MALFORMED, f"Avro body of {schema_name} is not a record")
    return schema_name, record


def check_size(data: bytes | None, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """`data` if it is a non-empty message of at most `max_bytes`, else `WireError("malformed")`."""
    if not data:
        raise WireError(MALFORMED, "empty message")
    if len(data) > max_bytes:
        raise oversized(len(data), max_bytes)
    return data


def oversized(size: int, max_bytes: int) -> WireError:
    return WireError(MALFORMED, f"message of {size} bytes is over the {max_bytes}-byte limit")


def _schema_name(data: bytes, ids: SchemaIds, accept: Collection[str]) -> str:
    if data[0] != MAGIC_BYTE:
        raise WireError(
            MALFORMED, f"not Confluent Avro: first byte is 0x{data[0]:02x}, not the magic byte 0x00"
        )
    if len(data) < _HEADER.size:
        raise WireError(MALFORMED, f"truncated Confluent header: {len(data)} of 5 bytes")
    _, schema_id = _HEADER.unpack_from(data)
    schema_name = ids.name_of(schema_id)
    if schema_name is None:
        raise WireError(MALFORMED, f"unknown schema id {schema_id}")
    if schema_name not in accept:
        expected = " or ".join(accept)
        raise WireError(
            MALFORMED,
            f"schema id {schema_id} ({schema_name}) is not accepted here (expected {expected})",
        )
    return schema_name
