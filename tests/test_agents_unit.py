"""The eight KPIs' maths, driven directly (no Kafka), against docs/semantics.md.

Most tests feed :class:`~salespulse.agents.base.Event` objects to one KPI's state and read its
``samples`` and ``summarize``; the duplicate, late and changelog rules are exercised through
:class:`~salespulse.streams.pipeline.engine.Engine`, which owns them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest

from salespulse.agents import acquisition, engagement, enps, expansion, leads, nps, pricing, sales
from salespulse.agents.base import (
    ApplyContext,
    Event,
    ExportContext,
    Kpi,
    LabelFolder,
    Series,
    nps_category,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.money import normalize
from salespulse.agents.registry import KPIS
from salespulse.agents.rolling import HOUR, MINUTE, WINDOW_NAMES, Clock
from salespulse.schemas.event_time import format_time, parse_time
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import route
from salespulse.streams.pipeline.engine import MONEY_FIELDS, Engine

FIXED_CLOCK = "2026-11-26T12:00:00Z"
T = parse_time(FIXED_CLOCK)
CLOCK = Clock(T)
CM = T // MINUTE
CH = T // HOUR
DAY = 86400


# -- helpers -----------------------------------------------------------------------------


class Feed:
    """One KPI's state for one partition, fed event by event with increasing offsets."""

    def __init__(self, kpi: Kpi, *, cap: int = 50, clock: Clock = CLOCK) -> None:
        self.kpi = kpi
        self.state = kpi.new_state(CustomerIndex())
        self.fold = LabelFolder(cap)
        self.clock = clock
        self.next_offset = 0

    def add(self, type_: str, t: int, *, offset: int | None = None, late: bool = False, **data: Any) -> None:
        if offset is None:
            offset = self.next_offset
        self.next_offset = max(self.next_offset, offset + 1)
        field = MONEY_FIELDS.get(type_)
        if field is not None:  # as the engine does: a float here is the decimal its JSON text shows
            data[field] = Decimal(str(data[field]))
            normalize(data, field)
        event = Event(type_, t, offset, data, late)
        self.kpi.apply(self.state, event, ApplyContext(self.clock, self.fold))

    def samples(self, clock: Clock | None = None) -> list[tuple[str, dict[str, str], float]]:
        return list(self.kpi.samples([self.state], ExportContext(clock or self.clock)))

    def series(self, clock: Clock | None = None) -> Series:
        return series_of(self.samples(clock))

    def summary(self, window: str, clock: Clock | None = None) -> dict[str, Any]:
        return self.kpi.summarize(self.series(clock), window)

    def value(self, metric: str, clock: Clock | None = None, **labels: str) -> float | None:
        """The one sample of ``metric`` with exactly these labels, None if not exported."""
        for name, lab, v in self.samples(clock):
            if name == metric and lab == labels:
                return v
        return None


def series_of(samples: Iterable[tuple[str, dict[str, str], float]]) -> Series:
    series = Series()
    for name, labels, value in samples:
        series.add(name, labels, value)
    return series


def lead(feed: Feed, t: int, region: str = "north", source: str = "web", rep: str = "r-1", **kw: Any) -> None:
    feed.add("lead.created", t, lead_id="L", region=region, source=source, rep_id=rep, **kw)


def won(feed: Feed, t: int, kind: str = "new", amount: float = 100.0, **kw: Any) -> None:
    data = {
        "deal_id": "D",
        "customer_id": "C-1",
        "rep_id": "r-1",
        "region": "north",
        "product": "crm",
        "currency": "USD",
        "source": "web",
    }
    offset = kw.pop("offset", None)
    late = kw.pop("late", False)
    data.update(kw)
    feed.add("deal.won", t, offset=offset, late=late, kind=kind, amount=amount, **data)


