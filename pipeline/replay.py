"""`tollgate replay`: fold the engine over a timeline (spec §9). No Kafka, no database.

With `batch_size` N the touched subscriptions are written out and read back every N records,
as the live worker persists them, so a replay also proves the state survives its round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from pipeline.billing.context import EngineSettings
from pipeline.billing.engine import RECORD_KINDS, Ledger, Record
from pipeline.billing.rejections import Rejection
from pipeline.billing.state import dump_subscription, load_subscription
from pipeline.billing.timestamps import parse_instant
from pipeline.billing.webhooks import Output
from pipeline.wire import WireError, decode_usage_event
from pipeline.wire.jsontext import dumps, loads

_PAYLOAD_KEYS = {
    "billable_metric": "billable_metric",
    "plan": "plan",
    "customer": "customer",
    "subscription": "subscription",
    "terminate_subscription": "external_id",
    "event": "event",
    "alert": "alert",
    "feature": "feature",
    "invoice_payment": "invoice_payment",
}


class TimelineError(ValueError):
    """A line that is not a valid timeline record; reported with its line number, skipped."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Something replay reports on stderr: a bad line, or a refused definition."""

    line: int
    message: str


def parse_record(text: str, line: int) -> Record:
    """One timeline line as an engine record (`TimelineError` if it is not one)."""
    try:
        document = loads(text)
    except ValueError as error:
        raise TimelineError(str(error)) from None
    if not isinstance(document, dict):
        raise TimelineError("a record must be a JSON object")
    kind = document.get("type")
    if kind not in RECORD_KINDS:
        raise TimelineError(f"unknown type {kind!r}; expected one of {sorted(RECORD_KINDS)}")
    try:
        at = parse_instant(document.get("at"))
    except ValueError as error:
        raise TimelineError(f"at: {error}") from None
    ref = f"line:{line}"
    if kind == "tick":
        return Record(at, kind, None, ref)
    key = _PAYLOAD_KEYS[kind]
    if key not in document:
        raise TimelineError(f"a {kind} record needs the field {key!r}")
    payload = document[key]
    if kind == "event" and isinstance(payload, str):
        return _raw_event(at, payload, ref)
    return Record(at, kind, payload, ref)


def _raw_event(at: Any, raw: str, ref: str) -> Record:
    """An event given as raw text goes through the same decoder as the usage-events topic."""
    try:
        return Record(at, "event", decode_usage_event(raw.encode("utf-8", "surrogatepass")), ref)
    except WireError as error:
        return Record(at, "event", raw, ref, error=error.message)


def replay(
    lines: Iterable[str], *, batch_size: int = 1, settings: EngineSettings | None = None
) -> Iterator[Output | Problem]:
    """The outputs of a timeline in emission order, with problems interleaved where they occur."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    ledger = Ledger(settings)
    touched: set[str] = set()
    in_batch = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = parse_record(text, number)
        except TimelineError as error:
            yield Problem(number, str(error))
            continue
        transition = ledger.step(record)
        for rejection in transition.rejections:
            # An event's own rejection is its `event.error` body; these have none.
            if rejection.reason == "invalid_definition" or (
                rejection.reason == "internal_error" and rejection.ref != record.ref
            ):
                yield Problem(number, _describe(rejection))
        yield from transition.outputs
        touched |= transition.touched
        in_batch += 1
        if in_batch == batch_size:
            _persist(ledger, touched)
            touched, in_batch = set(), 0


def _persist(ledger: Ledger, touched: set[str]) -> None:
    """Write the batch's touched states out and continue from what was read back."""
    for external_id in sorted(touched):
        stored = dump_subscription(ledger.subscriptions[external_id])
        ledger.adopt(load_subscription(stored))


def _describe(rejection: Rejection) -> str:
    return f"{rejection.reason}: {rejection.message}"


def run_file(
    path: str,
    *,
    batch_size: int,
    out: TextIO,
    err: TextIO,
    settings: EngineSettings | None = None,
) -> int:
    """`tollgate replay`: webhook bodies on `out`, one JSON object per line; problems and a
    closing summary on `err`. Returns the exit status (0: every line was read)."""
    outputs = problems = 0
    with open(path, encoding="utf-8") as timeline:
        for item in replay(timeline, batch_size=batch_size, settings=settings):
            if isinstance(item, Problem):
                problems += 1
                err.write(f"{path}:{item.line}: {item.message}\n")
            else:
                outputs += 1
                out.write(dumps(item.body) + "\n")
    err.write(f"replayed {path}: {outputs} webhook bodies, {problems} problems\n")
    return 0
