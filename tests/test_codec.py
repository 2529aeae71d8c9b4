"""Event times: the cached fast path agrees with the standard library, and rejects nonsense."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from salespulse.schemas import event_time
from salespulse.schemas.event_time import format_time, parse_time
from salespulse.schemas.validator import pattern_regex


def test_parse_time_agrees_with_datetime_over_random_instants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_time, "_DAY_CACHE_SIZE", 100)  # the cache is cleared many times
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


def _validator_seconds(text: str) -> int | None:
    """What the contract makes of ``text``: None unless the pattern matches and it is an instant."""
    if pattern_regex(event_time.PATTERN).search(text) is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return int(parsed.timestamp() // 1)


def _valid_seconds(text: str) -> int:
    """What ``valid_seconds`` must return: the contract's seconds, -1 if invalid or before 1970."""
    want = _validator_seconds(text)
    return -1 if want is None or want < 0 else want


def test_the_fast_time_check_never_accepts_what_the_pattern_rejects() -> None:
    """Every one-character change of valid times, with digits, separators and look-alikes."""
    alphabet = "0123456789-T:Zzt .+\n\u0663\uff10"
    rng = random.Random(11)
    accepted = declined = 0
    for _ in range(400):
        valid = format_time(rng.randrange(0, 4_102_444_800))
        for i in range(len(valid)):
            for c in rng.sample(alphabet, 6):
                text = valid[:i] + c + valid[i + 1 :]
                want = _validator_seconds(text)
                fast = event_time.canonical_seconds(text)
                if fast >= 0:
                    accepted += 1
                    assert fast == want, text
                else:
                    declined += 1
                assert event_time.valid_seconds(text) == _valid_seconds(text), text
    assert accepted > 1_000 and declined > 1_000  # both sides of the check were exercised


@pytest.mark.parametrize(
    "text",
    [
        "2026-W48-4T11:30:00Z",
        "20261126T113000Z....",
        "2026-02-29T11:30:00Z",
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2026-11-26T11:30:60Z",
        "2026-11-26T11:30:0\u0663Z",
        "\uff12026-11-26T11:30:00Z",
    ],
)
def test_the_fast_time_check_declines_the_unusual(text: str) -> None:
    assert event_time.canonical_seconds(text) == -1
    assert event_time.valid_seconds(text) == _valid_seconds(text)
