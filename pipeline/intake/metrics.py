"""Every metric the intake exports (Prometheus, `tollgate_` prefix, unit suffixes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("tollgate_intake_messages_total", "usage-events messages packed into batches.")
BATCHES = Counter(
    "tollgate_intake_batches_total", "Usage batches acknowledged by the broker (usage-batches)."
)
BATCH_MESSAGES = Histogram(
    "tollgate_intake_batch_messages",
    "Messages per usage batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
BATCH_BYTES = Histogram(
    "tollgate_intake_batch_bytes",
    "Framed bytes per usage batch.",
    buckets=(1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20),
)
LINGER = Histogram(
    "tollgate_intake_linger_seconds",
    "A batch's first message read → the batch acknowledged by the broker.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAG = Gauge(
    "tollgate_intake_lag_messages",
    "usage-events messages not yet read by this intake, per partition.",
    ["partition"],
)