@dataclass
class Rec:
    """A consumed Kafka record as the engine reads it."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None
    headers: Sequence[tuple[str, bytes | None]] = ()


def raw(type_: str, t: int, event_id: str, **data: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "occurred_at": format_time(t),
        "source": "unit-test",
        "data": data,
    }


def records(events: Sequence[dict[str, Any]], start: int = 0) -> list[Rec]:
    out = []
    for i, event in enumerate(events, start):
        _, key = route(event)
        out.append(Rec(i, key, orjson.dumps(event)))
    return out


def by_topic(events: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    topics: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        topics.setdefault(route(event)[0], []).append(event)
    return topics


def lead_raw(t: int, event_id: str, region: str = "north") -> dict[str, Any]:
    return raw("lead.created", t, event_id, lead_id="L-1", rep_id="r-1", region=region, source="web")


def mixed_events() -> list[dict[str, Any]]:
    """A little of everything, on every input topic, at many ages."""
    evs: list[dict[str, Any]] = []
    for i, age in enumerate([0, 59 * MINUTE, 3 * HOUR, 2 * DAY, 10 * DAY, 40 * DAY]):
        t = T - age
        evs.append(lead_raw(t, f"lead-{i}", region=["north", "south"][i % 2]))
        evs.append(
            raw(
                "opportunity.created",
                t,
                f"opp-{i}",
                opportunity_id="O-1",
                rep_id="r-1",
                region="north",
                amount=10.0,
                currency="USD",
            )
        )
        evs.append(
            raw(
                "deal.won",
                t,
                f"won-{i}",
                deal_id=f"D-{i}",
                customer_id=f"C-{i % 3}",
                rep_id="r-1",
                region="north",
                product="crm",
                kind=["new", "upsell", "cross_sell", "renewal"][i % 4],
                amount=1000.5 + i,
                currency=["USD", "EUR"][i % 2],
                **({"source": "web"} if i % 2 else {}),
            )
        )
        evs.append(raw("deal.lost", t, f"lost-{i}", deal_id=f"DL-{i}", rep_id="r-2", region="south"))
        evs.append(raw("customer.activity", t, f"act-{i}", customer_id=f"C-{i % 4}", channel="email"))
        evs.append(
            raw(
                "survey.answered",
                t,
                f"nps-{i}",
                survey="nps",
                score=i + 4,
                customer_id=f"C-{i % 2}",
                region="north",
                product="crm",
            )
        )
        for j in range(2):
            evs.append(
                raw("survey.answered", t, f"enps-{i}-{j}", survey="enps", score=10 - i - j, team="dev")
            )
        evs.append(raw("marketing.spend", t, f"spend-{i}", channel="web", amount=250.25, currency="EUR"))
        evs.append(raw("product.price_set", t, f"list-{i}", product="crm", price=79.0 + i, currency="USD"))
        evs.append(
            raw(
                "competitor.price_observed",
                t,
                f"comp-{i}",
                competitor="acme",
                product="crm",
                price=70.0 + i,
                currency="USD",
            )
        )
    # late ones: latest-value state still takes them
    old = T - 70 * DAY
    evs.append(
        raw(
            "deal.won",
            old,
            "won-late",
            deal_id="D-L",
            customer_id="C-9",
            rep_id="r-1",
            region="west",
            product="crm",
            kind="new",
            amount=5.0,
            currency="USD",
        )
    )
    evs.append(raw("customer.activity", old, "act-late", customer_id="C-8", channel="call"))
    return evs


def engine_with(events: Sequence[dict[str, Any]], **kw: Any) -> Engine:
    engine = Engine(clock=FIXED_CLOCK, **kw)
    for topic, evs in by_topic(events).items():
        engine.apply(topic, 0, records(evs))
    return engine


def numbers(obj: Any) -> Iterable[float]:
    """Every number anywhere in a JSON-like value."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, int | float):
        yield float(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from numbers(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from numbers(v)


# -- window boundaries through a KPI -----------------------------------------------------


def test_a_lead_in_minute_cm_minus_59_counts_in_1h_and_one_in_cm_minus_60_does_not() -> None:
    inside, outside = Feed(leads.KPI), Feed(leads.KPI)
    lead(inside, (CM - 59) * MINUTE)
    lead(outside, (CM - 60) * MINUTE + 59)
    assert inside.summary("1h")["leads"] == 1
    assert outside.summary("1h")["leads"] == 0
    assert outside.summary("24h")["leads"] == 1


@pytest.mark.parametrize(("window", "size"), [("24h", 24), ("7d", 168), ("30d", 720)])
def test_a_deal_in_the_oldest_hour_of_a_window_counts_and_one_hour_earlier_does_not(
    window: str, size: int
) -> None:
    inside, outside = Feed(sales.KPI), Feed(sales.KPI)
    won(inside, (CH - (size - 1)) * HOUR)
    won(outside, (CH - size) * HOUR + HOUR - 1)
    assert inside.summary(window)["deals_won"] == 1
    assert outside.summary(window)["deals_won"] == 0


def test_a_future_lead_is_counted_once_the_clock_reaches_it() -> None:
    feed = Feed(leads.KPI)
    lead(feed, T + 5 * MINUTE)
    assert feed.summary("1h")["leads"] == 0
    assert feed.summary("1h", Clock(T + 5 * MINUTE - 1))["leads"] == 0
    assert feed.summary("1h", Clock(T + 5 * MINUTE))["leads"] == 1


def test_a_future_deal_in_a_later_hour_is_counted_once_the_clock_reaches_that_hour() -> None:
    feed = Feed(expansion.KPI)
    won(feed, T + 2 * HOUR + 30, kind="upsell")
    assert feed.summary("24h")["upsell"] == 0
    assert feed.summary("24h", Clock(T + 2 * HOUR))["upsell"] == 1
    assert feed.summary("1h", Clock(T + 2 * HOUR))["upsell"] == 1


def test_an_idle_label_set_stays_exported_at_zero_while_a_bucket_is_retained() -> None:
    feed = Feed(leads.KPI)
    lead(feed, T - 40 * DAY, region="east")
    assert feed.value("salespulse_leads", window="30d", region="east", source="web", rep="r-1") == 0.0


# -- the late rule, duplicates and replays (the engine owns them) ------------------------


def test_a_lead_in_hour_ch_minus_1487_is_retained_and_one_in_ch_minus_1488_is_late() -> None:
    engine = engine_with(
        [
            lead_raw((CH - 1487) * HOUR, "kept", region="kept"),
            lead_raw((CH - 1488) * HOUR + 3599, "late", "late"),
        ]
    )
    view = engine.kpis_view([0])
    assert view["counters"]["events"]["lead.created"] == 2
    assert view["counters"]["late"]["lead.created"] == 1
    regions = {lab["region"] for name, lab, _ in view["series"] if name == "salespulse_leads"}
    assert regions == {"kept"}  # the late one is in no windowed number, not even at 0


def test_late_events_still_move_latest_value_state() -> None:
    old = T - 70 * DAY
    engine = engine_with(
        [
            raw("product.price_set", old, "p", product="crm", price=80.0, currency="USD"),
            raw(
                "survey.answered",
                old,
                "s",
                survey="nps",
                score=3,
                customer_id="C-1",
                region="n",
                product="crm",
            ),
            raw(
                "deal.won",
                old,
                "w",
                deal_id="D",
                customer_id="C-1",
                rep_id="r",
                region="n",
                product="crm",
                kind="new",
                amount=1.0,
                currency="USD",
            ),
        ]
    )
    view = engine.kpis_view([0])
    late = view["counters"]["late"]
    assert (late["product.price_set"], late["survey.answered"], late["deal.won"]) == (1, 1, 1)
    series = {(n, tuple(sorted(lab.items()))): v for n, lab, v in view["series"]}
    assert series[("salespulse_list_price", (("currency", "USD"), ("product", "crm")))] == 80.0
    assert series[("salespulse_nps_customers", (("category", "detractor"),))] == 1.0
    assert series[("salespulse_customers_known", ())] == 1.0
    assert series[("salespulse_customers_at_risk", ())] == 1.0
    assert view["windows"]["30d"]["sales"]["deals_won"] == 0
    assert view["windows"]["30d"]["nps"]["responses"] == 0


def test_a_late_event_delivered_twice_counts_twice_in_events_and_late_and_is_no_duplicate() -> None:
    event = lead_raw(T - 70 * DAY, "same-id")
    engine = engine_with([event, event])
    counters = engine.kpis_view([0])["counters"]
    assert counters["events"]["lead.created"] == 2
    assert counters["late"]["lead.created"] == 2
    assert counters["duplicates"] == 0


def test_the_same_event_applied_twice_at_the_same_offset_counts_once() -> None:
    feed = Feed(leads.KPI)
    lead(feed, T - MINUTE, offset=4)
    lead(feed, T - MINUTE, offset=4)
    assert feed.summary("1h")["leads"] == 1


def test_a_lower_offset_after_a_higher_one_on_the_same_record_is_skipped() -> None:
    feed = Feed(leads.KPI)
    lead(feed, T - MINUTE, offset=8)
    lead(feed, T - MINUTE + 10, offset=5)
    assert feed.summary("1h")["leads"] == 1


def test_a_redelivered_event_id_at_a_higher_offset_is_a_duplicate() -> None:
    event = lead_raw(T - MINUTE, "dup")
    engine = engine_with([event, event])
    view = engine.kpis_view([0])
    assert view["counters"]["duplicates"] == 1
    assert view["counters"]["events"]["lead.created"] == 1
    assert view["windows"]["1h"]["leads"]["leads"] == 1


def test_replaying_a_batch_at_the_same_offsets_changes_nothing() -> None:
    evs = mixed_events()
    engine = engine_with(evs)
    before = engine.kpis_view([0])
    for topic, topic_evs in by_topic(evs).items():
        out = engine.apply(topic, 0, records(topic_evs))
        assert out.deadletters == []
    assert engine.kpis_view([0]) == before
    assert before["counters"]["duplicates"] == 0


def test_restoring_from_the_changelog_yields_an_identical_view() -> None:
    evs = mixed_events()
    engine = Engine(clock=FIXED_CLOCK, partitions=2)
    changelog: list[tuple[bytes, bytes]] = []
    halves = [[e for e in evs if partition_for(route(e)[1], 2) == p] for p in (0, 1)]
    assert all(halves)
    for p, half in enumerate(halves):
        for topic, topic_evs in by_topic(half).items():
            # two batches per topic, so records are rewritten and the newest write must win
            mid = len(topic_evs) // 2
            for start, batch in ((0, topic_evs[:mid]), (mid, topic_evs[mid:])):
                out = engine.apply(topic, p, records(batch, start))
                assert out.deadletters == []
                assert out.changelog
                changelog += out.changelog
    # Keys are compact JSON arrays, byte for byte what orjson writes for the same list.
    assert all(orjson.dumps(orjson.loads(key)) == key for key, _ in changelog)
    view = engine.kpis_view([0, 1])
    assert view["windows"]["30d"]["sales"]["deals_won"] == 5  # a non-trivial view
    assert view["windows"]["24h"]["engagement"]["customers_engaged"] == 3
    restored = Engine(clock=FIXED_CLOCK, partitions=2)
    for key, value in changelog:
        restored.restore(key, value)
    assert restored.kpis_view([0, 1]) == view
    assert restored.kpis_view([1]) == engine.kpis_view([1])
    # and the restored engine knows what it applied: replays and duplicates change nothing
    for p, half in enumerate(halves):
        for topic, topic_evs in by_topic(half).items():
            restored.apply(topic, p, records(topic_evs))
    assert restored.kpis_view([0, 1]) == engine.kpis_view([0, 1])


# -- NPS and eNPS --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "category"),
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"), (10, "promoter")],
)
def test_nps_score_maps_to_its_category(score: int, category: str) -> None:
    from salespulse.agents.base import NPS_CATEGORIES

    assert NPS_CATEGORIES[nps_category(score)] == category
    feed = Feed(nps.KPI)
    feed.add(
        "survey.answered", T - MINUTE, survey="nps", score=score, customer_id="C", region="n", product="p"
    )
    assert (
        feed.value("salespulse_nps_responses", window="1h", region="n", product="p", category=category) == 1
    )
    assert feed.value("salespulse_nps_customers", category=category) == 1


def nps_feed(scores: Sequence[int]) -> Feed:
    feed = Feed(nps.KPI)
    for i, s in enumerate(scores):
        feed.add(
            "survey.answered",
            T - MINUTE,
            survey="nps",
            score=s,
            customer_id=f"C-{i}",
            region="n",
            product="p",
        )
    return feed


def enps_feed(scores: Sequence[int], team: str = "dev", t: int = T - MINUTE) -> Feed:
    feed = Feed(enps.KPI)
    for s in scores:
        feed.add("survey.answered", t, survey="enps", score=s, team=team)
    return feed


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0, 6, 7, 8, 9, 10], 0.0),  # P=2 D=2 N=6
        ([10, 9, 9, 7, 0], 40.0),  # 100 * (3 - 1) / 5
        ([6, 6, 7], -66.666667),  # 100 * (0 - 2) / 3, rounded to 6 places
        ([9, 10, 9, 10, 9], 100.0),
    ],
)
def test_nps_is_100_times_promoters_minus_detractors_over_responses(
    scores: list[int], expected: float
) -> None:
    summary = nps_feed(scores).summary("1h")
    assert summary["responses"] == len(scores)
    assert summary["nps"] == pytest.approx(expected)
    assert summary["nps_by_region"] == {"n": pytest.approx(expected)}


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([0, 6, 7, 8, 9, 10], 0.0), ([10, 9, 9, 7, 0], 40.0), ([0, 1, 2, 3, 8], -80.0)],
)
def test_enps_is_100_times_promoters_minus_detractors_over_responses(
    scores: list[int], expected: float
) -> None:
    summary = enps_feed(scores).summary("30d")
    assert summary["responses"] == len(scores)
    assert summary["enps"] == pytest.approx(expected)
    assert summary["enps_by_team"] == {"dev": pytest.approx(expected)}


