"""JSON text with exact numbers: `Decimal` in, `Decimal` out, never a float in between.

Property values, prices and amounts are free-form JSON numbers. `loads` keeps every number with a
fraction or an exponent as the `Decimal` the producer wrote (`0.1` stays `Decimal("0.1")`) and
integers as `int`; `dumps` writes a `Decimal` back as its exact digits. The texts are compact
(`separators=(",", ":")`), keep key order and non-ASCII characters as they are.

`loads` also refuses what strict JSON (RFC 8259) refuses but Python's parser lets through
(`NaN`, `Infinity`), nesting deeper than `MAX_DEPTH` and strings holding an unpaired surrogate
(`"\\ud800"` is valid JSON but not Unicode text, so it could not be written back as UTF-8).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring
from typing import Any, Final

MAX_DEPTH: Final = 64
"""Deepest nesting of objects and arrays accepted by `loads` (Lago shapes need fewer than 10)."""

# Above Python's integer-string conversion limit (4300 digits) `int()` refuses the text; such a
# number is kept exact as a `Decimal` instead (the engine then refuses it as out of range).
_INT_DIGITS_LIMIT: Final = 4000
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _parse_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _INT_DIGITS_LIMIT else Decimal(text)


def _parse_float(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what `Decimal` can hold
        raise ValueError(f"number {text[:40]} is out of range") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER: Final = json.JSONDecoder(
    parse_float=_parse_float, parse_int=_parse_int, parse_constant=_refuse_constant
)


def loads(text: str) -> Any:
    """Parse one JSON value: fractions and exponents as `Decimal`, integers as `int`.

    Raises `ValueError` with a readable message for anything that is not strict JSON text of at
    most `MAX_DEPTH` levels made of valid Unicode.
    """
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error}") from None
    may_hold_surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if may_hold_surrogates or text.count("{") + text.count("[") > MAX_DEPTH:
        _check_tree(value, may_hold_surrogates)
    return value


def _check_tree(value: Any, check_strings: bool) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = list(item.values())
            if check_strings:
                children.extend(item.keys())
        elif isinstance(item, list):
            children = item
        else:
            if check_strings and isinstance(item, str):
                _check_text(item)
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"JSON string holds an unpaired surrogate: {text[:40]!r}") from None


def dumps(value: Any) -> str:
    """Compact JSON text of `value`; a `Decimal` is written as its exact digits.

    Accepts dicts (and other mappings) with string keys, lists and tuples, strings, booleans,
    None, ints, finite Decimals and finite floats (written as their shortest `repr`, the value the
    producer meant). Raises `ValueError` for NaN or infinities and `TypeError` for anything else.
    """
    parts: list[str] = []
    _write(value, parts.append)
    return "".join(parts)


def _write(value: Any, out: Callable[[str], None]) -> None:
    if isinstance(value, str):
        out(encode_basestring(value))
    elif value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        out(str(value))
    elif isinstance(value, Mapping):
        _write_object(value, out)
    elif isinstance(value, list | tuple):
        _write_array(value, out)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a JSON number")
        out(float.__repr__(value))
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _write_object(value: Mapping[Any, Any], out: Callable[[str], None]) -> None:
    out("{")
    first = True
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
        if not first:
            out(",")
        first = False
        out(encode_basestring(key))
        out(":")
        _write(item, out)
    out("}")


def _write_array(value: list[Any] | tuple[Any, ...], out: Callable[[str], None]) -> None:
    out("[")
    for index, item in enumerate(value):
        if index:
            out(",")
        _write(item, out)
    out("]")
