"""Forwarding a request to the worker that owns the subscription's partition.

The owner is found with Faust's table routing (the worker's `Directory`); the request goes
there whole — method, path, query, body, Authorization — and its answer comes back as it is.
Faust's own `route_req` forwards no body, and a write (alerts) needs one. A forwarded request
is marked, and a worker that receives one for a partition it does not own answers 503 rather
than forwarding again: ownership is moving, and the client retries.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from pipeline.api.errors import unavailable

FORWARDED = "X-Tollgate-Forwarded"
SERVED_BY = "X-Tollgate-Worker"  # the answering worker's API URL
_PASSED = ("Authorization", "Content-Type", "Accept")


class Forwarder:
    def __init__(self, timeout: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def forward(
        self, request: web.Request, base_url: str, body: bytes | None
    ) -> web.Response:
        """The owner's answer to `request`, or a 503 if the owner cannot be reached."""
        status, data, content_type, served_by = await self._call(request, base_url, body)
        response = web.Response(status=status, body=data, content_type=content_type)
        response.headers[SERVED_BY] = served_by or base_url
        return response

    async def call(
        self, request: web.Request, base_url: str, body: bytes | None
    ) -> tuple[int, bytes, str]:
        """(status, body, content type) of the owner's answer."""
        status, data, content_type, _ = await self._call(request, base_url, body)
        return status, data, content_type

    async def _call(
        self, request: web.Request, base_url: str, body: bytes | None
    ) -> tuple[int, bytes, str, str]:
        headers = {name: request.headers[name] for name in _PASSED if name in request.headers}
        headers[FORWARDED] = "1"
        url = base_url.rstrip("/") + request.rel_url.path_qs
        try:
            async with self._client().request(
                request.method, url, headers=headers, data=body
            ) as answer:
                served_by = answer.headers.get(SERVED_BY, "")
                return answer.status, await answer.read(), answer.content_type, served_by
        except (aiohttp.ClientError, TimeoutError) as error:
            raise unavailable(
                f"the worker owning this subscription ({base_url}) did not answer: "
                f"{type(error).__name__}; retry"
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def forwarded(request: web.Request) -> bool:
    return request.headers.get(FORWARDED) == "1"