def test_enps_score_boundaries_map_like_nps() -> None:
    summary = enps_feed([0, 6, 7, 8, 9, 10]).summary("1h")
    assert (summary["promoters"], summary["passives"], summary["detractors"]) == (2, 2, 2)


def test_a_customers_nps_category_is_that_of_their_latest_answer_not_the_last_to_arrive() -> None:
    feed = Feed(nps.KPI)
    answer = {"survey": "nps", "customer_id": "C-1", "region": "n", "product": "p"}
    feed.add("survey.answered", T - HOUR, score=10, **answer)
    feed.add("survey.answered", T - 2 * HOUR, score=0, **answer)  # older, arrives later
    assert feed.value("salespulse_nps_customers", category="promoter") == 1
    assert feed.value("salespulse_nps_customers", category="detractor") == 0
    feed.add("survey.answered", T - HOUR, score=7, **answer)  # same time, higher offset wins
    assert feed.value("salespulse_nps_customers", category="promoter") == 0
    assert feed.value("salespulse_nps_customers", category="passive") == 1
    assert feed.summary("24h")["responses"] == 3


# -- eNPS anonymity ------------------------------------------------------------------------


def enps_labels(feed: Feed, clock: Clock | None = None) -> set[tuple[str, str]]:
    return {
        (lab["window"], lab["team"])
        for name, lab, _ in feed.samples(clock)
        if name == "salespulse_enps_responses"
    }


