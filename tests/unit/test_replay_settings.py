"""`tollgate replay` bills with the worker's engine settings (issue 9): the allowed lateness and
the de-duplication window come from TOLLGATE_ALLOWED_LATENESS and TOLLGATE_DEDUPE_WINDOW_DAYS."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from pipeline.billing.context import EngineSettings
from pipeline.cli import main
from pipeline.kernel.settings import Settings
from pipeline.replay import Problem, replay
from pipeline.wire.jsontext import dumps
from pipeline.worker.app import engine_settings

LINES = [
    {"at": "2025-01-01T00:00:00Z", "type": "billable_metric",
     "billable_metric": {"code": "calls", "aggregation_type": "count_agg"}},
    {"at": "2025-01-01T00:00:00Z", "type": "plan", "plan": {
        "code": "p", "interval": "monthly", "amount_cents": 0, "amount_currency": "USD",
        "charges": [{"billable_metric_code": "calls", "charge_model": "standard",
                     "properties": {"amount": "1"}}]}},
    {"at": "2025-01-01T00:00:00Z", "type": "subscription",
     "subscription": {"external_id": "s", "external_customer_id": "c", "plan_code": "p"}},
    {"at": "2025-01-10T00:00:00Z", "type": "event", "event": {
        "transaction_id": "t1", "external_subscription_id": "s", "code": "calls"}},
    # 30 minutes after the period's end, timestamped inside it: billed only with lateness.
    {"at": "2025-02-01T00:30:00Z", "type": "event", "event": {
        "transaction_id": "t2", "external_subscription_id": "s", "code": "calls",
        "timestamp": "2025-01-31T23:00:00Z"}},
    # t1 again 25 days after it was accepted: a duplicate only with a window of 25 days or more.
    {"at": "2025-02-04T00:00:00Z", "type": "event", "event": {
        "transaction_id": "t1", "external_subscription_id": "s", "code": "calls"}},
    {"at": "2025-03-05T00:00:00Z", "type": "tick"},
]  # fmt: skip
ENV = {"TOLLGATE_ALLOWED_LATENESS": "3600", "TOLLGATE_DEDUPE_WINDOW_DAYS": "2"}


def _cli(path: Path, env: dict[str, str]) -> list[str]:
    result = CliRunner().invoke(main, ["replay", str(path)], env=env)
    assert result.exit_code == 0, result.output
    return [line for line in result.stdout.splitlines() if line.startswith("{")]


def _direct(settings: EngineSettings | None) -> list[str]:
    lines = [json.dumps(line) for line in LINES]
    return [dumps(o.body) for o in replay(lines, settings=settings) if not isinstance(o, Problem)]


def test_replay_uses_the_engine_settings_of_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    configured = EngineSettings(allowed_lateness=timedelta(hours=1), dedupe_window=timedelta(2))
    expected = _direct(configured)
    assert expected != _direct(None)  # the timeline tells the settings apart
    assert _cli(path, ENV) == expected
    assert _cli(path, {}) == _direct(None)


def test_the_worker_and_replay_read_the_same_settings() -> None:
    settings = Settings.from_env(ENV)
    worker = engine_settings(settings)
    replayed = EngineSettings.of(settings.allowed_lateness, settings.dedupe_window_days)
    assert replayed == EngineSettings.of(1 * 3600, 2) and worker.journal
    assert (replayed.allowed_lateness, replayed.dedupe_window) == (
        worker.allowed_lateness,
        worker.dedupe_window,
    )
    assert (worker.allowed_lateness, worker.dedupe_window) == (timedelta(hours=1), timedelta(2))
