"""Detractor follow-up, driven through the engine without Kafka, against the reference.

The corpus (tests/detractor_corpus.py) is applied topic by topic in every order, in one
batch and in many, replayed, and restored from its changelog: the list and the gauges must
equal tests/reference.py every time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from salespulse.agents.base import ApplyContext, LabelFolder
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.detractors import DetractorsKpi, Policy
from salespulse.agents.registry import KPIS
from salespulse.agents.rolling import Clock
from salespulse.schemas.topics import route
from salespulse.streams.pipeline.engine import Engine
from tests import reference
from tests.detractor_corpus import CLOCK, HOUR, LONG, MARKUP, PERSIAN, T, answer, corpus
from tests.test_agents_unit import Rec

METRICS = ("salespulse_detractors_open", "salespulse_detractors_overdue", "salespulse_detractor_cases")


def topic_records(events: Sequence[dict[str, Any]]) -> dict[str, list[Rec]]:
    """Each topic's records with the offsets the reference assigns (one partition)."""
    out: dict[str, list[Rec]] = {}
    for e in events:
        topic, key = route(e)
        recs = out.setdefault(topic, [])
        recs.append(Rec(len(recs), key, orjson.dumps(e)))
    return out


def gauges(engine: Engine) -> dict[reference.GaugeKey, float]:
    return {(n, frozenset(lab.items())): v for n, lab, v in engine.samples([0]) if n in METRICS}


def expected_gauges(ref: reference.Expected) -> dict[reference.GaugeKey, float]:
    return {k: v for k, v in ref.gauges.items() if k[0] in METRICS}


def listed(engine: Engine, status: str = "open", window: str = "30d") -> list[dict[str, Any]]:
    return engine.detractors([0], status, window)["cases"]


@pytest.fixture(scope="module")
def ref() -> reference.Expected:
    return reference.expected(corpus(), T, partitions=1)


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["crm.surveys", "crm.activities", "crm.deals"]))
)
def test_cases_and_gauges_equal_the_reference_whatever_topic_is_applied_first(
    order: tuple[str, ...], ref: reference.Expected
) -> None:
    engine = Engine(clock=CLOCK)
    recs = topic_records(corpus())
    for topic in order:
        engine.apply(topic, 0, recs[topic])
    assert gauges(engine) == expected_gauges(ref)
    for status in ("open", "followed_up", "all"):
        for window in ("1h", "24h", "7d", "30d", "all"):
            assert listed(engine, status, window) == ref.listed(status, window), (status, window)


def test_record_by_record_interleaving_across_topics_gives_the_same_cases(ref: reference.Expected) -> None:
    engine = Engine(clock=CLOCK)
    recs = topic_records(corpus())
    # one record at a time, topics round robin: activities often land before their answers
    for batch in itertools.zip_longest(*(recs[t] for t in sorted(recs, reverse=True))):
        for topic, rec in zip(sorted(recs, reverse=True), batch, strict=True):
            if rec is not None:
                engine.apply(topic, 0, [rec])
    assert gauges(engine) == expected_gauges(ref)
    assert listed(engine, "all", "all") == ref.listed("all", "all")


def test_the_hand_counted_cases_match_the_definitions(ref: reference.Expected) -> None:
    engine = Engine(clock=CLOCK)
    for topic, recs in topic_records(corpus()).items():
        engine.apply(topic, 0, recs)
    cases = {c["customer_id"]: c for c in listed(engine, "all", "all")}
    assert set(cases) == {
        "C-open",
        "C-called",
        "C-recent",
        "C-slow",
        "C-before",
        "C-reanswer",
        "C-long",
        "C-tie",
    }
    assert cases["C-open"]["owner"] == "r-1" and cases["C-open"]["comment"] == PERSIAN
    assert cases["C-open"]["hours_open"] == 30.0 and cases["C-open"]["followed_up_at"] is None
    assert cases["C-called"]["channel"] == "call" and cases["C-called"]["hours_open"] == 5.0
    assert cases["C-slow"]["channel"] == "email" and cases["C-slow"]["hours_open"] == 48.0
    assert cases["C-before"]["followed_up_at"] is None  # the earlier call and the login do not count
    assert cases["C-tie"]["followed_up_at"] is None  # an activity in the answer's own second is not after it
    assert cases["C-reanswer"]["score"] == 4 and cases["C-reanswer"]["comment"] == "edited"
    assert cases["C-reanswer"]["channel"] == "support"
    assert cases["C-recent"]["owner"] == "unassigned"
    assert cases["C-long"]["comment"] == LONG[:2000]
    assert MARKUP not in {c["comment"] for c in cases.values()}  # replaced by the re-answer
    # open cases, oldest first
    assert [c["customer_id"] for c in listed(engine)] == ["C-open", "C-tie", "C-before", "C-recent", "C-long"]
    view = engine.kpis_view([0])
    assert view["counters"]["comments_truncated"] == 1 == ref.comments_truncated
    d = view["windows"]["7d"]["detractors"]
    assert (d["open"], d["overdue"]) == (5.0, 1.0)
    assert (d["cases_opened"], d["cases_followed_up"], d["cases_followed_up_in_target"]) == (8.0, 3.0, 2.0)
    assert d["follow_up_rate"] == 3 / 8
    assert view["windows"]["7d"] == ref.windows["7d"] | {"detractors": d}
    assert ref.windows["7d"]["detractors"] == d