def test_a_team_with_4_responses_never_appears() -> None:
    feed = enps_feed([9, 9, 9, 9], team="small")
    assert enps_labels(feed) == set()
    for _ in range(5):
        feed.add("survey.answered", T - 2 * DAY, survey="enps", score=9, team="big")
    for clock in (CLOCK, Clock(T + 27 * DAY)):
        assert ("30d", "big") in enps_labels(feed, clock)
        assert {team for _, team in enps_labels(feed, clock)} == {"big", "all"}
    assert "small" not in feed.summary("30d")["enps_by_team"]


def test_a_team_with_5_responses_appears_only_for_the_30d_window() -> None:
    feed = enps_feed([9, 9, 0, 7, 10], team="dev")
    assert {(w, team) for w, team in enps_labels(feed) if team != "all"} == {("30d", "dev")}
    for window in WINDOW_NAMES:
        by_team = feed.summary(window)["enps_by_team"]
        assert by_team == ({"dev": 40.0} if window == "30d" else {})


def test_team_all_appears_only_for_windows_with_at_least_5_responses() -> None:
    feed = Feed(enps.KPI)
    for team in ("a", "b"):
        for _ in range(2):
            feed.add("survey.answered", T - MINUTE, survey="enps", score=9, team=team)
    assert enps_labels(feed) == set()  # 4 in every window
    feed.add("survey.answered", T - 2 * DAY, survey="enps", score=0, team="c")
    assert enps_labels(feed) == {("7d", "all"), ("30d", "all")}
    assert feed.summary("1h")["enps"] is None
    assert feed.summary("7d")["enps"] == pytest.approx(100.0 * (4 - 1) / 5)
    assert feed.summary("30d")["enps_by_team"] == {}


