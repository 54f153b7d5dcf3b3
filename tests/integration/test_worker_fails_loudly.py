"""Fail loudly (issue 9): when an agent of a real `tollgate worker` process dies, the process
exits at once, non-zero, with the error in its log, instead of staying up and billing nothing.

The fault is injected in the child process: `Ledger.run` (source engine) raises for a batch
holding a marked event. That is outside the engine's own containment, as a bug in the worker's
code around it would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.worker.supervision import EXIT_CRASHED
from tests.integration.test_worker import feed_lines
from tests.integration.worker_process import Deployment, free_port

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MARK = "crash-the-agent"
CRASHING_WORKER = f"""
from pipeline.tooling import compiled_engine

compiled_engine.select_from_env()  # TOLLGATE_ENGINE=source: before the engine is imported
from pipeline.billing import engine

real = engine.Ledger.run


def run(self, records):
    records = list(records)
    for record in records:
        payload = record.payload
        if isinstance(payload, dict) and payload.get("transaction_id") == {MARK!r}:
            raise RuntimeError("injected: the ledger agent dies")
    return real(self, records)


engine.Ledger.run = run
from pipeline.cli import main

main()
"""


def test_a_worker_whose_agent_dies_exits_at_once_with_the_error_logged(
    settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    deployment = Deployment.create(settings, tmp_path)
    lines = (EXAMPLES / "ai_tokens_recurring.jsonl").read_text().splitlines()[:5]
    crash = {
        "at": "2025-03-03T00:00:00Z",
        "type": "event",
        "event": {"transaction_id": MARK, "external_subscription_id": "sub-acme", "code": "tokens"},
    }
    env = {
        **os.environ,
        **deployment.settings.as_env(),
        "TOLLGATE_METRICS_PORT": str(free_port()),
        "TOLLGATE_API_PORT": str(free_port()),
        "TOLLGATE_ENGINE": "source",  # the compiled engine's classes cannot be patched
    }
    deployment.start_intake()  # the worker reads the batches the intake makes
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-c", CRASHING_WORKER, "worker", "--clock", "records"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        feed_lines(deployment, lines)
        time.sleep(2)
        assert worker.poll() is None, log_path.read_text()  # alive while the input is good
        fed = time.monotonic()
        feed_lines(deployment, [json.dumps(crash)])
        code = worker.wait(timeout=90)
        took = time.monotonic() - fed
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        deployment.stop_all()
    text = log_path.read_text(errors="replace")
    assert code == EXIT_CRASHED, text[-4000:]
    assert "agent" in text and "died: RuntimeError: injected: the ledger agent dies" in text
    assert "Traceback" in text
    assert took < 60, f"exited {took:.0f} s after the fault"