def test_a_re_answer_of_the_same_response_counts_once_in_nps_windows(ref: reference.Expected) -> None:
    engine = Engine(clock=CLOCK)
    for topic, recs in topic_records(corpus()).items():
        engine.apply(topic, 0, recs)
    nps = engine.kpis_view([0])["windows"]["24h"]["nps"]
    # in 24h: C-called, C-recent, C-before, C-reanswer (once), C-passive, C-long, C-tie
    assert nps["responses"] == 7.0 == ref.windows["24h"]["nps"]["responses"]
    profile = engine.profile("C-reanswer", [0])
    assert profile is not None
    assert profile["nps"]["score"] == 4 and profile["nps"]["comment"] == "edited"
    assert profile["nps"]["response_id"] == "R-8"


def test_replaying_and_restoring_change_nothing(ref: reference.Expected) -> None:
    engine = Engine(clock=CLOCK)
    changelog: list[tuple[bytes, bytes]] = []
    recs = topic_records(corpus())
    for topic in ("crm.activities", "crm.surveys", "crm.deals"):
        mid = len(recs[topic]) // 2
        for batch in (recs[topic][:mid], recs[topic][mid:]):
            changelog += engine.apply(topic, 0, batch).changelog
    restored = Engine(clock=CLOCK)
    for key, value in changelog:
        restored.restore(key, value)
    for e in (engine, restored):
        for topic, topic_recs in recs.items():
            e.apply(topic, 0, topic_recs)  # a replay of everything
        assert gauges(e) == expected_gauges(ref)
        assert listed(e, "all", "all") == ref.listed("all", "all")


def test_overdue_follows_the_clock_and_the_target() -> None:
    events = corpus()
    for hours_later, sla_hours, overdue in ((0, 24, 1), (20, 24, 2), (0, 2, 3), (0, 40, 0)):
        now = T + hours_later * HOUR
        policy = Policy(sla_hours * HOUR)
        kpis = tuple(DetractorsKpi(policy) if k.name == "detractors" else k for k in KPIS)
        engine = Engine(clock=reference.format_time(now), kpis=kpis)
        for topic, recs in topic_records(events).items():
            engine.apply(topic, 0, recs)
        ref = reference.expected(events, now, partitions=1, sla=sla_hours * HOUR)
        assert gauges(engine) == expected_gauges(ref)
        assert ref.gauge("salespulse_detractors_overdue") == overdue, (hours_later, sla_hours)


def test_a_case_older_than_retention_drops_out_as_the_clock_moves() -> None:
    events = corpus()
    now = T + 61 * 86400  # C-slow (5 days old at T) is now past the 62-day retention
    engine = Engine(clock=reference.format_time(now))
    for topic, recs in topic_records(events).items():
        engine.apply(topic, 0, recs)
    ref = reference.expected(events, now, partitions=1)
    assert gauges(engine) == expected_gauges(ref)
    assert "C-slow" not in {c["customer_id"] for c in listed(engine, "all", "all")}


def test_the_follow_up_target_and_human_channels_are_settings_with_clear_errors() -> None:
    from salespulse.streams.settings import Settings, SettingsError

    assert Settings.from_env({}).detractor_sla == 24 * HOUR
    assert Settings.from_env({}).human_channels == ("call", "email", "meeting", "support")
    assert Settings.from_env({"SALESPULSE_DETRACTOR_SLA": "90m"}).detractor_sla == 90 * 60
    assert Settings.from_env({"SALESPULSE_DETRACTOR_SLA": "2d"}).detractor_sla == 2 * 86400
    assert Settings.from_env({"SALESPULSE_DETRACTOR_SLA": "3600"}).detractor_sla == 3600
    custom = Settings.from_env({"SALESPULSE_HUMAN_CHANNELS": "call, sms"})
    assert custom.human_channels == ("call", "sms")
    for name, value in (("SALESPULSE_DETRACTOR_SLA", "soon"), ("SALESPULSE_HUMAN_CHANNELS", "pigeon")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


def test_the_sdk_contract_keeps_comment_and_response_id_and_never_rejects_a_long_comment() -> None:
    from salespulse.schemas.codec import check_event

    event = answer(T, "sdk-1", "C-1", 3, comment="é" * 5000, response_id="R-1")
    checked = check_event(event)
    assert checked["data"]["comment"] == "é" * 5000 and checked["data"]["response_id"] == "R-1"


def test_the_deal_columns_reach_only_the_last_customer_with_a_deal() -> None:
    state = DetractorsKpi().new_state(CustomerIndex())
    ctx = ApplyContext(Clock(T), LabelFolder())
    for i in range(3):
        state.offer_answer(f"C-{i}", (T - 60, i, 3, "north", "crm", None, None), ctx)
    assert len(state.owner_off) == 0, "no deal yet: nothing in the deal columns"
    state.offer_owner("C-1", (T - 30, 7, "r-9"), ctx)
    assert len(state.owner_off) == 2
    owners = {case.customer_id: case.owner for case in state.listed(Clock(T), "all", "all")}
    assert owners == {"C-0": "unassigned", "C-1": "r-9", "C-2": "unassigned"}
