"""A real webhook receiver for the sink tests: aiohttp in a thread of its own, verifying every
request with the `standardwebhooks` package and dropping duplicates by `webhook-id`, as a
receiver should."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

TIMEOUT = 1.0
"""The sinks under test get TOLLGATE_WEBHOOK_TIMEOUT=1; a "timeout" answer takes longer."""

# What the receiver does with the n-th request (1-based) it sees for one webhook id.
Plan = Callable[[int], str]  # "ok", "500", "timeout"


@dataclass
class Route:
    secret: str
    plan: Plan
    seen: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, bytes] = field(default_factory=dict)
    duplicates: int = 0
    bad_signatures: list[str] = field(default_factory=list)
    lago_signatures: int = 0


class Receiver:
    """An aiohttp server in a thread of its own; one `Route` per path."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.routes: dict[str, Route] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: web.Request) -> web.Response:
        route = self.routes[request.path]
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        route.seen[webhook_id] += 1
        action = route.plan(route.seen[webhook_id])
        if action == "timeout":
            await asyncio.sleep(TIMEOUT + 1)
            return web.Response(status=200)
        if action == "500":
            return web.Response(status=500, text="not today")
        try:
            Webhook(route.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as error:
            route.bad_signatures.append(f"{webhook_id}: {error}")
            return web.Response(status=400)
        if "X-Lago-Signature" in request.headers:
            digest = hmac.new(route.secret.encode(), body, hashlib.sha256).digest()
            if request.headers["X-Lago-Signature"] != base64.b64encode(digest).decode():
                route.bad_signatures.append(f"{webhook_id}: X-Lago-Signature")
                return web.Response(status=400)
            route.lago_signatures += 1
        if webhook_id in route.accepted:
            route.duplicates += 1  # a redelivery: acknowledged, not processed again
        else:
            route.accepted[webhook_id] = body
        return web.Response(status=204)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(_free_port())
    yield server
    server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
