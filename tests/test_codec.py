"""Event times: the cached fast path agrees with the standard library, and rejects nonsense."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from streams import codec
from streams.codec import format_time, parse_time


def test_parse_time_agrees_with_datetime_over_random_instants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_MINUTE_CACHE_SIZE", 100)  # the cache is cleared many times
    rng = random.Random(5)
    for _ in range(5_000):
        t = rng.randrange(0, 4_102_444_800)  # 1970 .. 2100
        text = format_time(t)
        assert parse_time(text) == t == int(dt.datetime.fromisoformat(text).timestamp())
    assert parse_time("2026-11-26T12:00:00.75+01:00") == parse_time("2026-11-26T11:00:00Z")


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-26T24:00:00Z",
        "2026-11-26T12:60:00Z",
        "2026-11-26T12:00:60Z",
        "2026-02-30T12:00:00Z",
        "2026-11-26 12:00:00Z",
        "2026-11-26T12-00:00Z",
        "2026-11-26T12:00:00",
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)
