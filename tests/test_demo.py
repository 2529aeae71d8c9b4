"""`salespulse demo --duration N`: all eight KPIs non-zero, exit 0, nothing left running; its
printed `curl` line and `salespulse kpis` work with no setting (the demo's token is found)."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import orjson
import pytest
import yaml

from salespulse.streams.tools.broker import port_open
from salespulse.streams.tools.demo import HISTORY_DAYS, _demo_targets
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW

#: A user's shell: no SALESPULSE_* setting at all.
ENV = {"COLUMNS": "160", "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def row(table: str, label: str) -> list[str]:
    for line in table.splitlines():
        if line.strip("│ ").startswith(label):
            return [c.strip() for c in line.split("│")[2:-1]]
    raise AssertionError(f"no row {label!r} in:\n{table}")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salespulse.streams", *args], capture_output=True, text=True, cwd=cwd, env=ENV
    )


@pytest.mark.slow
def test_demo_shows_all_eight_kpis_its_curl_line_and_kpis_work_and_it_stops_cleanly(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "salespulse.streams", "demo", "--duration", "30", "--backfill", "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=ENV,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 150
        while not [line for line in lines if line.startswith("curl ")] and time.monotonic() < deadline:
            assert demo.poll() is None, "".join(lines) + demo.stderr.read()
            time.sleep(0.2)
        (curl,) = [line.strip() for line in lines if line.startswith("curl ")]
        assert "-H 'Authorization: Bearer " in curl
        posted = subprocess.run(
            [*shlex.split(curl), "-sS", "-w", "\n%{http_code}"], capture_output=True, text=True
        )
        body, _, code = posted.stdout.rpartition("\n")
        assert code == "202" and orjson.loads(body) == {"accepted": 1}, posted.stdout + posted.stderr
        address = curl.rsplit("http://", 1)[1].removesuffix("/events")
        shown = run_cli("kpis", "--workers", address, "--json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert orjson.loads(shown.stdout)["partitions"] == [0, 1, 2, 3]
        assert demo.wait(120) == 0, "".join(lines) + demo.stderr.read()
    finally:
        if demo.poll() is None:
            demo.kill()
    reader.join(10)
    out = "".join(lines)
    assert "/metrics" in out and "/kpis" in out and "/events" in out
    assert "any user name and the token as password" in out
    token = curl.split("Bearer ", 1)[1].split("'", 1)[0]
    stored = tmp_path / "data" / "ingest-token"
    assert stored.read_text().strip() == token, "the demo's token is where the CLI looks"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert not [k for k in os.listdir(tmp_path / "data") if k != "ingest-token"], "no state left in data/"
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
    assert re.search(r"Forecast \d{4}-Q[1-4] \(", table), table  # this quarter's, by team
    assert re.search(r"inside .* (EUR|USD|GBP) .*%", table), table  # a quota and its attainment
    assert "demo stopped; no process left running" in out
    # Nothing the demo started is still listening: not the broker, not the worker.
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)]
    assert ports
    assert not [p for p in set(ports) if port_open("127.0.0.1", p)], "the demo left processes behind"


def test_demo_quotas_are_the_historys_run_rate_plus_a_tenth_for_this_quarter_and_the_next(
    tmp_path: Path,
) -> None:
    config = GeneratorConfig(seed=1, now=FIXED_NOW, recent_share=0.0, spread_days=HISTORY_DAYS, steady=True)
    history = list(generate(config, 5000))
    today = date(2026, 12, 7)
    doc = yaml.safe_load(_demo_targets(history, tmp_path / "targets.yml", today).read_text())
    won: defaultdict[tuple[str, str], float] = defaultdict(float)
    deals = 0
    for event in history:
        if event["type"] == "deal.won":
            won[event["data"]["rep_id"], event["data"]["currency"]] += event["data"]["amount"]
            deals += 1
    days = {"2026-Q4": 92, "2027-Q1": 90}
    amounts = {(q["rep"], q["period"], q["currency"]): q["amount"] for q in doc["quotas"] if "rep" in q}
    assert set(amounts) == {(rep, period, currency) for rep, currency in won for period in days}
    for (rep, period, currency), quota in amounts.items():
        expected = won[rep, currency] * 1.1 * days[period] / HISTORY_DAYS
        assert abs(quota - expected) <= 500 or quota == 1000 > expected, (rep, period, currency)
    teams = {q["team"]: q for q in doc["quotas"] if "team" in q and q["period"] == "2026-Q4"}
    assert set(teams) == set(doc["teams"]) == {"inside", "field"}
    assert abs(sum(q["deals"] for q in teams.values()) - deals * 1.1 * 92 / HISTORY_DAYS) <= 2
    # Every rep is in one team on each day: one of them moved a fortnight ago.
    members = [m for team in doc["teams"].values() for m in team]
    (left,) = [m for m in members if "to" in m]
    (joined,) = [m for m in members if "from" in m]
    assert left["rep"] == joined["rep"] and (left["to"], joined["from"]) == (
        date(2026, 11, 22),
        date(2026, 11, 23),
    )
    assert sorted(m["rep"] for m in members if m is not left) == sorted({rep for rep, _ in won})
