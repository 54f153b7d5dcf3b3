"""Every metric the worker exports (Prometheus, `tollgate_` prefix, unit suffixes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter(
    "tollgate_worker_messages_total",
    "Messages read from the usage-events topic, by kind.",
    ["kind"],
)
ACCEPTED = Counter("tollgate_worker_events_accepted_total", "Usage events accepted and billed.")
DUPLICATES = Counter(
    "tollgate_worker_events_deduplicated_total",
    "Usage events dropped as duplicates of an accepted (subscription, transaction id).",
)
UNCHARGED = Counter(
    "tollgate_worker_events_uncharged_total",
    "Accepted events on a metric the subscription's plan does not charge (bill nothing).",
)
REDELIVERED = Counter(
    "tollgate_worker_messages_redelivered_total",
    "Messages recognised as already applied (redelivered after a restart) and skipped.",
)
DEAD_LETTERS = Counter(
    "tollgate_worker_dead_letters_total", "Inputs dead-lettered, by reason.", ["reason"]
)
INVOICES = Counter("tollgate_worker_invoices_total", "Invoices emitted, by type.", ["invoice_type"])
THRESHOLDS = Counter(
    "tollgate_worker_thresholds_crossed_total", "Usage thresholds crossed (webhooks emitted)."
)
ALERTS = Counter(
    "tollgate_worker_alerts_triggered_total", "Usage alerts triggered (alert.triggered webhooks)."
)
ACCESS_CHANGES = Counter(
    "tollgate_worker_access_changes_total",
    "Access decisions that changed (subscription.access_changed webhooks), by the new reason.",
    ["reason"],
)
CREDIT_NOTES = Counter("tollgate_worker_credit_notes_total", "Credit notes emitted.")
BATCH_SIZE = Histogram(
    "tollgate_worker_batch_messages",
    "Source messages per usage batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
LATENCY = Histogram(
    "tollgate_worker_latency_seconds",
    "Record timestamp → the record applied and its outputs acknowledged by the broker.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LAG = Gauge(
    "tollgate_worker_consumer_lag_messages",
    "Usage batches behind the partition's high watermark after the last one applied.",
    ["partition"],
)
STATES_WRITTEN = Counter(
    "tollgate_worker_states_written_total",
    "Subscription states written to the changelog (at most one per subscription and flush).",
)
CHANGELOG_WRITES = Counter(
    "tollgate_worker_changelog_writes_total",
    "Records written to the state changelog: states, window records, definitions, heads.",
)
FLUSH_SECONDS = Histogram(
    "tollgate_worker_flush_seconds",
    "Time to write one flush's changed state, every phase acknowledged.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FLUSH_RECORDS = Histogram(
    "tollgate_worker_flush_records",
    "Changelog records per flush.",
    buckets=(0, 1, 10, 50, 100, 500, 1000, 5000, 20000, 50000),
)
APPLIED_OFFSET = Gauge(
    "tollgate_worker_applied_offset",
    "Last usage-events offset applied, per source partition (outputs acknowledged).",
    ["partition"],
)
