"""Reading a tollgate process's Prometheus text (/metrics): samples, and quantiles of a
histogram between two readings — what the benchmarks and `tollgate demo` show live."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Sequence

Metrics = dict[str, list[tuple[str, dict[str, str], float]]]


def scrape(port: int, host: str = "127.0.0.1") -> Metrics:
    """Every sample of the process's /metrics, by family name."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def counter(metrics: Metrics, name: str) -> float:
    """The value of the sample `name` summed over its labels (a counter, a histogram's sum)."""
    family = name.removesuffix("_total").removesuffix("_sum").removesuffix("_count")
    return float(sum(value for sample, _, value in metrics.get(family, []) if sample == name))


def histogram_buckets(metrics: Metrics, name: str) -> list[tuple[float, float]]:
    buckets = [
        (float(labels["le"]), value)
        for sample, labels, value in metrics.get(name, [])
        if sample == f"{name}_bucket"
    ]
    return sorted(buckets)


def bucket_deltas(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """What was observed between two scrapes of the same histogram."""
    counts = dict(before)
    return [(bound, count - counts.get(bound, 0.0)) for bound, count in after]


def histogram_quantile(
    buckets: Sequence[tuple[float, float]], q: float, *, unobserved: float = 0
) -> float | None:
    """The `q` quantile from cumulative histogram buckets `(upper bound, count)`, sorted by
    bound and ending with +Inf, interpolated linearly inside the bucket the rank falls in (as
    Prometheus's `histogram_quantile`: the first bucket starts at 0, a rank in the +Inf bucket
    gives the highest finite bound).

    `unobserved` values are known to lie above every observed one (events not processed yet):
    they count in the rank, and a rank among them gives None. None too for no values at all."""
    if not 0 <= q <= 1:
        raise ValueError("q must be from 0 to 1")
    observed = buckets[-1][1] if buckets else 0.0
    if observed + unobserved <= 0:
        return None
    rank = q * (observed + unobserved)
    if rank > observed or observed <= 0:
        return None
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def mean(metrics: Metrics, histogram: str) -> float | None:
    count = counter(metrics, f"{histogram}_count")
    return counter(metrics, f"{histogram}_sum") / count if count else None
