"""The examples a new user replays first must read cleanly and parse with Lago's client."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pipeline.replay import run_file
from pipeline.wire.jsontext import loads
from tests.lago_compat import assert_parses_with_lago_client

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.jsonl"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_replays_without_problems(path: Path):
    out, err = io.StringIO(), io.StringIO()
    assert run_file(str(path), batch_size=7, out=out, err=err) == 0
    assert err.getvalue().endswith(" 0 problems\n"), err.getvalue()
    bodies = [loads(line) for line in out.getvalue().splitlines()]
    assert any(b["webhook_type"] == "invoice.created" for b in bodies)
    for body in bodies:
        assert_parses_with_lago_client(body)


def test_there_are_examples():
    assert len(EXAMPLES) >= 3
