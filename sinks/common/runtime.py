"""What every sink process shares around its loops: the stop flag (SIGTERM, SIGINT), the idle
timer of `--idle-exit`, the clock and log lines (health.py: metrics and health)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

Clock = Callable[[], datetime]

log = logging.getLogger("tollgate.sinks")


def wall_clock() -> datetime:
    """The real time, timezone-aware; tests inject another `Clock`."""
    return datetime.now(UTC)


class Activity:
    """When did this process last do something? `expired()` once `idle_exit` seconds passed
    without `touch()` (never, when `idle_exit` is None, nor while something holds it: a
    consumer waiting for its first partitions is not idle). Shared by a sink's loops."""

    def __init__(self, idle_exit: float | None, monotonic: Callable[[], float] = time.monotonic):
        self.idle_exit = idle_exit
        self._monotonic = monotonic
        self._last = monotonic()
        self._holds = 0

    def touch(self) -> None:
        self._last = self._monotonic()

    def hold(self) -> None:
        self._holds += 1

    def release(self) -> None:
        if self._holds:
            self._holds -= 1
            self.touch()

    def expired(self) -> bool:
        if self.idle_exit is None or self._holds:
            return False
        return self._monotonic() - self._last >= self.idle_exit


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`: loops finish their batch or attempts, then exit. A second
    signal exits at once (what was not committed is read again on the next start)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        log.info("%s received: finishing the current work, then stopping", signal.strsignal(signum))
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
