"""The local stack, without Docker: one Kafka broker (KRaft) and one PostgreSQL server.

`up`, `down`, `status` and `reset` back the `tollgate dev` commands. Everything lives in the
run folder (TOLLGATE_RUN_DIR, default .run/): data, pid files, and logs in ``logs/``.
A service that already answers on its configured address is used as it is and never stopped;
`down` stops only the processes that `up` started from this run folder.
"""

from __future__ import annotations

import shutil
import time

from pipeline.kernel.commands import Echo
from pipeline.local.devstack._proc import StackError
from pipeline.local.devstack.kafka import Kafka
from pipeline.local.devstack.postgres import Postgres, redact
from pipeline.local.devstack.status import ServiceStatus
from pipeline.local.settings import StackSettings

__all__ = [
    "ServiceStatus",
    "StackError",
    "down",
    "locations",
    "reset",
    "status",
    "up",
]


def up(settings: StackSettings, echo: Echo = print) -> float:
    """Start (or reuse) Kafka and PostgreSQL and wait until both answer; returns seconds."""
    started = time.monotonic()
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    kafka, postgres = Kafka(settings), Postgres(settings)
    kafka.start(echo)  # the JVM boots while PostgreSQL starts
    postgres.start(echo)
    kafka.wait_ready(echo)
    elapsed = time.monotonic() - started
    echo(f"stack: up in {elapsed:.1f} s")
    return elapsed


def down(settings: StackSettings, echo: Echo = print) -> None:
    """Stop the processes `up` started from this run folder; data stays for the next `up`."""
    Kafka(settings).stop(echo)
    Postgres(settings).stop(echo)


def status(settings: StackSettings) -> list[ServiceStatus]:
    return [Kafka(settings).status(), Postgres(settings).status()]


def reset(settings: StackSettings, echo: Echo = print) -> None:
    """Empty the stack for a clean run: topics, consumer groups, worker state, tables."""
    Kafka(settings).reset(echo)
    Postgres(settings).reset(echo)
    if settings.state_dir.exists():
        shutil.rmtree(settings.state_dir)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    echo(f"state: emptied {settings.state_dir}")


def locations(settings: StackSettings) -> list[str]:
    """Where things are, one line each, for the end of `make up`."""
    return [
        f"Kafka bootstrap   {settings.kafka_bootstrap}",
        f"PostgreSQL        {redact(settings.database_url)}",
        f"Logs              {settings.log_dir}",
        f"Run folder        {settings.run_dir}  (`tollgate dev status`, `make down`)",
    ]