# -- zero denominators and finite exports -------------------------------------------------


@pytest.mark.parametrize("window", WINDOW_NAMES)
def test_with_no_data_every_ratio_is_none_never_nan(window: str) -> None:
    summary = {kpi.name: kpi.summarize(Series(), window) for kpi in KPIS}
    assert summary["acquisition"]["conversion"] is None
    assert summary["acquisition"]["cac"] == {}
    assert summary["sales"]["win_rate"] is None
    assert summary["nps"]["nps"] is None
    assert summary["enps"]["enps"] is None
    assert summary["expansion"]["expansion_rate"] is None
    assert summary["leads"]["attainment"] is None
    assert summary["engagement"]["at_risk_share"] is None
    assert summary["pricing"]["prices"] == []
    assert b"NaN" not in orjson.dumps(summary)


def test_an_empty_engine_reports_null_ratios_as_json() -> None:
    view = Engine(clock=FIXED_CLOCK).kpis_view([])
    body = orjson.loads(orjson.dumps(view))
    for window in WINDOW_NAMES:
        w = body["windows"][window]
        assert w["acquisition"]["conversion"] is None
        assert w["sales"]["win_rate"] is None
        assert w["nps"]["nps"] is None
        assert w["enps"]["enps"] is None
        assert w["expansion"]["expansion_rate"] is None
        assert w["leads"]["attainment"] is None


def test_cac_without_acquisitions_is_none() -> None:
    feed = Feed(acquisition.KPI)
    feed.add("marketing.spend", T - MINUTE, channel="web", amount=500.0, currency="EUR")
    summary = feed.summary("1h")
    assert summary["marketing_spend"] == {"web/EUR": 500.0}
    assert summary["cac"] == {"web/EUR": None}


def test_attainment_without_a_target_is_none_and_with_a_target_is_prorated() -> None:
    feed = Feed(leads.KPI)
    lead(feed, T - MINUTE, rep="r-1")
    assert feed.summary("24h")["attainment"] is None
    targets = {("north", "r-1"): 30.0, ("north", "r-2"): 60.0}
    series = series_of(feed.kpi.samples([feed.state], ExportContext(CLOCK, targets)))
    summary = feed.kpi.summarize(series, "24h")
    assert summary["lead_target"] == pytest.approx(3.0)  # (30 + 60) * 1 / 30
    assert summary["attainment"] == pytest.approx(1 / 3)
    assert summary["attainment_by_rep"] == {"r-1": pytest.approx(1.0), "r-2": 0.0}
    assert feed.kpi.summarize(series, "1h")["lead_target"] == pytest.approx(90 / 720)


def test_a_competitor_price_of_zero_gives_no_price_index() -> None:
    feed = Feed(pricing.KPI)
    feed.add("product.price_set", T - HOUR, product="crm", price=79.0, currency="USD")
    feed.add(
        "competitor.price_observed", T - HOUR, product="crm", competitor="free", price=0.0, currency="USD"
    )
    (row,) = feed.summary("24h")["prices"]
    assert row["price_index"] is None
    assert row["list_price"] == 79.0


