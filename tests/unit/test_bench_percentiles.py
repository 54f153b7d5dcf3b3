"""The figures `python -m benchmarks pipeline` computes: quantiles from histogram buckets, and the
sustained rate from committed offsets sampled over time."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_pipeline import Sample, middle_window
from pipeline.clients.metrics_text import bucket_deltas, histogram_quantile

INF = math.inf
BUCKETS = [(0.01, 10.0), (0.05, 60.0), (0.1, 90.0), (0.5, 100.0), (INF, 100.0)]


def test_the_quantile_is_interpolated_inside_its_bucket():
    # rank 50 falls in (0.01, 0.05], which holds ranks 10..60: 40/50 of the way.
    assert histogram_quantile(BUCKETS, 0.5) == pytest.approx(0.01 + 0.04 * 40 / 50)
    # rank 99 falls in (0.1, 0.5], which holds ranks 90..100.
    assert histogram_quantile(BUCKETS, 0.99) == pytest.approx(0.1 + 0.4 * 9 / 10)


def test_the_first_bucket_starts_at_zero():
    assert histogram_quantile(BUCKETS, 0.05) == pytest.approx(0.005)


def test_a_rank_in_the_inf_bucket_gives_the_highest_finite_bound():
    buckets = [(0.1, 50.0), (1.0, 90.0), (INF, 100.0)]
    assert histogram_quantile(buckets, 0.99) == 1.0


def test_empty_buckets_before_the_rank_are_skipped():
    buckets = [(0.01, 0.0), (0.05, 0.0), (0.1, 4.0), (INF, 4.0)]
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.05 + 0.05 * 2 / 4)


def test_no_observation_gives_none():
    assert histogram_quantile([(0.1, 0.0), (INF, 0.0)], 0.5) is None
    assert histogram_quantile([], 0.5) is None


def test_unobserved_values_count_in_the_rank_and_lie_above_the_rest():
    # 100 observed + 100 not processed: the median is the largest observed, p99 unknown.
    assert histogram_quantile(BUCKETS, 0.5, unobserved=100) == 0.5
    assert histogram_quantile(BUCKETS, 0.99, unobserved=100) is None
    assert histogram_quantile(BUCKETS, 0.25, unobserved=100) == pytest.approx(0.01 + 0.04 * 40 / 50)


def test_deltas_subtract_bucket_by_bucket():
    before = [(0.1, 5.0), (1.0, 8.0), (INF, 8.0)]
    after = [(0.1, 15.0), (1.0, 28.0), (INF, 30.0)]
    assert bucket_deltas(before, after) == [(0.1, 10.0), (1.0, 20.0), (INF, 22.0)]


def test_the_rate_leaves_out_start_up_and_is_interpolated_between_commits():
    # Nothing for 5 s (start-up), then 1,000 messages committed every second from t=6.
    samples = [Sample(t / 2, 0, (t / 2, t / 4)) for t in range(12)]  # t = 0 .. 5.5
    samples += [Sample(6.0 + s, 1000 * (s + 1), (6.0 + s, 3.0 + s / 2)) for s in range(10)]
    window = middle_window(samples, 10_000)
    assert window is not None
    # 10% = 1,000 (first commit, t=6) .. 90% = 9,000 (t=14).
    assert (window.start, window.end) == pytest.approx((6.0, 14.0))
    assert window.rate == pytest.approx(1000.0)
    assert window.cpu_per_message(0) == pytest.approx(8.0 / 8000)
    assert window.cores(0) == pytest.approx(1.0)
    assert window.cores(1) == pytest.approx(0.5)  # a second process followed alongside


def test_a_bound_before_the_first_commit_moves_up_to_it():
    samples = [Sample(0.0, 0, (None,)), Sample(1.0, 3000, (None,)), Sample(2.0, 6000, (None,))]
    samples += [Sample(3.0, 10_000, (None,))]
    window = middle_window(samples, 10_000)
    assert window is not None
    assert (window.first, window.last) == (3000, 9000)
    assert window.start == pytest.approx(1.0)
    assert window.end == pytest.approx(2.75)
    assert window.cpu == (None,) and window.cpu_per_message() is None


def test_a_single_commit_gives_no_rate():
    assert middle_window([Sample(0.0, 0, (0.0,)), Sample(1.0, 500, (1.0,))], 500) is None
