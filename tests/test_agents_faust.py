"""Each of the eight faust agents, driven one event at a time with ``agent.test_context()``.

No broker is involved. ``runtime.persist`` normally writes the changelog and dead letters
through the app's Kafka producer, which does not exist under ``test_context``; for these
unit tests of one agent it is replaced by a recorder of the engine's
:class:`~salespulse.streams.pipeline.engine.Output`, which is what the agent hands to it. That is fine here:
persisting is not what these tests are about, and the recorded changelog is checked (it
must restore to the same numbers).

How faust fabricates the message (faust-streaming 0.15.3,
``AgentTestWrapper.to_message``): ``topic`` is the name of the agent's channel when that is
a single-topic description, and the literal ``"<internal>"`` otherwise (``get_topic_name()``
raises ``ValueError`` for several topics); ``partition`` is ``partition or 0``; ``offset`` counts
the wrapper's puts from 0; ``timestamp`` is ``time()`` in seconds. The ``acquisition``
(crm.deals + crm.market) and ``engagement`` (crm.activities + crm.deals) agents subscribe to two
topics, so for them the message must be given its contract topic before it is delivered,
or the engine cannot route it (see ``test_faust_names_the_message_topic_...``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from faust.types import TP

from salespulse.agents.registry import KPIS
from salespulse.schemas.event_time import format_time, parse_time
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import route
from salespulse.streams.pipeline.app import SalesPulseApp, create_app
from salespulse.streams.pipeline.engine import Engine, Output
from salespulse.streams.settings import Settings

FIXED_CLOCK = "2026-11-26T12:00:00Z"
T = parse_time(FIXED_CLOCK)
MINUTE, HOUR, DAY = 60, 3600, 86400
PARTITIONS = 4
MULTI_TOPIC = {"acquisition", "engagement", "detractors", "forecast"}


class Harness:
    """The app, its runtime, and what the agents asked to persist."""

    def __init__(self, tmp_path: Path) -> None:
        settings = Settings.from_env(
            {
                "SALESPULSE_CLOCK": FIXED_CLOCK,
                "SALESPULSE_DATA_DIR": str(tmp_path),
                "SALESPULSE_PARTITIONS": str(PARTITIONS),
            }
        )
        self.app: SalesPulseApp
        self.app, self.runtime = create_app(settings)
        self.outputs: list[tuple[int, Output]] = []

        async def record(partition: int, out: Output) -> None:
            self.outputs.append((partition, out))

        # Unit test of one agent: no producer exists under test_context, so record instead.
        self.runtime.persist = record  # type: ignore[method-assign]

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    def view(self) -> dict[str, Any]:
        return self.engine.kpis_view(self.engine.partitions)

    def windows(self, kpi: str) -> dict[str, dict[str, Any]]:
        return {w: summary[kpi] for w, summary in self.view()["windows"].items()}

    def changelog(self) -> list[tuple[bytes, bytes]]:
        return [rec for _, out in self.outputs for rec in out.changelog]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    yield Harness(tmp_path)


def event(type_: str, t: int, event_id: str, **data: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "occurred_at": format_time(t),
        "source": "test",
        "data": data,
    }


def on_topic(ctx: Any, topic: str) -> Callable[..., Any]:
    """``ctx.to_message``, but the fabricated message carries ``topic`` (see the module doc)."""
    make = type(ctx).to_message

    def to_message(key: Any, value: Any, **kw: Any) -> Any:
        message = make(ctx, key, value, **kw)
        message.topic = topic
        message.tp = TP(topic, message.partition)
        return message

    return to_message


async def put(ctx: Any, ev: dict[str, Any], *, partition: int | None = None) -> Any:
    """Deliver one event the way a producer following the contract would (unless told where)."""
    topic, key = route(ev)
    if partition is None:
        partition = partition_for(key, PARTITIONS)
    if ctx.name.removeprefix("kpi-") in MULTI_TOPIC:
        ctx.to_message = on_topic(ctx, topic)
    sent = await ctx.put(orjson.dumps(ev), key=key, partition=partition)
    assert (sent.message.topic, sent.message.partition, sent.message.key) == (topic, partition, key)
    return sent


async def drive(h: Harness, kpi: str, events: list[dict[str, Any]]) -> None:
    agent = h.app.agents[f"kpi-{kpi}"]
    async with agent.test_context() as ctx:
        for ev in events:
            await put(ctx, ev)
    assert len(h.outputs) == len(events)
    assert sorted(h.engine.partitions) == sorted({partition_for(route(ev)[1], PARTITIONS) for ev in events})


def assert_persisted(h: Harness, kpi: str) -> None:
    """Every agent call produced changelog records (state and meta) and no dead letters."""
    for p, out in h.outputs:
        assert out.deadletters == []
        assert out.forwards == []
        keys = [orjson.loads(k) for k, _ in out.changelog]
        assert [k[1:] for k in keys if k[2] == "meta"], keys
        assert {k[1] for k in keys} == {p}
    state_keys = [orjson.loads(k) for k, _ in h.changelog()]
    assert any(k[2] == kpi for k in state_keys), state_keys
    # the recorded changelog restores to the same numbers
    restored = Engine(clock=FIXED_CLOCK)
    for key, value in h.changelog():
        restored.restore(key, value)
    assert restored.kpis_view(restored.partitions)["windows"] == h.view()["windows"]


def won(t: int, event_id: str, kind: str = "new", customer: str = "C-1", **kw: Any) -> dict[str, Any]:
    data = {
        "deal_id": f"D-{event_id}",
        "customer_id": customer,
        "rep_id": "r-07",
        "region": "north",
        "product": "crm-pro",
        "kind": kind,
        "amount": 15000.0,
        "currency": "USD",
        "source": "web",
        **kw,
    }
    return event("deal.won", t, event_id, **{k: v for k, v in data.items() if v is not None})


# -- the eight agents ------------------------------------------------------------------------


async def test_kpi_leads_agent_counts_leads_and_opportunities(harness: Harness) -> None:
    h = harness
    await drive(
        h,
        "leads",
        [
            event(
                "lead.created", T - 2 * HOUR, "l1", lead_id="L-1", rep_id="r-07", region="north", source="web"
            ),
            event(
                "lead.created", T - MINUTE, "l2", lead_id="L-2", rep_id="r-07", region="north", source="event"
            ),
            event(
                "opportunity.created",
                T - MINUTE,
                "o1",
                opportunity_id="O-1",
                rep_id="r-07",
                region="north",
                amount=12000.0,
                currency="USD",
            ),
        ],
    )
    w = h.windows("leads")
    assert (w["1h"]["leads"], w["24h"]["leads"], w["24h"]["opportunities"]) == (1, 2, 1)
    assert w["24h"]["leads_by_source"] == {"web": 1, "event": 1}
    assert w["24h"]["attainment"] is None
    assert h.view()["counters"]["events"]["lead.created"] == 2
    assert_persisted(h, "leads")


async def test_kpi_acquisition_agent_counts_acquisitions_and_spend(harness: Harness) -> None:
    h = harness
    await drive(
        h,
        "acquisition",
        [
            won(T - HOUR, "w1", kind="new", source="campaign"),
            won(T - HOUR, "w2", kind="new", customer="C-2", source=None),  # no source: "unknown"
            won(T - HOUR, "w3", kind="upsell", customer="C-3"),
            event("marketing.spend", T - 2 * HOUR, "s1", channel="campaign", amount=2500.0, currency="EUR"),
        ],
    )
    w = h.windows("acquisition")["24h"]
    assert w["customers_acquired"] == 2
    assert w["acquired_by_source"] == {"campaign": 1, "unknown": 1}
    assert w["marketing_spend"] == {"campaign/EUR": 2500.0}
    assert w["cac"] == {"campaign/EUR": 2500.0}
    assert w["conversion"] is None  # no leads: this agent does not count them
    assert_persisted(h, "acquisition")


async def test_kpi_sales_agent_counts_deals_amounts_and_win_rate(harness: Harness) -> None:
    h = harness
    await drive(
        h,
        "sales",
        [
            won(T - HOUR, "w1", kind="new", amount=15000.0),
            won(T - HOUR, "w2", kind="renewal", amount=500.5, currency="EUR"),
            event("deal.lost", T - HOUR, "x1", deal_id="D-2", rep_id="r-03", region="berlin", reason="price"),
        ],
    )
    w = h.windows("sales")["24h"]
    assert (w["deals_won"], w["deals_lost"]) == (2, 1)
    assert w["win_rate"] == pytest.approx(2 / 3)
    assert w["amount_by_region"] == {"north": {"USD": 15000.0, "EUR": 500.5}}
    assert w["win_rate_by_region"] == {"berlin": 0.0, "north": 1.0}
    assert_persisted(h, "sales")


async def test_kpi_pricing_agent_keeps_latest_prices_and_the_index(harness: Harness) -> None:
    h = harness
    await drive(
        h,
        "pricing",
        [
            event("product.price_set", T - 3 * HOUR, "p1", product="crm-pro", price=79.0, currency="USD"),
            event("product.price_set", T - 4 * HOUR, "p0", product="crm-pro", price=99.0, currency="USD"),
            event(
                "competitor.price_observed",
                T - 3 * HOUR,
                "c1",
                competitor="acme-crm",
                product="crm-pro",
                price=74.5,
                currency="USD",
            ),
            event(
                "competitor.price_observed",
                T - 3 * HOUR,
                "c2",
                competitor="acme-crm",
                product="crm-pro",
                price=60.0,
                currency="EUR",
            ),
        ],
    )
    rows = {r["currency"]: r for r in h.windows("pricing")["24h"]["prices"]}
    assert rows["USD"]["list_price"] == 79.0
    assert rows["USD"]["price_index"] == pytest.approx(79.0 / 74.5)
    assert rows["EUR"]["price_index"] is None
    assert_persisted(h, "pricing")


async def test_kpi_engagement_agent_counts_engaged_known_and_at_risk(harness: Harness) -> None:
    h = harness
    await drive(
        h,
        "engagement",
        [
            event("customer.activity", T - 5 * MINUTE, "a1", customer_id="C-1", channel="meeting"),
            event("customer.activity", T - 3 * MINUTE, "a2", customer_id="C-1", channel="email"),
            event("customer.activity", T - 2 * DAY, "a3", customer_id="C-2", channel="call"),
            won(T - 10 * DAY, "w1", customer="C-1"),
            won(T - 31 * DAY, "w2", customer="C-3"),
        ],
    )
    w = h.windows("engagement")
    assert w["1h"]["customers_engaged"] == 1
    assert w["7d"]["customers_engaged"] == 2
    assert w["1h"]["activities_by_channel"] == {"meeting": 1, "email": 1, "call": 0}
    assert w["1h"]["customers_known"] == 2
    assert w["1h"]["customers_at_risk"] == 1
    assert w["1h"]["at_risk_share"] == 0.5
    assert_persisted(h, "engagement")


async def test_kpi_enps_agent_scores_teams_with_enough_responses(harness: Harness) -> None:
    h = harness
    scores = [10, 9, 9, 7, 0]
    await drive(
        h,
        "enps",
        [
            event("survey.answered", T - HOUR, f"e{i}", survey="enps", score=s, team="platform")
            for i, s in enumerate(scores)
        ]
        + [event("survey.answered", T - HOUR, "small", survey="enps", score=0, team="tiny")],
    )
    w = h.windows("enps")
    assert w["24h"]["responses"] == 6
    assert w["24h"]["enps"] == pytest.approx(100.0 * (3 - 2) / 6)
    assert w["24h"]["enps_by_team"] == {}
    assert w["30d"]["enps_by_team"] == {"platform": pytest.approx(40.0)}
    assert w["1h"]["responses"] == 0
    assert_persisted(h, "enps")


async def test_kpi_expansion_agent_computes_the_expansion_rate(harness: Harness) -> None:
    h = harness
    await drive(
        h,
        "expansion",
        [
            won(T - HOUR, "w1", kind="upsell", amount=1000.0),
            won(T - HOUR, "w2", kind="cross_sell", amount=250.0, currency="EUR"),
            won(T - HOUR, "w3", kind="new"),
            won(T - HOUR, "w4", kind="renewal"),
        ],
    )
    w = h.windows("expansion")["24h"]
    assert (w["upsell"], w["cross_sell"], w["deals_won"]) == (1, 1, 4)
    assert w["expansion_rate"] == pytest.approx(0.5)
    assert w["expansion_amount"] == {"USD": 1000.0, "EUR": 250.0}
    assert_persisted(h, "expansion")


async def test_kpi_nps_agent_scores_answers_and_keeps_each_customers_latest(harness: Harness) -> None:
    h = harness
    answer = {"survey": "nps", "region": "north", "product": "crm-pro"}
    await drive(
        h,
        "nps",
        [
            event("survey.answered", T - HOUR, "n1", score=9, customer_id="C-1", **answer),
            event("survey.answered", T - HOUR, "n2", score=6, customer_id="C-2", **answer),
            event("survey.answered", T - HOUR, "n3", score=8, customer_id="C-3", **answer),
            event("survey.answered", T - 2 * HOUR, "n4", score=0, customer_id="C-1", **answer),
        ],
    )
    w = h.windows("nps")["24h"]
    assert (w["promoters"], w["passives"], w["detractors"]) == (1, 1, 2)
    assert w["nps"] == pytest.approx(-25.0)
    assert w["customers_by_latest_category"] == {"promoter": 1, "passive": 1, "detractor": 1}
    assert_persisted(h, "nps")


# -- what faust does under test_context --------------------------------------------------------


@pytest.mark.parametrize("kpi", [k.name for k in KPIS])
async def test_faust_names_the_message_topic_after_a_single_topic_channel_only(
    harness: Harness, kpi: str
) -> None:
    agent = harness.app.agents[f"kpi-{kpi}"]
    async with agent.test_context() as ctx:
        message = ctx.to_message(b"k", b"v", partition=3, offset=0)
    topics = sorted(next(k for k in KPIS if k.name == kpi).topics)
    if kpi in MULTI_TOPIC:
        assert len(topics) >= 2
        assert message.topic == "<internal>"
    else:
        assert [message.topic] == topics
    assert message.partition == 3


async def test_a_duplicate_delivery_through_an_agent_is_counted_once(harness: Harness) -> None:
    h = harness
    ev = event("lead.created", T - MINUTE, "same", lead_id="L-1", rep_id="r", region="n", source="web")
    await drive(h, "leads", [ev, ev])
    assert h.windows("leads")["1h"]["leads"] == 1
    assert h.view()["counters"]["duplicates"] == 1


async def test_an_event_on_the_wrong_topic_goes_to_the_dead_letters(harness: Harness) -> None:
    h = harness
    lead = event("lead.created", T - MINUTE, "l1", lead_id="L-1", rep_id="r", region="n", source="web")
    async with h.app.agents["kpi-sales"].test_context() as ctx:
        await ctx.put(orjson.dumps(lead), key=b"L-1")  # delivered on crm.deals
    ((_, out),) = h.outputs
    assert [dl.reason for dl in out.deadletters] == ["wrong_topic"]
    assert h.windows("leads")["1h"]["leads"] == 0


async def test_latency_observed_through_an_agent_is_seconds_since_the_message(harness: Harness) -> None:
    h = harness
    ev = event("lead.created", T - MINUTE, "l1", lead_id="L-1", rep_id="r", region="n", source="web")
    async with h.app.agents["kpi-leads"].test_context() as ctx:
        await ctx.put(
            orjson.dumps(ev), key=b"L-1", partition=partition_for(b"L-1", PARTITIONS), timestamp=time.time()
        )
    ((_, out),) = h.outputs
    assert len(out.latencies()) == 1
    assert 0.0 <= out.latencies()[0] < 60.0


async def test_an_event_on_a_partition_its_key_does_not_belong_to_is_forwarded_not_applied(
    harness: Harness,
) -> None:
    h = harness
    ev = event("lead.created", T - MINUTE, "l1", lead_id="L-1", rep_id="r", region="n", source="web")
    right = partition_for(b"L-1", PARTITIONS)
    wrong = (right + 1) % PARTITIONS
    async with h.app.agents["kpi-leads"].test_context() as ctx:
        await put(ctx, ev, partition=wrong)
    ((_, out),) = h.outputs
    assert [(f.topic, f.partition, f.key) for f in out.forwards] == [("crm.leads", right, b"L-1")]
    assert out.deadletters == []
    assert h.windows("leads")["1h"]["leads"] == 0
    assert h.view()["counters"]["rerouted"]["crm.leads"] == 1
