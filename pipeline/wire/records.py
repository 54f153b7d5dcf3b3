"""The values carried by tollgate's topics, as frozen dataclasses of plain values.

JSON objects (definitions, subscriptions, webhook bodies) are dicts whose numbers are `int` or
`Decimal`, as `jsontext.loads` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.wire.errors import INVALID, WireError

CatalogKind = Literal["billable_metric", "plan", "customer", "feature"]
SubscriptionAction = Literal["upsert", "terminate"]


@dataclass(frozen=True, slots=True)
class Tick:
    """A clock tick: it only moves the clock to its Kafka record timestamp."""

    source: str = "ticker"


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    """A billable metric, plan or customer definition (a Lago JSON object)."""

    kind: CatalogKind
    key: str
    definition: dict[str, Any]

    @property
    def kafka_key(self) -> str:
        """The message key on the compacted catalog topic: `"<kind>:<key>"`."""
        return catalog_key(self.kind, self.key)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """Create or update (`upsert`, with the Lago subscription object) or `terminate` one."""

    action: SubscriptionAction
    external_id: str
    subscription: dict[str, Any] | None = None

    @classmethod
    def upsert(cls, subscription: Mapping[str, Any]) -> SubscriptionRecord:
        """An upsert keyed by the subscription's own `external_id` (an int becomes its text)."""
        return cls(
            "upsert", id_text(subscription.get("external_id"), "external_id"), dict(subscription)
        )

    @classmethod
    def terminate(cls, external_id: str) -> SubscriptionRecord:
        return cls("terminate", external_id, None)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """Create, update or delete one usage alert (spec §11): `alert` is the timeline's `alert`
    object, `{"external_subscription_id", "code", "deleted": true}` for a deletion."""

    external_subscription_id: str | None  # the partition key; None if the object has none
    alert: dict[str, Any]

    @classmethod
    def of(cls, alert: Mapping[str, Any]) -> AlertRecord:
        return cls(subscription_key(alert), dict(alert))

    @property
    def deleted(self) -> bool:
        return self.alert.get("deleted") is True


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A change of an invoice's payment status (spec §12): the timeline's `invoice_payment`
    object `{lago_invoice_id, external_subscription_id, payment_status}`."""

    external_subscription_id: str | None  # the partition key; None if the object has none
    payment: dict[str, Any]

    @classmethod
    def of(cls, payment: Mapping[str, Any]) -> PaymentRecord:
        return cls(subscription_key(payment), dict(payment))


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One webhook: a deterministic delivery `id` and the Lago-shaped `body` (spec §7)."""

    id: str
    webhook_type: str
    object_type: str
    external_subscription_id: str | None
    external_customer_id: str | None
    body: dict[str, Any]

    @classmethod
    def from_body(
        cls,
        id: str,
        body: Mapping[str, Any],
        *,
        external_subscription_id: str | None = None,
        external_customer_id: str | None = None,
    ) -> OutputRecord:
        """Take `webhook_type` and `object_type` from the body itself."""
        webhook_type, object_type = body.get("webhook_type"), body.get("object_type")
        if not isinstance(webhook_type, str) or not isinstance(object_type, str):
            raise WireError(
                INVALID,
                "webhook body needs string webhook_type and object_type, got "
                f"{webhook_type!r} and {object_type!r}",
            )
        return cls(
            id,
            webhook_type,
            object_type,
            external_subscription_id,
            external_customer_id,
            dict(body),
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that could not be billed, with its original bytes and origin (spec §8)."""

    reason: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    original: bytes
    external_subscription_id: str | None = None


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One usage-events message inside a usage batch, as the intake read it."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    size: int  # the original value's size; above len(value) when only a prefix travels


@dataclass(frozen=True, slots=True)
class UsageBatch:
    """A run of consecutive messages of one source partition (docs/decisions.md, the intake).

    `from_offset` is where the intake's reading of this run began: every source offset from
    there up to the first message's carries no message, so a consumer that has applied
    everything before `from_offset` can apply this batch without a gap.
    """

    source_topic: str
    source_partition: int
    from_offset: int
    messages: tuple[SourceMessage, ...]

    @property
    def last_offset(self) -> int:
        return self.messages[-1].offset if self.messages else self.from_offset - 1


def subscription_key(obj: Mapping[str, Any]) -> str | None:
    """The partition key of a record about one subscription: its `external_subscription_id`
    as text, or None when it has no usable one (the engine then refuses the record)."""
    subscription = obj.get("external_subscription_id")
    valid = isinstance(subscription, str | int) and not isinstance(subscription, bool)
    return str(subscription) if valid else None


def catalog_key(kind: CatalogKind, key: str) -> str:
    return f"{kind}:{key}"


def id_text(value: Any, field: str) -> str:
    """An id as text: strings as they are, integers (not booleans) as their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise WireError(INVALID, f"{field} must be a string or an integer, got {value!r}")
