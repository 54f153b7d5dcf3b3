"""PostgreSQL for the sinks: connections on the configured schema, and transactions that
survive the server going away.

`Database.transaction(work)` runs ``work(conn)`` in one transaction. When the connection is
lost (server restart, network, fail-over) it reconnects with capped exponential backoff and
runs the *same* work again, for as long as it takes: a sink never skips a batch. `work` must
therefore touch nothing but the database. Other database errors are bugs and propagate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from pipeline.kernel.errors import TollgateError
from sinks.common import metrics

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]

log = logging.getLogger("tollgate.sinks.db")

FIRST_BACKOFF = 0.2
MAX_BACKOFF = 10.0
CONNECT_TIMEOUT = 5


class Stopped(TollgateError):
    """Shutdown was asked for while waiting for PostgreSQL to come back."""


def connect(url: str, schema: str, *, autocommit: bool = False) -> Connection:
    """A connection whose `search_path` is `schema` alone, so that unqualified names resolve
    to the sinks' tables wherever they live (and never to another schema's)."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.autocommit = autocommit
    return conn


def transient(error: BaseException) -> bool:
    """Errors after which the same transaction may simply be run again: a lost or refused
    connection, a server shutting down, a full disk, a serialization failure or deadlock. A
    statement beyond a program limit (SQLSTATE class 54) would fail again: not transient."""
    if isinstance(error, psycopg.OperationalError):
        return not (error.sqlstate or "").startswith("54")
    return isinstance(error, psycopg.InterfaceError) and "closed" in str(error)


class Database:
    """One lazily (re)opened connection, used from one thread at a time; `sink` labels the
    retry metric."""

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        stop: threading.Event | None = None,
        sink: str = "",
    ) -> None:
        self.url = url
        self.schema = schema
        self.sink = sink
        self._stop = stop or threading.Event()
        self._conn: Connection | None = None

    def transaction(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` inside one transaction, retried whole after a lost connection."""
        delay = FIRST_BACKOFF
        while True:
            try:
                conn = self._connection()
                with conn.transaction():
                    return work(conn)
            except psycopg.Error as error:
                if not transient(error):
                    raise
                self._retry_after(error, delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = connect(self.url, self.schema)
        return self._conn

    def _retry_after(self, error: BaseException, delay: float) -> None:
        self.close()
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        log.warning("PostgreSQL unavailable (%s); retrying in %.1f s", first_line, delay)
        if self.sink:
            metrics.DB_RETRIES.labels(self.sink).inc()
        if self._stop.wait(delay):
            raise Stopped("stopped while waiting for PostgreSQL")
