"""Topic names, from the one prefix setting (tests use a prefix of their own)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic tollgate reads or writes (schemas/topics.yaml describes each).

    `usage_events` is the worker's one ordered input: usage events keyed by external
    subscription id, subscription records keyed by external id, and — written to every
    partition — clock ticks and catalog records. `catalog` (compacted) keeps the latest
    definition of each key for people and new deployments; `usage_batches` is internal: the
    intake packs runs of usage-events messages into one message each, same partition number,
    and the worker reads those; `subscriptions` accepts subscription
    records from applications that prefer a topic of their own (the worker forwards them).
    """

    usage_events: str
    usage_batches: str
    subscriptions: str
    catalog: str
    outputs: str
    dead_letters: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            usage_events=f"{prefix}usage-events",
            usage_batches=f"{prefix}usage-batches",
            subscriptions=f"{prefix}subscriptions",
            catalog=f"{prefix}catalog",
            outputs=f"{prefix}outputs",
            dead_letters=f"{prefix}dead-letters",
        )
