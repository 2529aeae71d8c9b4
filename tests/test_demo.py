"""`salespulse demo --duration N`: all eight KPIs non-zero, exit 0, nothing left running."""

from __future__ import annotations

import re
import subprocess
import sys

from salespulse.streams.tools.broker import port_open
from tests.conftest import REPO


def row(table: str, label: str) -> list[str]:
    for line in table.splitlines():
        if line.strip("│ ").startswith(label):
            return [c.strip() for c in line.split("│")[2:-1]]
    raise AssertionError(f"no row {label!r} in:\n{table}")


def test_demo_shows_all_eight_kpis_and_stops_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "demo", "--duration", "25", "--backfill", "5000"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "/metrics" in out and "/kpis" in out and "/events" in out and "curl -X POST" in out
    table = out[out.rindex("SalesPulse KPIs") :]

    def nonzero(cells: list[str]) -> bool:
        return any(re.search(r"[1-9]", c) for c in cells)

    for label in (
        "Leads",  # 1
        "Customers acquired",  # 2
        "Deals won",  # 3
        "Customers engaged",  # 5
        "eNPS",  # 6
        "Expansion rate",  # 7
        "NPS",  # 8
    ):
        assert nonzero(row(table, label)), (label, table)
    assert re.search(r"competitor prices [1-9]", table), table  # 4
    assert "demo stopped; no process left running" in out
    # Nothing the demo started is still listening: not the broker, not the worker.
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)]
    assert ports
    assert not [p for p in set(ports) if port_open("127.0.0.1", p)], "the demo left processes behind"
