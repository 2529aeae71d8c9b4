"""`salespulse generate --out -`: NDJSON that validates against schemas/ and covers all types."""

from __future__ import annotations

import subprocess
import sys

import orjson

from salespulse.schemas import EVENT_TYPES, validate_event
from tests.conftest import REPO


def test_generate_prints_1000_valid_events_covering_all_ten_types() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "salespulse.streams",
            "generate",
            "--count",
            "1000",
            "--seed",
            "1",
            "--out",
            "-",
        ],
        capture_output=True,
        check=True,
        cwd=REPO,
    ).stdout
    lines = out.splitlines()
    assert len(lines) == 1000
    events = [validate_event(orjson.loads(line)) for line in lines]
    assert {e["type"] for e in events} == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == 10
