"""The synthetic stream: valid, deterministic, and shaped the way the KPIs need."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from salespulse.schemas import EVENT_TYPES, validate_event
from salespulse.streams.tools.generator import Generator, GeneratorConfig, generate, iter_ndjson

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
#: vtiger's sales stages in their order.
PICKLIST = (
    "Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
    "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review",
)  # fmt: skip
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
    assert set(Counter(e["type"] for e in evs)) == set(EVENT_TYPES)


def test_type_mix_is_roughly_the_design() -> None:
    counts = Counter(e["type"] for e in events(20000, seed=3))
    assert 0.22 < counts["customer.activity"] / 20000 < 0.28
    assert 0.16 < counts["lead.created"] / 20000 < 0.21
    assert 0.14 < counts["opportunity.updated"] / 20000 < 0.19
    assert 0.06 < counts["opportunity.created"] / 20000 < 0.1
    assert 0.01 < counts["product.price_set"] / 20000 < 0.03


def lives(evs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each opportunity's events (opening, versions, close), in stream order, redeliveries left out."""
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for e in evs:
        if e["event_id"] not in seen and "opportunity_id" in e["data"]:
            seen.add(e["event_id"])
            out.setdefault(e["data"]["opportunity_id"], []).append(e)
    return out


@pytest.mark.parametrize("ordered", [False, True])
def test_an_opportunity_opens_changes_in_time_order_and_at_most_one_close_after_that_ends_it(
    ordered: bool,
) -> None:
    evs = events(20000, seed=3, out_of_order=not ordered, duplicate_share=0.02, late_share=0.01)
    by_opportunity = lives(evs)
    opened = {o for o, life in by_opportunity.items() if life[0]["type"] == "opportunity.created"}
    # The pipeline open before the stream started has no opening in it: the lowest ids.
    before = set(by_opportunity) - opened
    assert 200 <= len(before) <= 250 and max(before) < min(opened)
    closes: Counter[str] = Counter()
    for life in by_opportunity.values():
        times = [when(e) for e in life]
        assert times == sorted(times), "its opening, its versions, its close: in time order"
        kinds = [e["type"] for e in life]
        assert kinds.count("opportunity.created") <= 1 and "opportunity.created" not in kinds[1:]
        assert all(k == "opportunity.updated" for k in kinds[1:-1])
        if kinds[-1] in {"deal.won", "deal.lost"}:
            closes[kinds[-1]] += 1
            assert kinds[0] != "opportunity.created" or times[-1] > times[0], (
                "a close comes after the opening"
            )
        first = life[0]["data"]
        for version in life[1:]:
            if version["type"] == "opportunity.updated":  # a whole state: what the opening had, too
                assert set(first) - {"probability", "forecast_category"} <= set(version["data"])
                assert version["data"].get("lead_id") == first.get("lead_id")
    assert 0.15 < closes["deal.won"] / len(by_opportunity) < 0.35
    assert 0.3 < closes["deal.lost"] / len(by_opportunity) < 0.6
    updates = sum(len(life) for life in by_opportunity.values()) - len(opened) - sum(closes.values())
    assert 1.5 < updates / len(by_opportunity) < 2.5


def test_opportunities_move_stage_slip_to_later_months_change_amount_and_owner_and_close_as_they_stood() -> (
    None
):
    previous: dict[str, dict[str, Any]] = {}
    changed: Counter[str] = Counter()
    for e in events(20000, seed=5):
        data = e["data"]
        if e["type"] == "opportunity.created":
            previous[data["opportunity_id"]] = data
        elif e["type"] == "opportunity.updated" and data["opportunity_id"] not in previous:
            previous[data["opportunity_id"]] = data  # open before the stream: its first word
        elif e["type"] == "opportunity.updated":
            before = previous[data["opportunity_id"]]
            differ = {k for k in {*before, *data} if before.get(k) != data.get(k)}
            assert differ, "a version changes something"
            changed.update(differ)
            step = PICKLIST.index(data["stage"]) - PICKLIST.index(before["stage"])
            assert step in {-1, 0, 1, 2}, f"a stage moves one step, or two forward: {before} -> {data}"
            if data["expected_close"][:7] > before["expected_close"][:7]:
                changed["slipped into a later month"] += 1
            previous[data["opportunity_id"]] = data
        elif e["type"] == "deal.won" and data.get("opportunity_id") in previous:
            stood = previous[data["opportunity_id"]]
            assert (data["rep_id"], data["region"], data["amount"], data["currency"]) == (
                stood["rep_id"],
                stood["region"],
                stood["amount"],
                stood["currency"],
            )
    updates = sum(1 for e in events(20000, seed=5) if e["type"] == "opportunity.updated")
    assert changed["stage"] > 0.35 * updates
    assert changed["slipped into a later month"] > 0.15 * updates
    assert changed["amount"] > 0.1 * updates
    assert 0.03 * updates < changed["rep_id"] < 0.12 * updates  # reassignments now and then
    assert changed["forecast_category"] > 0 and changed["probability"] > 0


def test_a_generator_goes_on_with_the_same_crm_and_dates_nothing_after_each_calls_now() -> None:
    config = GeneratorConfig(seed=4, now=NOW)
    later = NOW + timedelta(hours=2)
    crm = Generator(config)
    first = list(crm.events(3000))
    second = list(crm.events(1000, replace(config, now=later, recent_share=1.0)))
    assert all(when(e) <= NOW for e in first) and all(when(e) <= later for e in second)
    opened = {e["data"]["opportunity_id"] for e in first if e["type"] == "opportunity.created"}
    carried_on = [
        e for e in second if e["type"] != "opportunity.created" and e["data"].get("opportunity_id") in opened
    ]
    assert len(carried_on) > 100, "the second call changes and closes the first call's opportunities"
    assert not opened & {e["data"]["opportunity_id"] for e in second if e["type"] == "opportunity.created"}
    again = Generator(config)
    assert list(again.events(3000)) == first
    assert list(again.events(1000, replace(config, now=later, recent_share=1.0))) == second


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
