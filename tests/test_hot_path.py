"""The compiled hot path: it is what `make test` runs, and it computes what plain Python does.

setup.py compiles the per-event modules with mypyc. Every other test runs the compiled
build; this one also runs the same batches through the plain Python source, in a copy of
the packages without the compiled files, and requires the same changelog and KPI view.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from salespulse.streams import hot_path

REPO = Path(__file__).resolve().parents[1]
NOW = 1_795_694_400  # 2026-11-26T12:00:00Z

# Run in both builds: apply a generated corpus in batches, print every changelog record
# and the final view. The script only uses the public engine API.
SCRIPT = """
import sys, zlib
from collections import defaultdict
from datetime import UTC, datetime
import orjson
from salespulse.streams import hot_path
from salespulse.schemas.event_time import format_time
from salespulse.schemas.partitions import partition_for
from salespulse.streams.pipeline.engine import Engine, MessageRecord
from salespulse.streams.tools.generator import GeneratorConfig, generate
from salespulse.schemas.topics import route

def run(now, count):
    when = datetime.fromtimestamp(now, UTC)
    config = GeneratorConfig(seed=7, now=when, customers=500, duplicate_share=0.05)
    batches = defaultdict(list)
    for event in generate(config, count):
        topic, key = route(event)
        records = batches[(topic, partition_for(key, 4) if zlib.crc32(key) % 5 else 0)]
        records.append(MessageRecord(len(records), key, orjson.dumps(event), None))
    engine = Engine(clock=format_time(now), partitions=4)
    changelog = []
    for (topic, partition), records in sorted(batches.items()):
        for i in range(0, len(records), 250):
            out = engine.apply(topic, partition, records[i : i + 250])
            changelog += [[key.decode(), value.decode()] for key, value in out.changelog]
            changelog += [[f.key.decode(), f.partition] for f in out.forwards]
    return {"changelog": changelog, "view": engine.kpis_view(range(4)), "plain": hot_path.plain_python()}

if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(run(int(sys.argv[1]), int(sys.argv[2])), default=str))
"""


def _run_here(count: int) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "hot_path_check"}
    exec(compile(SCRIPT, "hot_path_check", "exec"), namespace)
    # Exact sums of money are decimals: compared as their text.
    result: dict[str, Any] = orjson.loads(orjson.dumps(namespace["run"](NOW, count), default=str))
    return result


def _run_plain(tmp_path: Path, count: int) -> dict[str, Any]:
    # Laid out under the import name, as the wheel installs it.
    for package in ("streams", "agents", "schemas"):
        shutil.copytree(
            REPO / package,
            tmp_path / "salespulse" / package,
            ignore=shutil.ignore_patterns("*.so", "__pycache__"),
        )
    (tmp_path / "check.py").write_text(SCRIPT)
    # The script's directory comes first on sys.path, ahead of the installed packages.
    out = subprocess.run(
        [sys.executable, "check.py", str(NOW), str(count)],
        cwd=tmp_path,
        capture_output=True,
        check=True,
        timeout=300,
    )
    result: dict[str, Any] = orjson.loads(out.stdout)
    return result


def test_every_hot_module_has_a_source_file() -> None:
    for path in hot_path.source_files():
        assert path.startswith("salespulse/"), path
        assert (REPO / path.removeprefix("salespulse/")).is_file(), path


# The one skip: an install with SALESPULSE_PURE_PYTHON set asked for plain Python on purpose.
@pytest.mark.skipif(hot_path.pure_python_requested(), reason="plain Python asked for")
def test_make_test_runs_the_compiled_hot_path() -> None:
    assert hot_path.plain_python() == [], hot_path.describe()
    assert hot_path.describe() == "compiled (mypyc)"


def test_compiled_and_plain_python_agree(tmp_path: Path) -> None:
    compiled = _run_here(6_000)
    plain = _run_plain(tmp_path, 6_000)
    assert plain["plain"] == list(hot_path.HOT_MODULES), "the copy must run from source"
    assert len(compiled["changelog"]) > 1_000
    # A batch's records come out of sets, in an order that varies between processes.
    assert sorted(compiled["changelog"]) == sorted(plain["changelog"])
    assert compiled["view"] == plain["view"]
    assert compiled["view"]["counters"]["duplicates"] > 0
