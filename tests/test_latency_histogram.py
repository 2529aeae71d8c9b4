"""The batch-observed latency histogram exports what prometheus_client's Histogram would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from salespulse.streams.endpoints.metrics import LATENCY_BUCKETS, LatencyHistogram


def test_batch_observation_matches_one_observe_per_event() -> None:
    rng = random.Random(11)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histogram = LatencyHistogram()
    ours.register(histogram)
    reference = Histogram(
        LatencyHistogram.NAME, LatencyHistogram.HELP, buckets=LATENCY_BUCKETS, registry=theirs
    )
    for _ in range(200):
        applied = 1_800_000_000_000.0 + rng.randrange(10**6)
        # Few distinct timestamps per batch, exact bucket bounds, and clock skew (negative).
        stamps = [int(applied) - rng.choice([0, 5, 10, 250, 1000, 7000, 90_000, -40]) for _ in range(50)]
        histogram.observe(stamps, applied)
        for ts in stamps:
            reference.observe(max(0.0, applied - ts) / 1000.0)
    name = LatencyHistogram.NAME
    for le in [*LATENCY_BUCKETS, float("inf")]:
        labels = {"le": "+Inf" if le == float("inf") else str(le)}
        assert ours.get_sample_value(f"{name}_bucket", labels) == theirs.get_sample_value(
            f"{name}_bucket", labels
        )
    assert ours.get_sample_value(f"{name}_count") == theirs.get_sample_value(f"{name}_count") == 10_000
    ours_sum, theirs_sum = ours.get_sample_value(f"{name}_sum"), theirs.get_sample_value(f"{name}_sum")
    assert ours_sum is not None and theirs_sum is not None
    assert abs(ours_sum - theirs_sum) < 1e-6 * theirs_sum
