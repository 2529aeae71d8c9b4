"""``salespulse report --cron``: the digest at fixed UTC times, beside ``--every``.

- The next fire times of an expression are those cron itself would pick, strictly after the
  moment asked about, in UTC.
- A bad expression is refused before anything runs, saying what is wrong with it.
- The schedule runs at those times, not a period after it started.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from salespulse.streams.report.cron import CronSchedule
from salespulse.streams.report.errors import ReportError
from salespulse.streams.report.schedule import CRON_NAP, run_schedule
from salespulse.streams.tools.broker import free_port
from tests.conftest import FIXED_NOW, REPO

START = FIXED_NOW.timestamp()  # Thursday 26 November 2026, 12:00 UTC


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


def fire_times(expression: str, after: float, count: int) -> list[float]:
    schedule, times = CronSchedule(expression), [after]
    for _ in range(count):
        times.append(schedule.next_after(times[-1]))
    return times[1:]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 8 * * mon", [utc(2026, 11, 30, 8), utc(2026, 12, 7, 8), utc(2026, 12, 14, 8)]),
        ("30 7 * * 1-5", [utc(2026, 11, 27, 7, 30), utc(2026, 11, 30, 7, 30), utc(2026, 12, 1, 7, 30)]),
        ("0 */6 * * *", [utc(2026, 11, 26, 18), utc(2026, 11, 27, 0), utc(2026, 11, 27, 6)]),
        ("0 0 1 * *", [utc(2026, 12, 1), utc(2027, 1, 1), utc(2027, 2, 1)]),
        ("@daily", [utc(2026, 11, 27), utc(2026, 11, 28), utc(2026, 11, 29)]),
        ("0 12 * * *", [utc(2026, 11, 27, 12), utc(2026, 11, 28, 12), utc(2026, 11, 29, 12)]),  # not now
        ("0 9 29 2 *", [utc(2028, 2, 29, 9), utc(2032, 2, 29, 9), utc(2036, 2, 29, 9)]),
    ],
)
def test_the_next_fire_times_are_the_ones_cron_picks_in_utc(expression: str, expected: list[float]) -> None:
    assert fire_times(expression, START, 3) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "is not a cron expression: [61 * * * *] is not acceptable, out of range"),
        ("0 9 * * 8", "is not a cron expression: [0 9 * * 8] is not acceptable, out of range"),
        ("* * *", "give five fields, minute hour day-of-month month day-of-week"),
        ("*/5 * * * * 30", "give five fields"),  # croniter would read a seconds column
        ("every monday", "give five fields"),
        ("@fortnightly", "or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
        ("0 0 30 2 *", "names no date that exists (it never fires)"),
        ("", "give five fields"),
    ],
)
def test_a_bad_expression_is_refused_saying_what_is_wrong(expression: str, reason: str) -> None:
    with pytest.raises(ReportError) as caught:
        CronSchedule(expression)
    assert str(caught.value).startswith(f"--cron {expression!r} "), caught.value
    assert reason in str(caught.value)


def test_the_cli_refuses_a_bad_expression_and_both_schedules_at_once_before_building(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "salespulse.streams", "report", "--out", str(tmp_path / "out")]
    workers = ["--workers", f"127.0.0.1:{free_port()}"]
    for extra, message in (
        (["--cron", "0 25 * * *"], "Error: --cron '0 25 * * *' is not a cron expression: "),
        (["--cron", "0 8 * * mon", "--every", "7d"], "Error: give --every or --cron, not both"),
    ):
        done = subprocess.run(
            [*command, *workers, *extra], capture_output=True, text=True, cwd=REPO, timeout=60
        )
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "out").exists()  # refused before anything was built


def test_the_schedule_runs_at_the_fire_times_and_not_a_period_after_its_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [START]
    naps: list[tuple[float, int]] = []  # (the clock when a nap starts, runs so far)
    lengths: list[float] = []

    def runs() -> int:
        return sum(r.getMessage().startswith("digest run") for r in caplog.records)

    def sleep(seconds: float) -> None:
        naps.append((now[0], runs()))
        lengths.append(seconds)
        now[0] += seconds

    down = f"127.0.0.1:{free_port()}"  # each run fails to build and is logged, and the loop goes on
    result = run_schedule(
        CronSchedule("0 8 * * mon,thu"), [down], tmp_path, max_runs=3, sleep=sleep, clock=lambda: now[0]
    )

    fires = [utc(2026, 11, 30, 8), utc(2026, 12, 3, 8), utc(2026, 12, 7, 8)]
    assert result.runs == 3 and len(result.failures) == 3
    # Run k happened at the clock the first nap after it starts from; the last run ends the loop.
    ran_at = [next(at for at, done in naps if done == k) for k in (1, 2)] + [now[0]]
    assert ran_at == fires
    assert all(0 < n <= CRON_NAP for n in lengths)  # a jump of the wall clock is seen within a nap


def test_a_schedule_stopped_while_waiting_for_its_time_builds_nothing(tmp_path: Path) -> None:
    stop = threading.Event()
    now = [START]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] - START > 3600:
            stop.set()  # SIGTERM an hour into a wait of four days

    result = run_schedule(
        CronSchedule("0 8 * * mon"), ["127.0.0.1:1"], tmp_path, sleep=sleep, stop=stop, clock=lambda: now[0]
    )
    assert result.runs == 0 and not list(tmp_path.iterdir())
