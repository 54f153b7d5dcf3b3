"""`pipeline/billing` performs no I/O and imports no framework: a walk over its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).parents[2] / "pipeline" / "billing"
FORBIDDEN = {
    "faust",
    "mode",
    "confluent_kafka",
    "aiokafka",
    "fastavro",
    "psycopg",
    "psycopg_pool",
    "prometheus_client",
    "httpx",
    "aiohttp",
    "socket",
    "subprocess",
    "random",
    "time",
    "asyncio",
    "os",
    "pipeline.wire",
    "pipeline.worker",
    "sinks",
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_engine_module_imports_nothing_impure(path: Path):
    for name in imported(path):
        assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), (
            f"{path.name} imports {name}"
        )
        assert (
            name.startswith(("pipeline.billing", "__future__"))
            or "." not in name
            or name in {"collections.abc", "decimal", "datetime", "zoneinfo"}
        ), f"{path.name} imports {name}"


def test_engine_never_reads_the_clock():
    for path in ENGINE.glob("*.py"):
        text = path.read_text()
        for call in (".now(", "utcnow(", "today(", "time.time(", "perf_counter("):
            assert call not in text, f"{path.name} calls {call}"
