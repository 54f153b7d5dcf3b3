"""Every Prometheus metric of the sinks, with its help text: the catalogue.

Each sink process serves them on TOLLGATE_METRICS_PORT (`/metrics`). Label `sink` is
`invoices` or `webhooks`; `table` names the PostgreSQL table written.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

# Seconds from an output's Kafka timestamp to its commit or delivery: sub-second when all is
# well, minutes to hours while a receiver is down and the retry schedule runs.
_LATENCY_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000, 86400,
)  # fmt: skip

OUTPUTS_CONSUMED: Final = Counter(
    "tollgate_sink_outputs_consumed_total",
    "Messages read from the outputs topic by a sink, by webhook type (malformed ones included).",
    ["sink", "webhook_type"],
)
ROWS_WRITTEN: Final = Counter(
    "tollgate_sink_rows_written_total",
    "Rows a sink inserted into PostgreSQL, by table.",
    ["sink", "table"],
)
DUPLICATES_SKIPPED: Final = Counter(
    "tollgate_sink_duplicates_skipped_total",
    "Rows a sink did not insert because the same key was already stored (a redelivered "
    "output), by table.",
    ["sink", "table"],
)
DEAD_LETTERS: Final = Counter(
    "tollgate_sink_dead_letters_total",
    "Messages a sink could not use and wrote to the dead-letter topic, by reason.",
    ["sink", "reason"],
)
BATCHES: Final = Counter(
    "tollgate_sink_batches_total",
    "Transactions a sink committed (rows and stored offsets together).",
    ["sink"],
)
BATCH_SECONDS: Final = Histogram(
    "tollgate_sink_batch_seconds",
    "Seconds one batch transaction took, retries after a lost connection included.",
    ["sink"],
)
DB_RETRIES: Final = Counter(
    "tollgate_sink_db_retries_total",
    "Times a sink lost PostgreSQL and retried the same transaction after a backoff.",
    ["sink"],
)
COMMIT_LATENCY: Final = Histogram(
    "tollgate_sink_commit_latency_seconds",
    "Seconds from an output's Kafka timestamp to the commit of its rows (invoice stored, "
    "webhook delivery queued).",
    ["sink"],
    buckets=_LATENCY_BUCKETS,
)
DELIVERY_ATTEMPTS: Final = Counter(
    "tollgate_webhook_delivery_attempts_total",
    "Webhook POSTs, by outcome (delivered, retrying, failed: no attempt left) and status "
    "class (2xx, 3xx, 4xx, 5xx, timeout, connection_error).",
    ["outcome", "status_class"],
)
DELIVERY_LATENCY: Final = Histogram(
    "tollgate_webhook_delivery_latency_seconds",
    "Seconds from an output's Kafka timestamp to its successful webhook delivery.",
    buckets=_LATENCY_BUCKETS,
)
OUTBOX_DEPTH: Final = Gauge(
    "tollgate_webhook_outbox_depth",
    "Webhook deliveries pending in the outbox (due now or waiting for a retry).",
)
OLDEST_PENDING_AGE: Final = Gauge(
    "tollgate_webhook_oldest_pending_age_seconds",
    "Age of the oldest pending webhook delivery (0 when none is pending).",
)
FAILED_DELIVERIES: Final = Gauge(
    "tollgate_webhook_failed_deliveries",
    "Webhook deliveries that used every attempt of the retry schedule (`tollgate webhooks "
    "retry` puts them back).",
)
CONSUMER_LAG: Final = Gauge(
    "tollgate_sink_consumer_lag_messages",
    "Messages of the outputs topic behind its high watermark after the last batch, by partition.",
    ["sink", "partition"],
)
