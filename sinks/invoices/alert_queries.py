"""`tollgate alerts list SUBSCRIPTION`: a subscription's usage alerts as the sink stored them:
per alert that has fired, its type and metric, how often it fired, every threshold it has
crossed and its last value (the table is `render.alerts_table`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sinks.common.db import Connection

_QUERY = """
SELECT alert_code, alert_type, billable_metric_code, count(*),
       max(triggered_at),
       (array_agg(current_value ORDER BY triggered_at DESC, current_value DESC))[1],
       jsonb_agg(crossed_thresholds ORDER BY triggered_at, current_value)
  FROM triggered_alerts
 WHERE external_subscription_id = %s
 GROUP BY lago_alert_id, alert_code, alert_type, billable_metric_code
 ORDER BY min(triggered_at), alert_code
"""


@dataclass(frozen=True, slots=True)
class AlertSummary:
    code: str
    alert_type: str
    billable_metric_code: str | None
    triggers: int
    last_triggered_at: datetime
    last_value: Decimal
    crossed: list[dict[str, Any]]  # every crossed threshold, in the order they were crossed


def list_alerts(conn: Connection, subscription: str) -> list[AlertSummary]:
    rows = conn.execute(_QUERY, (subscription,)).fetchall()
    return [
        AlertSummary(code, kind, metric, count, last_at, value, [t for ts in batches for t in ts])
        for code, kind, metric, count, last_at, value, batches in rows
    ]