def test_exported_samples_and_views_are_always_finite() -> None:
    engine = engine_with(mixed_events(), targets={("north", "r-1"): 20.0})
    for clock in (T, T + 45 * DAY):
        engine.fixed_clock = Clock(clock)
        samples = list(engine.samples([0]))
        assert samples
        for name, labels, value in samples:
            assert math.isfinite(value), (name, labels, value)
        view = engine.kpis_view([0])
        for value in numbers(view):
            assert math.isfinite(value)


# -- pricing -------------------------------------------------------------------------------


def test_price_index_pairs_only_the_same_currency() -> None:
    feed = Feed(pricing.KPI)
    feed.add("product.price_set", T - HOUR, product="crm", price=80.0, currency="USD")
    feed.add("product.price_set", T - HOUR, product="crm", price=90.0, currency="EUR")
    feed.add(
        "competitor.price_observed", T - HOUR, product="crm", competitor="acme", price=100.0, currency="USD"
    )
    feed.add(
        "competitor.price_observed", T - HOUR, product="crm", competitor="acme", price=60.0, currency="GBP"
    )
    rows = {row["currency"]: row for row in feed.summary("1h")["prices"]}
    assert set(rows) == {"USD", "GBP"}
    assert rows["USD"]["list_price"] == 80.0
    assert rows["USD"]["price_index"] == pytest.approx(0.8)
    assert rows["GBP"]["list_price"] is None
    assert rows["GBP"]["price_index"] is None


def test_a_competitor_price_before_any_list_price_has_no_index_and_no_list_price_export() -> None:
    feed = Feed(pricing.KPI)
    feed.add(
        "competitor.price_observed", T - HOUR, product="crm", competitor="acme", price=70.0, currency="USD"
    )
    assert [name for name, _, _ in feed.samples()] == ["salespulse_competitor_price"]
    (row,) = feed.summary("1h")["prices"]
    assert row == {
        "product": "crm",
        "competitor": "acme",
        "currency": "USD",
        "competitor_price": 70.0,
        "list_price": None,
        "price_index": None,
    }


def test_the_latest_price_is_by_occurred_at_not_by_arrival() -> None:
    feed = Feed(pricing.KPI)
    feed.add("product.price_set", T - HOUR, product="crm", price=80.0, currency="USD")
    feed.add("product.price_set", T - 2 * HOUR, product="crm", price=50.0, currency="USD")
    assert feed.value("salespulse_list_price", product="crm", currency="USD") == 80.0


def test_of_two_prices_at_the_same_time_the_higher_offset_wins() -> None:
    feed = Feed(pricing.KPI)
    feed.add(
        "competitor.price_observed",
        T - HOUR,
        offset=3,
        product="crm",
        competitor="acme",
        price=70.0,
        currency="USD",
    )
    feed.add(
        "competitor.price_observed",
        T - HOUR,
        offset=5,
        product="crm",
        competitor="acme",
        price=75.0,
        currency="USD",
    )
    feed.add(
        "competitor.price_observed",
        T - HOUR,
        offset=4,
        product="crm",
        competitor="acme",
        price=72.0,
        currency="USD",
    )
    assert feed.value("salespulse_competitor_price", product="crm", competitor="acme", currency="USD") == 75.0


def test_prices_of_any_age_count() -> None:
    feed = Feed(pricing.KPI)
    feed.add("product.price_set", T - 90 * DAY, late=True, product="crm", price=80.0, currency="USD")
    assert feed.value("salespulse_list_price", product="crm", currency="USD") == 80.0


# -- engagement ------------------------------------------------------------------------------


def activity(feed: Feed, t: int, customer: str = "C-1", channel: str = "email", **kw: Any) -> None:
    feed.add("customer.activity", t, customer_id=customer, channel=channel, **kw)


def engaged(feed: Feed, window: str, clock: Clock | None = None) -> float | None:
    return feed.value("salespulse_customers_engaged", clock, window=window)


def test_two_activities_of_one_customer_count_once_as_engaged() -> None:
    feed = Feed(engagement.KPI)
    activity(feed, T - 10 * MINUTE, channel="email")
    activity(feed, T - 5 * MINUTE, channel="call")
    activity(feed, T - 5 * MINUTE, customer="C-2")
    assert engaged(feed, "1h") == 2
    summary = feed.summary("1h")
    assert summary["activities"] == 3
    assert summary["activities_by_channel"] == {"email": 2, "call": 1}


def test_a_customers_older_activity_arriving_later_does_not_move_it() -> None:
    feed = Feed(engagement.KPI)
    activity(feed, T - 5 * MINUTE)
    activity(feed, T - 10 * DAY)
    assert {w: engaged(feed, w) for w in WINDOW_NAMES} == {"1h": 1, "24h": 1, "7d": 1, "30d": 1}
    assert feed.state.profile("C-1")["last_activity_minute"] == CM - 5
    assert feed.summary("30d")["activities"] == 2


