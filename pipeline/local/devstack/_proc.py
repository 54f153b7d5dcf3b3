"""Process and port helpers for the local stack: pid files, liveness, stopping, launching."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.kernel.errors import TollgateError


class StackError(TollgateError):
    """The local stack cannot be started, stopped or inspected; the message names the fix."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether pid runs (a zombie, i.e. exited but not yet reaped, counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reaps it if it is our own exited child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(path: Path) -> int | None:
    """The pid on the first line of a pid file, or None when absent or unreadable."""
    try:
        first = path.read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, ValueError, IndexError):
        return None


def stop_pid(pid: int, first: signal.Signals, timeout: float) -> bool:
    """Send `first`, wait up to `timeout` seconds, then SIGKILL. True when it had to kill."""
    try:
        os.kill(pid, first)
    except ProcessLookupError:
        return False
    if _wait_gone(pid, timeout):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise StackError(f"process {pid} survived SIGKILL: check it with `ps -p {pid}`")
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def launch_detached(command: Sequence[str], log: Path, cwd: Path) -> int:
    """Start `command` in the background, detached from this process; returns its pid.

    A shell starts the command with `&` and exits at once, so the service is re-parented
    away from the caller (no zombie, no inherited pipes) and runs in its own session, out of
    reach of the terminal's Ctrl-C. stdin is /dev/null; stdout and stderr append to `log`.
    """
    script = f"{shlex.join(command)} </dev/null >>{shlex.quote(str(log))} 2>&1 & echo $!"
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )
    try:
        return int(result.stdout.strip())
    except ValueError:
        raise StackError(
            f"could not start {command[0]}: {result.stderr.strip() or 'no pid reported'}"
        ) from None


def require_tool(name: str, fix: str) -> str:
    """The full path of executable `name`, or a StackError naming the fix."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` not found on PATH: {fix}")
    return path


def tail(path: Path, lines: int = 5) -> str:
    """The last non-empty lines of a log file, joined with ' | ' to fit one line."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)
