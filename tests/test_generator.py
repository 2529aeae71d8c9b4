"""The synthetic stream: valid, deterministic, and shaped the way the KPIs need."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from salespulse.schemas import validate_event
from salespulse.streams.tools.generator import GeneratorConfig, generate, iter_ndjson
from tests.reference import GENERATED_TYPES

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
SMALL_TEAMS = {"sales-ops", "enablement"}


def events(count: int = 1000, **kw: Any) -> list[dict[str, Any]]:
    return list(generate(GeneratorConfig(now=NOW, **kw), count))


def when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))


def test_all_valid_and_all_types_present() -> None:
    evs = events(1000, seed=1)
    assert len(evs) == 1000
    for e in evs:
        validate_event(e)
        assert e["source"] == "salespulse-generator"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["occurred_at"])
    assert set(Counter(e["type"] for e in evs)) == set(GENERATED_TYPES)


def test_type_mix_is_roughly_the_design() -> None:
    counts = Counter(e["type"] for e in events(20000, seed=3))
    assert 0.27 < counts["customer.activity"] / 20000 < 0.33
    assert 0.19 < counts["lead.created"] / 20000 < 0.25
    assert 0.01 < counts["product.price_set"] / 20000 < 0.03


def test_same_seed_and_now_is_identical() -> None:
    a = b"".join(iter_ndjson(generate(GeneratorConfig(seed=7, now=NOW), 500)))
    b = b"".join(iter_ndjson(generate(GeneratorConfig(seed=7, now=NOW), 500)))
    assert a == b


def test_different_seed_differs() -> None:
    a = [e["event_id"] for e in events(200, seed=1)]
    b = [e["event_id"] for e in events(200, seed=2)]
    assert a != b
    assert not set(a) & set(b)


def test_event_ids_are_ulids_from_occurred_at() -> None:
    evs = events(1000)
    ids = [e["event_id"] for e in evs]
    assert len(set(ids)) == len(ids)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for e, event_id in zip(evs, ids, strict=True):
        assert ULID.match(event_id)
        ms = 0
        for ch in event_id[:10]:
            ms = ms * 32 + alphabet.index(ch)
        assert ms // 1000 == int(when(e).timestamp())


def test_duplicates_are_exact_copies_of_earlier_events() -> None:
    evs = events(2000, duplicate_share=0.1)
    lines = list(iter_ndjson(evs))
    first: dict[str, bytes] = {}
    dups = 0
    for e, line in zip(evs, lines, strict=True):
        if e["event_id"] in first:
            dups += 1
            assert line == first[e["event_id"]]  # byte-identical re-delivery, later in the stream
        else:
            first[e["event_id"]] = line
    assert 120 < dups < 280  # about 10% of 2000


def test_no_duplicates_by_default() -> None:
    ids = [e["event_id"] for e in events(2000)]
    assert len(set(ids)) == len(ids)


def test_late_events_are_beyond_retention() -> None:
    evs = events(2000, late_share=0.1)
    ages = [NOW - when(e) for e in evs]
    late = [a for a in ages if a > timedelta(days=62)]
    assert 120 < len(late) < 280
    assert all(timedelta(days=70) <= a <= timedelta(days=120) for a in late)


def test_never_in_the_future_and_within_spread() -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, 999999, tzinfo=UTC)  # sub-second now
    evs = list(generate(GeneratorConfig(now=now, spread_days=7), 3000))
    assert all(when(e) <= now for e in evs)
    assert all(now - when(e) <= timedelta(days=7) for e in evs)


def test_recent_share_is_respected() -> None:
    for share in (0.5, 0.2):
        evs = events(4000, recent_share=share)
        recent = sum(NOW - when(e) < timedelta(hours=1) for e in evs) / len(evs)
        assert abs(recent - share) < 0.04


def test_out_of_order_switch() -> None:
    shuffled = [when(e) for e in events(500)]
    assert shuffled != sorted(shuffled)
    ordered = [when(e) for e in events(2000, out_of_order=False, late_share=0.05)]
    assert ordered == sorted(ordered)
    recent = sum(NOW - t < timedelta(hours=1) for t in ordered) / len(ordered)
    assert abs(recent - 0.5) < 0.04
    # With duplicates, the originals keep the time order and the time mix.
    evs = events(2000, out_of_order=False, duplicate_share=0.1)
    seen: set[str] = set()
    originals = []
    for e in evs:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            originals.append(when(e))
    assert originals == sorted(originals)
    recent = sum(NOW - t < timedelta(hours=1) for t in originals) / len(originals)
    assert abs(recent - 0.5) < 0.05


def test_small_enps_teams_stay_below_anonymity_threshold() -> None:
    evs = events(2000, seed=1)
    teams = Counter(e["data"]["team"] for e in evs if e["data"].get("survey") == "enps")
    assert sum(teams.values()) >= 5  # org-wide eNPS has enough answers
    assert max(teams.values()) >= 5  # some teams are big enough to report
    small = {t for t in teams if teams[t] < 5} | (SMALL_TEAMS - set(teams))
    assert small >= SMALL_TEAMS
    assert len(small) >= 2


def test_nps_distribution_is_plausible() -> None:
    scores = [e["data"]["score"] for e in events(10000) if e["data"].get("survey") == "nps"]
    promoters = sum(s >= 9 for s in scores) / len(scores)
    detractors = sum(s <= 6 for s in scores) / len(scores)
    assert 0.4 < promoters < 0.6
    assert 0.15 < detractors < 0.35


def test_deals_and_prices_are_consistent() -> None:
    evs = events(5000)
    data = [(e["type"], e["data"]) for e in evs]
    won = [d for t, d in data if t == "deal.won"]
    new = Counter(d["customer_id"] for d in won if d["kind"] == "new")
    assert new and max(new.values()) == 1  # a customer is acquired once
    with_source = sum("source" in d for d in won) / len(won)
    assert 0.7 < with_source < 0.9
    set_prices = {(d["product"], d["currency"]) for t, d in data if t == "product.price_set"}
    assert {c for _, c in set_prices} == {"USD", "EUR"}
    observed = [d for t, d in data if t == "competitor.price_observed"]
    assert {d["currency"] for d in observed} == {"USD", "EUR"}
    currencies = Counter(d["currency"] for _, d in data if "currency" in d)
    assert currencies["USD"] > currencies["GBP"] and currencies["EUR"] > currencies["GBP"] > 0


def test_ndjson_lines_round_trip() -> None:
    evs = events(50)
    lines = list(iter_ndjson(evs))
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert [orjson.loads(line) for line in lines] == evs


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(recent_share=0.8, late_share=0.5)
    with pytest.raises(ValueError):
        GeneratorConfig(customers=0)
