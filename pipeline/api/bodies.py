"""Request bodies: read within a size and a time limit, parsed as exact JSON.

The size limit is checked against Content-Length before reading and enforced while reading
(aiohttp's `client_max_size`), so a huge body costs nothing; a client that sends its body too
slowly is cut off (408) instead of holding a handler forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from pipeline.api.errors import ApiError, bad_request
from pipeline.wire.jsontext import loads


async def read_json(request: web.Request, *, max_bytes: int, timeout: float) -> Any:
    """The body as JSON (numbers with a fraction as `Decimal`), or a 400/408/413 `ApiError`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    try:
        raw = await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"body not received within {timeout:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise too_large(max_bytes) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the body is not UTF-8 text") from None
    try:
        return loads(text)
    except ValueError as error:
        raise bad_request(f"the body is not JSON: {error}") from None


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"bodies are limited to {max_bytes} bytes")


def object_at(body: Any, key: str) -> dict[str, Any]:
    """`body[key]` as an object (Lago's root keys: `event`, `invoice`), else 400 as Lago."""
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise bad_request(f"param is missing or the value is empty: {key}")
    value: dict[str, Any] = body[key]
    return value


def list_at(body: Any, key: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise bad_request(f"param is missing or the value is empty: {key}")
    value: list[Any] = body[key]
    return value
