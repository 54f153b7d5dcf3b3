"""Catalogue files for `tollgate catalog apply`: loading (YAML or JSON) and validation.

A file is one object with optional lists, applied in this order: `billable_metrics`,
`features` (spec §12), `plans` (with `charges`, `usage_thresholds` and `entitlements`),
`customers`, `subscriptions` (which may override their plan's `usage_thresholds` and
`entitlements`, remove features and set payment terms) and `alerts` (usage alerts of those
subscriptions, spec §11),
every item a Lago object (spec §1). Validation runs the
engine's own parsers over the whole file, with a `Catalog` built as it goes, so a plan sees the
metrics before it; any problem refuses the whole file, and each problem names where it is
(`plans[1] (line 14)`). Nothing here talks to Kafka.

Numbers stay exact: YAML and JSON fractions are read as `Decimal` (prices are decimal *strings*
in Lago's shapes, and the engine says so when it finds a number), and a YAML timestamp such as an
unquoted `subscription_at: 2025-03-01T00:00:00Z` is kept as the text it was written as.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import yaml

from pipeline.billing.catalog import Catalog, DefinitionError, apply_definition
from pipeline.clients.catalog_alerts import FileAlerts
from pipeline.kernel.errors import TollgateError
from pipeline.wire.jsontext import loads

SECTIONS: Final = (
    ("billable_metrics", "billable_metric"),
    ("features", "feature"),
    ("plans", "plan"),
    ("customers", "customer"),
    ("subscriptions", "subscription"),
    ("alerts", "alert"),
)
"""Each list a file may hold, with the kind of its items, in the order they are applied."""

KEY_FIELDS: Final = {
    "billable_metric": "code",
    "feature": "code",
    "plan": "code",
    "customer": "external_id",
    "subscription": "external_id",
    "alert": "code",
}


class CatalogFileError(TollgateError):
    """A catalogue file that is refused whole; `problems` lists each one with where it is."""

    def __init__(self, name: str, problems: list[str]) -> None:
        lines = "".join(f"\n  {problem}" for problem in problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{name} refused, nothing published ({count}):{lines}")
        self.name = name
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Definition:
    """One item of a catalogue file: its kind, the Lago object and where it is in the file."""

    kind: str
    payload: dict[str, Any]
    where: str

    @property
    def key(self) -> str:
        """The code or external id naming it (text); valid once the file has been validated.
        An alert is named by its subscription and its code."""
        key = str(self.payload.get(KEY_FIELDS[self.kind]))
        if self.kind == "alert":
            return f"{self.payload.get('external_subscription_id')}/{key}"
        return key


# --- loading ------------------------------------------------------------------------------------


def load_catalog_file(path: str | Path) -> list[Definition]:
    """The definitions of a file, in the order they apply; `CatalogFileError` if its shape is
    wrong. JSON when the name ends in .json (or the text starts with `{`), YAML otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogFileError(str(path), [f"cannot read the file: {error}"]) from None
    is_json = path.suffix.lower() == ".json" or (
        path.suffix.lower() not in (".yaml", ".yml") and text.lstrip().startswith("{")
    )
    return parse_catalog_text(text, name=str(path), is_json=is_json)


def parse_catalog_text(
    text: str, *, name: str = "<text>", is_json: bool = False
) -> list[Definition]:
    """Like `load_catalog_file`, from text."""
    try:
        document = loads(text) if is_json else _load_yaml(text)
    except ValueError as error:  # jsontext says "not valid JSON: ... line L column C"
        raise CatalogFileError(name, [str(error)]) from None
    except yaml.YAMLError as error:
        raise CatalogFileError(name, [_yaml_problem(error)]) from None
    lines = _Lines(text)
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        raise CatalogFileError(name, [f"expected an object with {_section_names()}, got {found}"])
    problems = [
        f"unknown key {key!r}{lines.at((key,))}: expected {_section_names()}"
        for key in document
        if key not in dict(SECTIONS)
    ]
    definitions: list[Definition] = []
    for section, kind in SECTIONS:
        items = document.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(f"{section}{lines.at((section,))}: expected a list")
            continue
        for index, item in enumerate(items):
            where = f"{section}[{index}]{lines.at((section, index))}"
            if isinstance(item, dict):
                definitions.append(Definition(kind, item, where))
            else:
                problems.append(f"{where}: expected an object, got {_type_name(item)}")
    if problems:
        raise CatalogFileError(name, problems)
    return definitions


def _section_names() -> str:
    return ", ".join(section for section, _ in SECTIONS)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Loader(yaml.SafeLoader):
    """Safe YAML with exact numbers, timestamps as text and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a finite decimal number", node.start_mark
        )
    return value


def _text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _text)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        context = f"{error.context}: " if error.context else ""
        return f"not valid YAML (line {mark.line + 1}, column {mark.column + 1}): {context}" + (
            error.problem or "parse error"
        )
    return f"not valid YAML: {error}"


class _Lines:
    """Line numbers of paths in the file, from the YAML node tree (JSON is YAML enough for
    this); best effort: a text that does not compose gives no line numbers."""

    def __init__(self, text: str) -> None:
        try:
            self._root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self._root = None

    def at(self, path: tuple[str | int, ...]) -> str:
        """`" (line N)"` for the key or list item at `path`, or `""` if it cannot be found."""
        node, mark = self._root, None
        for step in path:
            node, mark = _child(node, step)
        return "" if mark is None else f" (line {mark.start_mark.line + 1})"


def _child(node: yaml.Node | None, step: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(the node at `step` under `node`, the node whose line names it: key or list item)."""
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == step:
                return value_node, key_node
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step], node.value[step]
    return None, None


# --- validation ---------------------------------------------------------------------------------


def validate_definitions(
    definitions: list[Definition], known: Catalog | None = None, *, name: str = "catalogue"
) -> Catalog:
    """Parse each definition with the engine's parsers, in order, on top of `known` (what the
    catalog topic already holds); returns the resulting catalogue. Raises `CatalogFileError`
    listing every problem: a definition that breaks a rule of spec §1, a subscription naming a
    plan defined nowhere, or the same code twice in one file."""
    catalog = known.copy() if known else Catalog()
    problems: list[str] = []
    first_seen: dict[tuple[str, str], str] = {}
    alerts = FileAlerts()
    for item in definitions:
        try:
            if item.kind == "alert":
                alerts.check(item.payload, catalog)
            else:
                apply_definition(catalog, item.kind, item.payload)
                alerts.note(item)
        except DefinitionError as error:
            problems.append(f"{item.where}: {error}{_hint(str(error))}")
            continue
        seen = first_seen.setdefault((item.kind, item.key), item.where)
        if seen != item.where:
            problems.append(f"{item.where}: {item.kind} {item.key!r} is already defined at {seen}")
    if problems:
        raise CatalogFileError(name, problems)
    return catalog


def _hint(message: str) -> str:
    if "must be a decimal string, got Decimal(" in message:
        return " (write amounts and rates as quoted strings: '0.5')"
    return ""


def count_by_kind(definitions: list[Definition]) -> Mapping[str, int]:
    """How many definitions of each section, in section order (zeros included)."""
    return {
        section: sum(1 for item in definitions if item.kind == kind) for section, kind in SECTIONS
    }
