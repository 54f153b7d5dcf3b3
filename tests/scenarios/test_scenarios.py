"""Scenario timelines with hand-computed expectations (from the spec, not from any system).

Each `NAME.jsonl` is a timeline (spec §9); `NAME.expected.jsonl` lists, in order, what replay
must produce: a webhook body given as a subset of the real one (every key given must match,
lists element by element), or `{"problem_line": N}` for a line reported on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.replay import Problem, replay
from tests.lago_compat import assert_parses_with_lago_client

HERE = Path(__file__).parent
SCENARIOS = sorted(
    p.name.removesuffix(".jsonl") for p in HERE.glob("*.jsonl") if ".expected" not in p.name
)


def produced(name: str, batch_size: int = 1) -> list[Any]:
    lines = (HERE / f"{name}.jsonl").read_text().splitlines()
    items: list[Any] = []
    for item in replay(lines, batch_size=batch_size):
        if isinstance(item, Problem):
            items.append({"problem_line": item.line})
        else:
            items.append(json.loads(json.dumps(item.body, default=str)))
    return items


def contains(actual: Any, expected: Any, path: str = "$") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing"
            contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: expected {len(expected)} items, got {actual!r}"
        )
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            contains(a, e, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_produces_the_expected_outputs(name: str):
    expected = [
        json.loads(line) for line in (HERE / f"{name}.expected.jsonl").read_text().splitlines()
    ]
    actual = produced(name)
    assert len(actual) == len(expected), json.dumps(actual, indent=1)[:6000]
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        contains(got, want, f"output[{index}]")


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_output_is_the_same_for_every_batch_size(name: str):
    once = produced(name)
    for size in (2, 3, 64):
        assert produced(name, size) == once


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_bodies_parse_with_lagos_own_client(name: str):
    for body in produced(name):
        if "problem_line" not in body:
            assert_parses_with_lago_client(body)
