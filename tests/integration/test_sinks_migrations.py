"""`tollgate db migrate`: each migration once, in any schema, even with two runs at once; the
sinks refuse a schema that lacks one."""

from __future__ import annotations

import os
import subprocess

import pytest

from pipeline.kernel.settings import Settings
from sinks.common.db import connect
from sinks.common.migrate import available
from tests.integration.sinks_support import TOLLGATE

pytestmark = pytest.mark.integration


def _run(settings: Settings, schema: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **settings.as_env(), "TOLLGATE_DATABASE_SCHEMA": schema}
    return subprocess.Popen(
        [str(TOLLGATE), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_migrations_apply_once_even_when_two_runs_race(
    settings: Settings, database_url: str, new_schema: str
) -> None:
    refused = _run(settings, new_schema, "sink", "invoices", "--group", "unused")
    _, err = refused.communicate(timeout=30)
    assert refused.returncode == 1
    assert f"schema {new_schema} lacks {len(available())} migration(s)" in err
    assert "tollgate db migrate" in err

    racing = [_run(settings, new_schema, "db", "migrate") for _ in range(2)]
    outputs = [process.communicate(timeout=60) for process in racing]
    assert [process.returncode for process in racing] == [0, 0], outputs
    applied = "".join(out for out, _ in outputs)
    for migration in available():
        assert applied.count(f"applied {migration.version:04d}_{migration.name} ") == 1

    again, _ = _run(settings, new_schema, "db", "migrate").communicate(timeout=30)
    assert again.strip() == f"schema {new_schema} is up to date ({len(available())} migrations)"
    with connect(database_url, new_schema, autocommit=True) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (new_schema,),
            )
        }
    assert sorted(versions) == [migration.version for migration in available()]
    assert {"invoices", "webhook_deliveries", "consumer_offsets"} <= tables
