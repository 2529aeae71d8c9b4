"""A small `salespulse bench`: the benchmark's own exactness check must pass (speed is not judged)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from salespulse.streams.tools.bench import RIAL_DEALS, _corpus, run_bench, run_memory


@pytest.mark.slow
def test_bench_on_20000_events_reports_exact_kpis_and_every_measurement() -> None:
    result = run_bench(
        events=20_000,
        naive_events=2_000,
        latency_rate=1_000,
        latency_seconds=3,
        customers=2_000,
        log=lambda message: None,
    )
    assert result.exact, result.mismatches
    assert result.events == 20_000
    assert result.events_per_s > 0 and result.raw_events_per_s > 0 and result.naive_events_per_s > 0
    assert result.latency_p99_s is not None and result.latency_p50_s is not None
    assert result.latency_p50_s <= result.latency_p99_s
    assert result.peak_rss_mb > 0
    # The no-KPI reference must have applied and dropped what the worker did: a mismatch
    # (so not exact) otherwise.
    assert result.no_kpis_events_per_s > 0 and result.no_kpis_vs_raw > 0


def test_a_corpus_read_from_a_file_is_the_generated_one_event_for_event(tmp_path: Path) -> None:
    generated = _corpus(3_000, 7, 500)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for _, _, _, event in generated))
    assert _corpus(3_000, 1, 1, path) == generated
    assert _corpus(1_000, 1, 1, path) == generated[:1_000]


@pytest.mark.slow
def test_memory_run_on_3000_customers_restarts_exact_from_the_changelog_and_from_the_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fetches smaller than the 7,000 events (an activity and an answer a customer, and 1,000
    # rial deals), so each worker applies them over several; the result names the fetch size
    # its workers inherited.
    monkeypatch.setenv("SALESPULSE_FETCH_RECORDS", "2500")
    result = run_memory(customers=3_000, log=lambda message: None)
    assert result.fetch_records == 2_500
    assert result.exact_after_restart, result.detail
    assert result.exact_after_snapshot_restart, result.detail
    assert result.events == 2 * 3_000 + RIAL_DEALS
    assert "rials won over 30 days" in result.detail  # exact after both restarts, past 2**53
    assert (
        result.peak_rss_mb > 0 and result.restart_peak_rss_mb > 0 and result.restart_snapshot_peak_rss_mb > 0
    )
    assert (
        result.restart_snapshot_seconds > 0 and result.restart_seconds > 0 and result.empty_start_seconds > 0
    )
