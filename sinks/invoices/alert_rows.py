"""Rows of `triggered_alerts` from `alert.triggered` outputs (spec §11). Pure.

The engine made every value; this picks fields out of the Lago-shaped body. A body that lacks
one raises the same errors as the invoice rows, and the sink dead-letters it (`invalid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pipeline.wire import dumps
from sinks.common.consumer import Consumed, Unstorable
from sinks.invoices.rows import Row, _explain, _object, _text, _uuid

TRIGGERED_ALERT_COLUMNS = (
    "webhook_id", "lago_alert_id", "alert_code", "alert_name", "alert_type",
    "external_subscription_id", "external_customer_id", "billable_metric_code",
    "previous_value", "current_value", "crossed_thresholds", "triggered_at", "body", "event_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TriggeredAlertRow:
    triggered_alert: Row


def alert_rows_for(item: Consumed) -> TriggeredAlertRow | None:
    """The row an `alert.triggered` output adds (None: other webhook types)."""
    if item.record.webhook_type != "alert.triggered":
        return None
    try:
        return triggered_alert_row(item)
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        raise Unstorable(f"alert.triggered {item.record.id}: {_explain(error)}") from None


def triggered_alert_row(item: Consumed) -> TriggeredAlertRow:
    alert = _object(item.record.body, "triggered_alert")
    crossed = alert["crossed_thresholds"]
    if not isinstance(crossed, list) or not crossed:
        raise TypeError("crossed_thresholds is not a non-empty array")
    optional = {key: alert.get(key) for key in ("alert_name", "billable_metric_code")}
    if any(value is not None and not isinstance(value, str) for value in optional.values()):
        raise TypeError("alert_name and billable_metric_code must be strings or null")
    row: Row = {
        "webhook_id": item.record.id,
        "lago_alert_id": _uuid(alert, "lago_alert_id"),
        "alert_code": _text(alert, "alert_code"),
        "alert_type": _text(alert, "alert_type"),
        "external_subscription_id": _text(alert, "external_subscription_id"),
        "external_customer_id": alert.get("external_customer_id"),
        "previous_value": _decimal(alert, "previous_value"),
        "current_value": _decimal(alert, "current_value"),
        "crossed_thresholds": dumps(crossed),
        "triggered_at": datetime.fromisoformat(_text(alert, "triggered_at")),
        "body": dumps(alert),
        "event_at": item.event_at,
        **optional,
    }
    return TriggeredAlertRow(row)


def _decimal(parent: dict[str, Any], key: str) -> Decimal:
    try:
        value = Decimal(_text(parent, key))
    except ArithmeticError:
        raise ValueError(f"{key} is not a decimal string") from None
    if not value.is_finite():
        raise ValueError(f"{key} is not a finite decimal")
    return value
