"""The forecast with real workers on the embedded broker: every number equals the reference.

The corpus of tests/forecast_corpus.py (out-of-order and duplicated updates, slips across
period boundaries, reassignments, team changes mid-period, closes keyed by customers and so
landing on other partitions than their opportunities) goes through ``salespulse worker``
processes. ``GET /forecast`` of one worker SIGKILLed mid-stream and restarted, and the merge
of two workers' shares by ``salespulse forecast``, must equal tests/forecast_reference.py for
the current period, a past ``as_of``, a closed period's daily accuracy and waterfalls between
two days; one test per calendar. The waterfall adds up for every rep and period.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from salespulse.streams.endpoints.cluster import WorkerUnreachable
from salespulse.streams.endpoints.forecast_view import cluster_forecast
from tests.conftest import REPO, TOKEN, WorkerProcess
from tests.forecast_corpus import corpus, targets
from tests.forecast_reference import Model, differences
from tests.test_faults import ALL, chunked, send_all, try_json, try_kpis, wait_applied, wait_for
from tests.test_forecast_engine import CALENDARS, PERIODS, expected_view, queries

MOVES = ("created", "pulled_in", "pushed_out", "increased", "decreased", "won", "lost")
SIGNS = (1, 1, -1, 1, -1, -1, -1)


def forecast(worker: WorkerProcess, q: dict[str, str]) -> dict[str, Any] | None:
    """One worker's share, or None while it restarts."""
    query = "&".join(f"{k}={v}" for k, v in q.items())
    answer = try_json(f"http://{worker.address}/forecast?{query}", timeout=10.0)
    if answer is None or answer[0] != 200:
        return None
    return dict(answer[1])


def cli_forecast(workers: list[WorkerProcess], q: dict[str, str]) -> dict[str, Any]:
    """``salespulse forecast --json``: every worker's share, merged."""
    return dict(json.loads(cli(workers, q, "--json")))


def cli(workers: list[WorkerProcess], q: dict[str, str], *extra: str) -> str:
    """What ``salespulse forecast`` prints for the query."""
    options = {"period": "--period", "by": "--by", "as_of": "--as-of", "from": "--from", "to": "--to"}
    args = [arg for name, value in q.items() for arg in (options[name], value)]
    done = subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "forecast", *extra, *args],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
        env={
            "SALESPULSE_WORKERS": ",".join(w.address for w in workers),
            "SALESPULSE_INGEST_TOKEN": TOKEN,
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "220",  # a terminal wide enough for every column
        },
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def mismatches(answer: dict[str, Any] | None, model: Model, q: dict[str, str]) -> list[str]:
    if answer is None:
        return ["no answer"]
    return differences(answer, expected_view(model, q))


def assert_all_match(read: Any, model: Model, calendar: str, context: str, *workers: WorkerProcess) -> None:
    """Wait until every query's answer equals the reference (forwarded closes may still be on
    their way), then show what differs if one never does."""

    def problems() -> list[str]:
        return [f"{q}: {p}" for q in queries(calendar) for p in mismatches(read(q), model, q)[:5]]

    try:
        wait_for(lambda: not problems(), f"{context}: /forecast equal to the reference", *workers, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(problems()[:30])) from None


def assert_waterfalls_add_up(view: dict[str, Any], context: str) -> int:
    """start + created + pulled in - pushed out + increased - decreased - won - lost = end,
    on every row and on the view's per-currency waterfall; how many waterfalls there were."""
    falls = [
        (f"row {row.get('rep', '')} {row['unit']} {row['currency']}", row["waterfall"])
        for row in view["rows"]
    ]
    top = view["waterfall"]
    falls += [(f"currency {c}", {m: top[m][c] for m in top}) for c in top["start"]]
    for label, fall in falls:
        total = fall["start"] + sum(sign * fall[m] for m, sign in zip(MOVES, SIGNS, strict=True))
        assert all(fall[m] >= 0 for m in MOVES), f"{context} {label}: a negative movement {fall}"
        assert math.isclose(total, fall["end"], abs_tol=1e-6), f"{context} {label}: {fall} adds up to {total}"
    return len(falls)


def every_period(calendar: str) -> list[str]:
    """The fiscal year of the current period, its quarters and months, and the closed quarter."""
    year = PERIODS[calendar][2]
    quarters = [f"{year}-Q{q}" for q in range(1, 5)]
    months = [f"{year}-{m:02d}" for m in range(1, 13)]
    return [year, *quarters, *months, PERIODS[calendar][1]]


