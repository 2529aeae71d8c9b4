"""The CLI as a user types it: `salespulse emit` into a worker, then `salespulse kpis`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, REPO, wait_until


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salespulse.streams", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=120,
    )


def test_emit_sends_valid_lines_reports_rejects_and_kpis_shows_the_cluster_view(
    spawn_worker: Any, broker: Any, tmp_path: Path
) -> None:
    events = list(generate(GeneratorConfig(seed=31, now=FIXED_NOW), 1500))
    lines = [orjson.dumps(e) for e in events]
    lines.insert(10, b"{not json")
    lines.insert(20, orjson.dumps({**events[0], "data": {}}))
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    env = {"SALESPULSE_BROKER": broker.bootstrap}

    emitted = cli("emit", str(source), env=env)
    assert emitted.returncode == 1, emitted.stderr  # some lines were rejected
    assert "accepted 1500, rejected 2" in emitted.stderr
    assert "not_json: 1" in emitted.stderr and "schema: 1" in emitted.stderr

    worker = spawn_worker()
    worker.wait_ready()
    wait_until(lambda: worker.progress()["events"] == 1500)
    as_json = cli("kpis", "--workers", worker.address, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    view = orjson.loads(as_json.stdout)
    share = worker.kpis()
    assert view["windows"] == share["windows"]
    assert view["partitions"] == [0, 1, 2, 3] and view["partitions_exported_twice"] == []
    table = cli("kpis", "--workers", worker.address, env={**env, "COLUMNS": "150"})
    assert table.returncode == 0, table.stderr
    leads_30d = share["windows"]["30d"]["leads"]["leads"]
    assert "Leads" in table.stdout and f"{leads_30d:,.0f}" in table.stdout

    down = cli("kpis", "--workers", "127.0.0.1:1", env=env)
    assert down.returncode != 0 and "did not answer /kpis" in down.stderr
