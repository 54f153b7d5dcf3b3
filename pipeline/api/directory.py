"""Where a subscription's state lives, as the API needs to know it (the worker implements it).

The worker that owns a subscription's partition holds its engine state in memory; reads are
answered there and nowhere else, so that an answer reflects every record that worker applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pipeline.billing.engine import Ledger


@dataclass(frozen=True, slots=True)
class Here:
    """This worker owns the partition: its ledger, and the instant to evaluate access at."""

    ledger: Ledger
    now: datetime


@dataclass(frozen=True, slots=True)
class There:
    """Another worker owns it: its API base URL."""

    url: str


@dataclass(frozen=True, slots=True)
class Nowhere:
    """Nobody can answer now (a rebalance or a recovery in progress): why, for a 503."""

    reason: str


Location = Here | There | Nowhere


class Directory(Protocol):
    def locate(self, external_subscription_id: str) -> Location:
        """Where the state of this subscription's partition is, right now."""
        ...

    def local(self) -> Sequence[Here]:
        """Every partition this worker owns and can read now (for lookups by invoice id)."""
        ...

    def peers(self) -> Sequence[str]:
        """The API base URLs of the other workers of the group."""
        ...
