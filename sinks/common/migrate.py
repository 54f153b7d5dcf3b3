"""`tollgate db migrate`: apply sinks/common/migrations/NNNN_name.sql in order, each exactly once.

The schema (TOLLGATE_DATABASE_SCHEMA) is created when missing and a `schema_migrations` table
in it records each applied version. Every migration runs in one transaction together with its
version row, under a transaction-scoped advisory lock, so concurrent runs (two sinks starting
at once) apply each file once. Migration files use unqualified names: they work in any schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from psycopg import sql

from pipeline.kernel.commands import Echo
from pipeline.kernel.errors import TollgateError
from sinks.common.db import Connection, connect

_FILE_NAME = re.compile(r"^(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK = "tollgate.migrate"


class MigrationError(TollgateError):
    """The migrations folder or the database is not in a state migrations can handle."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str = field(repr=False)


def available() -> list[Migration]:
    """Every migration shipped with tollgate, by version; refuses gaps and duplicates."""
    found: list[Migration] = []
    for entry in resources.files("sinks.common").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match["version"]), match["name"], entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must run 1, 2, 3... without gaps: {versions}")
    return found


def applied(conn: Connection) -> set[int]:
    """Versions recorded in the schema's `schema_migrations` (empty when it has none)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def pending(url: str, schema: str) -> list[Migration]:
    """Migrations not yet applied in `schema` (the sinks refuse to start while any are)."""
    with connect(url, schema, autocommit=True) as conn:
        done = applied(conn)
    return [migration for migration in available() if migration.version not in done]


def migrate(url: str, schema: str, echo: Echo = print) -> list[Migration]:
    """Apply what is missing, one transaction per migration; returns what was applied."""
    done: list[Migration] = []
    with connect(url, schema) as conn:
        with conn.transaction():
            _lock(conn, schema)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for migration in available():
            with conn.transaction():
                _lock(conn, schema)
                if migration.version in applied(conn):
                    continue
                conn.execute(migration.text.encode("utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            echo(f"applied {migration.version:04d}_{migration.name} in schema {schema}")
            done.append(migration)
    if not done:
        echo(f"schema {schema} is up to date ({len(available())} migrations)")
    return done


def _lock(conn: Connection, schema: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{_LOCK}:{schema}",))
