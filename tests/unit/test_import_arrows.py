"""What may import what: the arrows between the packages of ARCHITECTURE.md, checked by a walk
over every import in pipeline/ and sinks/ (function-level and TYPE_CHECKING ones included).

A new package gets a row in ROOMS and a line in ARCHITECTURE.md's map; the tests below fail
until it has both.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CORE = "pipeline.billing"
KERNEL = "pipeline.kernel"
WIRE = "pipeline.wire"
REPLAY = "pipeline.replay"
CLIENTS = "pipeline.clients"
TOOLING = "pipeline.tooling"
SINKS_COMMON = "sinks.common"
SINKS_INVOICES = "sinks.invoices"
SINKS_WEBHOOKS = "sinks.webhooks"
DEPLOYED_SINKS = {SINKS_COMMON, SINKS_INVOICES, SINKS_WEBHOOKS, "sinks"}

# Each room, and the first-party rooms it may import (besides itself).
ROOMS: dict[str, set[str]] = {
    "pipeline": set(),  # the package itself: its __init__ does nothing
    CORE: set(),
    KERNEL: set(),
    WIRE: set(),  # codecs: no engine, no framework
    REPLAY: {CORE, WIRE},
    "pipeline.worker": {CORE, WIRE, KERNEL, CLIENTS, TOOLING, "pipeline.api"},  # serves the API
    "pipeline.intake": {CORE, WIRE, KERNEL, CLIENTS},
    "pipeline.api": {CORE, WIRE, KERNEL, CLIENTS},
    CLIENTS: {CORE, WIRE, KERNEL, REPLAY},
    TOOLING: {KERNEL, CORE},
    "pipeline.local": {CORE, WIRE, KERNEL, REPLAY, CLIENTS, TOOLING, *DEPLOYED_SINKS},
    SINKS_COMMON: {KERNEL, WIRE},
    SINKS_INVOICES: {KERNEL, WIRE, SINKS_COMMON},
    SINKS_WEBHOOKS: {KERNEL, WIRE, SINKS_COMMON},
    "sinks": {KERNEL, WIRE, SINKS_COMMON, SINKS_INVOICES, SINKS_WEBHOOKS},  # the commands
}
# The command line wires everything together; nothing else imports it.
ROOMS["pipeline.cli"] = set(ROOMS) - {"pipeline"}
# Rooms that import nothing outside the standard library, but these.
STANDARD_LIBRARY_AND = {CORE: set(), KERNEL: {"click"}}  # click: kernel/commands.py
# The stream framework stays in the stream shells (and the local tools that start them).
FRAMEWORK = ("faust", "mode", "aiokafka")
FRAMEWORK_ROOMS = {"pipeline.worker", "pipeline.intake", "pipeline.local", "pipeline.cli"}


def room_of(module: str) -> str | None:
    """The longest room name that is `module` or a package above it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in ROOMS:
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_first_party(name: str) -> bool:
    return name.split(".")[0] in {"pipeline", "sinks"}


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports; `from a import b` counts as `a.b` when b is a module."""
    names: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            for alias in node.names:
                if is_first_party(base) and _is_module(f"{base}.{alias.name}"):
                    names.add(f"{base}.{alias.name}")
    return names


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


SOURCES = sorted(p for top in ("pipeline", "sinks") for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_arrows(path: Path) -> None:
    here = room_of(module_name(path))
    assert here is not None, f"{module_name(path)} is in no room: add it to ROOMS"
    for name in imports_of(path):
        top = name.split(".")[0]
        if is_first_party(name):
            there = room_of(name)
            assert there is not None, f"{path.name} imports {name}, which is in no room"
            assert there == here or there in ROOMS[here], f"{here} may not import {name}"
        elif top != "__future__":
            allowed = STANDARD_LIBRARY_AND.get(here)
            assert allowed is None or top in sys.stdlib_module_names or top in allowed, (
                f"{here} imports {name}, which is not in the standard library"
            )
            assert top not in FRAMEWORK or here in FRAMEWORK_ROOMS, (
                f"{here} imports the stream framework ({name})"
            )


def test_the_local_tools_and_the_intake_are_imported_by_the_command_line_alone() -> None:
    for room, allowed in ROOMS.items():
        if room != "pipeline.cli":
            assert "pipeline.local" not in allowed or room == "pipeline.local", room
            assert "pipeline.intake" not in allowed or room == "pipeline.intake", room


def test_every_package_is_in_a_room_and_on_the_map() -> None:
    packages = {
        module_name(p.parent)
        for top in ("pipeline", "sinks")
        for p in (ROOT / top).rglob("__init__.py")
    }
    for package in packages:
        assert room_of(package) is not None, f"{package} is in no room: add it to ROOMS"
    mapped = set(_architecture_map())
    for room in ROOMS:
        path = room.replace(".", "/")
        assert {f"{path}/", f"{path}.py"} & mapped, f"ARCHITECTURE.md's map does not name {path}"
    for path in mapped:
        room = path.removesuffix("/").removesuffix(".py").replace("/", ".")
        assert room in ROOMS, f"ARCHITECTURE.md's map names {path}, which is not in ROOMS"


def _architecture_map() -> list[str]:
    """The first cell of each row of ARCHITECTURE.md's package table."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("## Packages, one line each", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [row.split("`")[1] for row in rows]
