"""Why an input could not be billed (spec §8), as values rather than exceptions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Reason codes, in the order spec §8 checks them."""

    MALFORMED = "malformed"
    INVALID = "invalid"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    UNKNOWN_METRIC = "unknown_metric"
    BEFORE_SUBSCRIPTION_START = "before_subscription_start"
    LATE_EVENT = "late_event"
    INVALID_DEFINITION = "invalid_definition"
    # Not a property of the input: applying it met a bug. The record is dead-lettered and undone
    # (engine.py, "containment"), so that one record cannot stop billing for anyone else.
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One input that cannot be billed: becomes a dead letter (and `event.error` for events)."""

    reason: Reason
    message: str
    ref: str
    # Any, not object: a mypyc-compiled dataclass cannot resolve the annotation `object`.
    payload: Any  # the input as far as it decoded, else its raw text
    external_subscription_id: str | None = None
