"""The compiled engine (`make engine`) bills exactly like its sources, and runs only while current.

Each check runs in a fresh interpreter: which engine loads is decided once, by the entry point,
before the first import of `pipeline.billing` (here, the first line of each snippet). The checks
that need a build skip without one; `make test` always has one and runs the suite with
`TOLLGATE_ENGINE=compiled`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.tooling import compiled_engine

ROOT = Path(__file__).resolve().parents[2]
BUILT = compiled_engine.build_state() == "current"
needs_build = pytest.mark.skipif(not BUILT, reason="no current compiled engine: `make engine`")

# Everything the engine emits for the scenario and example timelines (batch sizes 1 and 7) and
# for 30,000 benchmark events (progressive invoices, period closes), plus every final state.
OUTPUT_DIGEST = """
import hashlib, json
from itertools import islice
from pathlib import Path
from benchmarks import bench_core
from pipeline.tooling import compiled_engine
from pipeline.billing.engine import Ledger
from pipeline.billing.state import dump_subscription
from pipeline.replay import replay
from pipeline.wire.jsontext import dumps

digest = hashlib.sha256()
timelines = [*Path("tests/scenarios").glob("*.jsonl"), *Path("examples").glob("*.jsonl")]
for path in sorted(p for p in timelines if ".expected" not in p.name):
    for batch_size in (1, 7):
        for item in replay(path.read_text().splitlines(), batch_size=batch_size):
            text = dumps(item.body) if hasattr(item, "body") else repr(item)
            digest.update(text.encode())
ledger = Ledger()
for record in bench_core.catalog_records() + bench_core.subscription_records(200):
    ledger.step(record)
events = bench_core.event_records(30_000, 200)
while batch := list(islice(events, 500)):
    for output in ledger.run(batch).outputs:
        digest.update(output.id.encode() + dumps(output.body).encode())
for external_id in sorted(ledger.subscriptions):
    digest.update(dump_subscription(ledger.subscriptions[external_id]))
print(compiled_engine.in_use(), digest.hexdigest())
"""

WHICH = "import pipeline.billing.engine as e; print(e.__file__)"


def _python(code: str, engine: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, compiled_engine.VARIABLE: engine, "PYTHONPATH": str(cwd)}
    entry = "import pipeline.tooling.compiled_engine as c; c.select_from_env()\n"
    return subprocess.run(
        [sys.executable, "-c", entry + code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_build
def test_compiled_and_source_engines_emit_the_same_bytes() -> None:
    compiled = _python(OUTPUT_DIGEST, "compiled")
    source = _python(OUTPUT_DIGEST, "source")
    assert compiled.returncode == 0, compiled.stderr
    assert source.returncode == 0, source.stderr
    assert compiled.stdout.split()[0] == "compiled"
    assert source.stdout.split()[0] == "source"
    assert compiled.stdout.split()[1] == source.stdout.split()[1]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the `pipeline` package (with its build, if any) that imports on its own."""
    shutil.copytree(
        ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_without_a_build_the_sources_run(checkout: Path) -> None:
    compiled_engine.clean(checkout / "pipeline" / "billing")
    result = _python(WHICH, "auto", checkout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(checkout / "pipeline" / "billing" / "engine.py")
    refused = _python(WHICH, "compiled", checkout)
    assert refused.returncode != 0
    assert "TOLLGATE_ENGINE=compiled, but the compiled engine is not built" in refused.stderr


@needs_build
def test_a_current_build_runs_unless_the_sources_are_asked_for(checkout: Path) -> None:
    result = _python(WHICH, "auto", checkout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(".so")
    assert result.stdout.startswith(str(checkout))
    source = _python(WHICH, "source", checkout)
    assert source.stdout.strip() == str(checkout / "pipeline" / "billing" / "engine.py")


@needs_build
def test_an_edited_source_is_never_shadowed_by_an_older_build(checkout: Path) -> None:
    usage = checkout / "pipeline" / "billing" / "usage.py"
    usage.write_text(usage.read_text() + "\nEDITED = True\n")
    result = _python(
        "import pipeline.billing.usage as u; print(u.EDITED, u.__file__)", "auto", checkout
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", str(usage)]
    assert "older than its sources" in result.stderr
    refused = _python(WHICH, "compiled", checkout)
    assert refused.returncode != 0
    assert "is older than its sources: run `make engine`" in refused.stderr
