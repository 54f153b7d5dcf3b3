"""The API's metrics (exported with the worker's, on its /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "tollgate_api_requests_total",
    "HTTP API requests answered, by route (its path template) and status code.",
    ["route", "status"],
)
SECONDS = Histogram(
    "tollgate_api_request_seconds",
    "Time from a request's arrival to its answer (forwarding included), by route.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
