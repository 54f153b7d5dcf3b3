"""Fail loudly, never half-alive: if an agent or a task of the worker dies, the process exits.

Faust marks a crashed agent and carries on: the process stays up, emits nothing more for any
partition, and nobody restarts it. A bad record cannot kill an agent any more (the engine
contains it, pipeline/billing/engine.py), so what still does is a bug or a broken environment;
both are better served by a restart than by a worker that looks alive. The error is logged with
its traceback, then the process ends at once with `EXIT_CRASHED`, without running Faust's
shutdown (which waits on the very agent that died). That is as safe as kill -9: a batch's state
is written only after its outputs were acknowledged (docs/crash-safety.md), so a restart
redelivers what was not finished. The supervisor (docker-compose `restart: unless-stopped`,
Kubernetes, systemd) starts the worker again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

EXIT_CRASHED = 70  # EX_SOFTWARE: an internal error; 75 (EX_TEMPFAIL) is the stalled partition

log = logging.getLogger("tollgate.worker")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def die(what: str, error: BaseException) -> NoReturn:
    """Log `error` as the reason `what` died, then end the process now."""
    text = "".join(traceback.format_exception(error))
    message = (
        f"tollgate worker: {what} died: {type(error).__name__}: {error}; "
        f"exiting with code {EXIT_CRASHED} for a restart\n{text}"
    )
    try:
        log.critical(message)
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
    finally:
        # Also on stderr as such: logging may not be configured, or be configured away.
        try:
            sys.stderr.write(message)
            sys.stderr.flush()
        finally:
            os._exit(EXIT_CRASHED)


def supervised(what: str) -> Callable[[F], F]:
    """For the body of an agent, a timer or a task (under Faust's decorator): an exception from
    it ends the process. Cancellation does not: that is how Faust stops and restarts its tasks
    (a rebalance). Faust keeps a crashed agent marked and goes on; this decides instead."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await function(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                die(what, error)

        return run  # type: ignore[return-value]

    return decorate