def assert_every_period_moved(checked: dict[str, int], calendar: str) -> None:
    """The corpus's pipeline spans the months around now: those periods had waterfalls."""
    year, closed = PERIODS[calendar][2], PERIODS[calendar][1]
    for period in (year, closed, PERIODS[calendar][0], PERIODS[calendar][3]):
        assert checked[period] > 5, f"{period}: only {checked[period]} waterfalls"
    assert sum(1 for n in checked.values() if n) >= 6, checked


def setup(tmp_path: Path, calendar: str) -> tuple[list[dict[str, Any]], Model, dict[str, str]]:
    events = corpus(7)
    path = tmp_path / "targets.yml"
    path.write_text(yaml.safe_dump(targets(calendar)))
    env = {"SALESPULSE_TARGETS": str(path), "SALESPULSE_FISCAL_CALENDAR": calendar}
    return events, Model(events, targets(calendar), CALENDARS[calendar]), env


@pytest.mark.slow
def test_a_worker_sigkilled_mid_stream_and_restarted_answers_every_number_of_the_reference(
    spawn_worker: Any, producer: Any, tmp_path: Path
) -> None:
    calendar = "jalali"
    events, model, env = setup(tmp_path, calendar)
    first, second, third = chunked(events, len(events) // 3 + 1)
    worker = spawn_worker("forecast", **env)
    worker.wait_ready()
    send_all(producer, first)
    wait_applied(worker, len(first))
    send_all(producer, second)
    worker.kill()  # while it applies the second third and forwards its closes
    worker = spawn_worker("forecast", **env)  # same data dir: recovers from the changelog
    worker.wait_ready()
    send_all(producer, third)
    wait_applied(worker, len(events))
    assert_all_match(lambda q: forecast(worker, q), model, calendar, "after SIGKILL and restart", worker)
    checked = {}
    for period in every_period(calendar):
        view = forecast(worker, {"period": period, "by": "rep"})
        assert view is not None and view["calendar"] == calendar
        checked[period] = assert_waterfalls_add_up(view, period)
    assert_every_period_moved(checked, calendar)
    # The merged view of one worker is its share, and the terminal table names the period
    # and shows how the pipeline moved.
    q = {"period": PERIODS[calendar][0], "by": "team"}
    assert not mismatches(cli_forecast([worker], q), model, q)
    table = cli([worker], q)
    assert f"Forecast {PERIODS[calendar][0]}" in table and "pipeline moved:" in table, table
    assert all(team in table for team in ("emea", "apac")), table


def test_two_workers_shares_merged_by_the_cli_equal_the_reference(
    spawn_worker: Any, producer: Any, tmp_path: Path
) -> None:
    calendar = "gregorian"
    events, model, env = setup(tmp_path, calendar)
    a, b = spawn_worker("fc-a", **env), spawn_worker("fc-b", **env)
    a.wait_ready()
    b.wait_ready()

    def split() -> bool:
        ka, kb = try_kpis(a), try_kpis(b)
        return bool(ka and kb and ka["partitions"] and sorted(ka["partitions"] + kb["partitions"]) == ALL)

    wait_for(split, "two workers splitting the 4 partitions", a, b)
    send_all(producer, events)

    def merged(q: dict[str, str]) -> dict[str, Any] | None:
        try:
            return cluster_forecast([a.address, b.address], q, TOKEN)
        except WorkerUnreachable:  # a worker still recovering its partitions
            return None

    assert_all_match(merged, model, calendar, "two workers merged", a, b)
    for q in queries(calendar)[4:7]:  # a past day and a closed period, through the terminal
        assert not mismatches(cli_forecast([a, b], q), model, q), q
    current = PERIODS[calendar][0]
    shares = [forecast(w, {"period": current, "by": "rep"}) for w in (a, b)]
    assert all(s is not None and s["rows"] for s in shares), "each worker holds a part of the pipeline"
    checked = {}
    for period in every_period(calendar):
        view = merged({"period": period, "by": "rep"})
        assert view is not None and view["workers"] == 2 and view["partitions"] == ALL
        checked[period] = assert_waterfalls_add_up(view, period)
    assert_every_period_moved(checked, calendar)
