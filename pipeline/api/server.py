"""The API's aiohttp application and its server, run on the worker's event loop.

One middleware gives every answer Lago's shape: unknown paths and methods, missing or wrong
keys, oversized or malformed bodies and unexpected failures become Lago's error bodies, and a
failure inside one request never reaches the worker (billing goes on). Keys are checked after
routing, so an unknown path is a 404 whoever asks; no key, header or body is ever logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from pipeline.api import metrics
from pipeline.api.auth import Keys
from pipeline.api.errors import ApiError
from pipeline.api.forwarding import SERVED_BY
from pipeline.api.handlers import Handlers, answer

log = logging.getLogger("tollgate.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {404: "route_not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def build_application(
    handlers: Handlers, keys: Keys, *, max_body_bytes: int, served_by: str
) -> web.Application:
    @web.middleware
    async def lago_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await _answer(request, handler)
        response.headers.setdefault(SERVED_BY, served_by)
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        metrics.SECONDS.labels(name).observe(time.perf_counter() - started)
        metrics.REQUESTS.labels(name, str(response.status)).inc()
        return response

    async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            route_error = request.match_info.http_exception
            if route_error is not None:
                raise route_error
            if not keys.accepts(request.headers.get("Authorization")):
                raise ApiError(401, "unauthorized")
            return await handler(request)
        except ApiError as error:
            return answer(error.body(), error.status)
        except web.HTTPException as error:
            code = _STATUS_CODES.get(error.status, "http_error")
            response = answer(ApiError(error.status, code).body(), error.status)
            if error.status == 405 and "Allow" in error.headers:
                response.headers["Allow"] = error.headers["Allow"]
            return response
        except Exception:
            log.exception("API request %s %s failed", request.method, request.path)
            return answer(ApiError(500, "internal_error").body(), 500)

    application = web.Application(middlewares=[lago_answers], client_max_size=max_body_bytes)
    application.add_routes(handlers.routes())
    return application


class ApiServer:
    """Serves the application on host:port; `start` fails loudly if the port is taken."""

    def __init__(self, application: web.Application, host: str, port: int) -> None:
        self.application, self.host, self.port = application, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.application, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise OSError(
                f"the HTTP API cannot listen on {self.host}:{self.port}: {error.strerror} "
                "(set TOLLGATE_API_PORT to a free port)"
            ) from None
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