def test_a_newer_activity_moves_the_customer_out_of_the_shorter_window_only_forward() -> None:
    feed = Feed(engagement.KPI)
    activity(feed, T - 10 * DAY)
    assert {w: engaged(feed, w) for w in WINDOW_NAMES} == {"1h": 0, "24h": 0, "7d": 0, "30d": 1}
    activity(feed, T - 5 * MINUTE)
    assert {w: engaged(feed, w) for w in WINDOW_NAMES} == {"1h": 1, "24h": 1, "7d": 1, "30d": 1}


def test_a_late_activity_moves_the_latest_activity_but_no_windowed_count() -> None:
    feed = Feed(engagement.KPI)
    activity(feed, T - 70 * DAY, late=True)
    assert feed.summary("30d")["activities"] == 0
    assert feed.state.profile("C-1")["last_activity_minute"] == (T - 70 * DAY) // MINUTE


def at_risk(feed: Feed, clock: Clock | None = None) -> float | None:
    return feed.value("salespulse_customers_at_risk", clock)


def test_a_known_customer_last_touched_31_days_ago_is_at_risk() -> None:
    feed = Feed(engagement.KPI)
    won(feed, T - 31 * DAY, customer_id="C-1")
    activity(feed, T - 31 * DAY)
    activity(feed, T - 31 * DAY, customer="C-unknown")
    won(feed, T - 29 * DAY, customer_id="C-2")
    assert feed.value("salespulse_customers_known") == 2
    assert at_risk(feed) == 1
    assert feed.summary("1h")["at_risk_share"] == 0.5


def test_at_risk_is_strictly_before_cm_minus_43200() -> None:
    feed = Feed(engagement.KPI)
    won(feed, (CM - 43200) * MINUTE, customer_id="C-edge")
    won(feed, (CM - 43201) * MINUTE + 59, customer_id="C-old")
    assert at_risk(feed) == 1
    assert at_risk(feed, Clock(T + MINUTE)) == 2


def test_a_new_activity_takes_a_customer_off_at_risk_and_time_puts_it_back() -> None:
    feed = Feed(engagement.KPI)
    won(feed, T - 31 * DAY, customer_id="C-1")
    assert at_risk(feed) == 1
    activity(feed, T - HOUR)
    assert at_risk(feed) == 0
    later = T - HOUR + 30 * DAY
    assert at_risk(feed, Clock(later)) == 0
    assert at_risk(feed, Clock(later + MINUTE)) == 1
    # refreshes are incremental: jumping far ahead and applying at the new clock stays right
    feed.clock = Clock(T + 40 * DAY)
    activity(feed, T + 40 * DAY - MINUTE)
    assert at_risk(feed, Clock(T + 40 * DAY)) == 0
    assert at_risk(feed, Clock(T + 71 * DAY)) == 1


def test_an_older_activity_arriving_later_does_not_take_a_customer_off_at_risk() -> None:
    feed = Feed(engagement.KPI)
    won(feed, T - 31 * DAY, customer_id="C-1")
    activity(feed, T - 31 * DAY - HOUR)
    assert at_risk(feed) == 1


def test_a_new_deal_takes_a_customer_off_at_risk() -> None:
    feed = Feed(engagement.KPI)
    won(feed, T - 40 * DAY, customer_id="C-1")
    assert at_risk(feed) == 1
    won(feed, T - DAY, customer_id="C-1")
    assert at_risk(feed) == 0
    assert feed.value("salespulse_customers_known") == 1


def test_a_late_deal_still_makes_a_customer_known() -> None:
    feed = Feed(engagement.KPI)
    won(feed, T - 80 * DAY, customer_id="C-1", late=True)
    assert feed.value("salespulse_customers_known") == 1
    assert at_risk(feed) == 1


# -- acquisition ---------------------------------------------------------------------------


def test_a_new_deal_without_source_counts_under_unknown() -> None:
    feed = Feed(acquisition.KPI)
    feed.add(
        "deal.won",
        T - MINUTE,
        kind="new",
        customer_id="C",
        rep_id="r",
        region="n",
        product="p",
        amount=1.0,
        currency="USD",
        deal_id="D",
    )
    assert feed.summary("1h")["acquired_by_source"] == {"unknown": 1}


@pytest.mark.parametrize("kind", ["upsell", "cross_sell", "renewal"])
def test_only_new_deals_acquire_customers(kind: str) -> None:
    feed = Feed(acquisition.KPI)
    won(feed, T - MINUTE, kind=kind)
    assert feed.summary("1h")["customers_acquired"] == 0


def test_conversion_and_cac_per_channel_and_currency() -> None:
    lead_feed, acq = Feed(leads.KPI), Feed(acquisition.KPI)
    for _ in range(4):
        lead(lead_feed, T - MINUTE, source="web", rep="r-1")
    for _ in range(4):
        lead(lead_feed, T - MINUTE, source="referral", rep="r-2")
    won(acq, T - MINUTE, source="web", rep_id="r-1")
    won(acq, T - MINUTE, source="web", rep_id="r-1")
    won(acq, T - MINUTE, source="referral", rep_id="r-2")
    acq.add("marketing.spend", T - MINUTE, channel="web", amount=1000.0, currency="EUR")
    acq.add("marketing.spend", T - MINUTE, channel="web", amount=300.0, currency="USD")
    acq.add("marketing.spend", T - MINUTE, channel="event", amount=50.0, currency="USD")
    series = series_of([*lead_feed.samples(), *acq.samples()])
    summary = acquisition.KPI.summarize(series, "1h")
    assert summary["customers_acquired"] == 3
    assert summary["leads"] == 8
    assert summary["conversion"] == pytest.approx(3 / 8)
    assert summary["conversion_by_rep"] == {"r-1": pytest.approx(0.5), "r-2": pytest.approx(0.25)}
    assert summary["marketing_spend"] == {"event/USD": 50.0, "web/EUR": 1000.0, "web/USD": 300.0}
    assert summary["cac"] == {"event/USD": None, "web/EUR": 500.0, "web/USD": 150.0}


def test_spend_amounts_are_summed_exactly_in_micro_units() -> None:
    feed = Feed(acquisition.KPI)
    for _ in range(10):
        feed.add("marketing.spend", T - MINUTE, channel="web", amount=0.1, currency="EUR")
    assert feed.summary("1h")["marketing_spend"] == {"web/EUR": 1.0}


# -- sales and expansion -------------------------------------------------------------------


def test_win_rate_is_won_over_won_plus_lost_and_all_kinds_are_exported_per_region() -> None:
    feed = Feed(sales.KPI)
    won(feed, T - MINUTE, kind="upsell", amount=10.0, region="north")
    won(feed, T - MINUTE, kind="new", amount=5.5, region="north", currency="EUR")
    feed.add("deal.lost", T - MINUTE, deal_id="X", rep_id="r", region="south")
    summary = feed.summary("1h")
    assert summary["win_rate"] == pytest.approx(2 / 3)
    assert summary["win_rate_by_region"] == {"north": 1.0, "south": 0.0}
    assert summary["amount_by_region"] == {"north": {"USD": 10.0, "EUR": 5.5}}
    kinds = {lab["kind"] for name, lab, _ in feed.samples() if name == "salespulse_deals_won"}
    assert kinds == {"new", "upsell", "cross_sell", "renewal"}


def test_expansion_rate_is_upsell_plus_cross_sell_over_all_deals() -> None:
    feed = Feed(expansion.KPI)
    for kind, amount in [
        ("upsell", 100.0),
        ("upsell", 50.0),
        ("cross_sell", 25.0),
        ("new", 1.0),
        ("renewal", 2.0),
    ]:
        won(feed, T - MINUTE, kind=kind, amount=amount)
    summary = feed.summary("1h")
    assert (summary["upsell"], summary["cross_sell"], summary["deals_won"]) == (2, 1, 5)
    assert summary["expansion_rate"] == pytest.approx(3 / 5)
    assert summary["expansion_amount"] == {"USD": 175.0}
    assert feed.value("salespulse_expansion_amount", window="1h", currency="USD", kind="upsell") == 150.0
    assert feed.value("salespulse_expansion_amount", window="1h", currency="USD", kind="cross_sell") == 25.0


def test_expansion_rate_with_only_new_deals_is_zero_not_none() -> None:
    feed = Feed(expansion.KPI)
    won(feed, T - MINUTE, kind="new")
    assert feed.summary("1h")["expansion_rate"] == 0.0


# -- label cap -------------------------------------------------------------------------------


def test_with_a_cap_of_2_a_third_region_folds_into_other() -> None:
    feed = Feed(leads.KPI, cap=2)
    for region in ("north", "south", "east", "west"):
        lead(feed, T - MINUTE, region=region)
    assert feed.summary("1h")["leads_by_region"] == {"north": 1, "south": 1, "other": 2}


def test_the_cap_is_per_label_name() -> None:
    feed = Feed(leads.KPI, cap=2)
    lead(feed, T - MINUTE, region="north", source="web", rep="r-1")
    lead(feed, T - MINUTE, region="south", source="referral", rep="r-2")
    lead(feed, T - MINUTE, region="north", source="event", rep="r-1")
    summary = feed.summary("1h")
    assert summary["leads_by_region"] == {"north": 2, "south": 1}
    assert summary["leads_by_source"] == {"web": 1, "referral": 1, "other": 1}
