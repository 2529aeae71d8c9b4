"""The vtiger poller's memory over weeks, in one process with a clock the test moves.

A real broker and the fake vtiger (tests/vtiger_fake.py); what the poller produced is read
back from the broker's topics, and its memory from the compacted state topic, as a
restarted connector would read it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from salespulse.schemas.topics import INPUT_TOPICS
from salespulse.streams.endpoints.connectors.vtiger import service
from salespulse.streams.endpoints.connectors.vtiger.metrics import ConnectorMetrics
from salespulse.streams.endpoints.connectors.vtiger.poller import VtigerPoller
from salespulse.streams.endpoints.connectors.vtiger.records import crm_account
from salespulse.streams.endpoints.connectors.vtiger.state import STATE, STATE_TOPIC, StateStore
from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.kafka.admin import connector_state_topic, ensure_topics
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import EmbeddedBroker
from tests.conftest import records
from tests.vtiger_fake import FakeVtiger


class Clock:
    """The connector's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def connections(broker: EmbeddedBroker, fake: FakeVtiger) -> Iterator[Any]:
    """Factory of connector connections (a start, or a restart) sharing one moving clock."""
    opened: list[service.Connection] = []
    settings = Settings.from_env(
        {
            "SALESPULSE_BROKER": broker.bootstrap,
            "SALESPULSE_PARTITIONS": "4",
            "SALESPULSE_VTIGER_URL": fake.url,
            "SALESPULSE_VTIGER_USER": fake.user,
            "SALESPULSE_VTIGER_ACCESS_KEY": fake.access_key,
            "SALESPULSE_VTIGER_SINCE": "2026-10-01",
        }
    )

    def connect(clock: Clock) -> tuple[VtigerPoller, ConnectorMetrics]:
        metrics = ConnectorMetrics("vtiger", reasons=(), event_types=(), skips=(), started=time.time())
        connection = service.Connection(settings, service._translator(settings), metrics)
        opened.append(connection)
        connection.poller.clock = clock
        return connection.poller, metrics

    yield connect
    for connection in opened:
        connection.close()


def produced(broker: EmbeddedBroker) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records(broker.bootstrap, INPUT_TOPICS)]


def of_type(broker: EmbeddedBroker, event_type: str) -> list[dict[str, Any]]:
    return [e for e in produced(broker) if e["type"] == event_type]


def skipped(metrics: ConnectorMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "salespulse_connector_records_skipped_total", {"connector": "vtiger", "reason": reason}
    )
    return float(value or 0)


def test_a_deals_outcome_is_remembered_for_life_while_facts_past_the_retention_are_tombstoned(
    broker: EmbeddedBroker, fake: FakeVtiger, connections: Any
) -> None:
    clock = Clock(datetime(2026, 11, 3, 12, tzinfo=UTC))
    shopper = fake.add("Contacts", "2026-11-01 08:00:00")
    lead = fake.add("Leads", "2026-11-02 09:00:00")
    deal = fake.add(
        "Potentials",
        "2026-11-02 09:00:00",
        "2026-11-03 10:00:00",
        contact_id=shopper,
        sales_stage="Closed Won",
    )
    poller, _ = connections(clock)
    assert poller.poll() == (3, {})

    clock.now += timedelta(days=63)
    assert poller.poll() == (0, {})  # the memory is trimmed as the poll ends
    poller, metrics = connections(clock)  # a restart reads the memory from the compacted topic
    assert poller.state.facts == {deal: {"deal.won": "2026-11-03T10:00:00Z"}}
    newest = {r.key: r.value for r in records(broker.bootstrap, (STATE_TOPIC,))}
    assert newest[f"vtiger|{crm_account(fake.url)}|fact|{lead}".encode()] is None, "a tombstone"

    # 63 days later: the deal reopened and won again, the lead edited.
    fake.edit(deal, "2027-01-05 10:00:00", sales_stage="Negotiation or Review")
    assert poller.poll() == (0, {})
    fake.edit(deal, "2027-01-05 11:00:00", sales_stage="Closed Won")
    fake.edit(lead, "2027-01-05 12:00:00", city="Tehran")
    assert poller.poll() == (0, {})
    (won,) = of_type(broker, "deal.won")
    assert (won["data"]["deal_id"], won["data"]["customer_id"]) == (deal, shopper)
    assert len(of_type(broker, "lead.created")) == len(of_type(broker, "opportunity.created")) == 1
    too_old = skipped(metrics, "past_retention")
    assert too_old == 3, "too old to send again: the lead, and the deal's opening at each of its two reads"


def test_a_planned_meeting_is_held_and_produced_at_the_first_poll_after_it_starts(
    broker: EmbeddedBroker, fake: FakeVtiger, connections: Any
) -> None:
    clock = Clock(datetime(2026, 11, 20, 12, tzinfo=UTC))
    org = fake.add("Accounts", "2026-11-01 08:00:00")

    def meeting(day: str) -> str:
        return fake.add(
            "Events",
            "2026-11-20 11:00:00",
            activitytype="Meeting",
            date_start=day,
            time_start="10:00:00",
            parent_id=org,
        )

    kept, moved, cancelled = meeting("2026-11-27"), meeting("2026-11-27"), meeting("2026-11-27")
    poller, metrics = connections(clock)
    assert poller.poll() == (0, {})
    assert set(poller.state.held) == {kept, moved, cancelled}
    fake.edit(moved, "2026-11-21 09:00:00", date_start="2026-12-04")  # rescheduled
    fake.delete(cancelled)

    clock.now = datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC)
    assert poller.poll() == (1, {})
    assert skipped(metrics, "deleted") == 1
    clock.now = datetime(2026, 12, 4, 10, 5, tzinfo=UTC)
    poller, _ = connections(clock)  # held records survive a restart
    assert poller.poll() == (1, {})
    assert poller.poll() == (0, {})

    times = sorted(e["occurred_at"] for e in of_type(broker, "customer.activity"))
    assert times == ["2026-11-27T10:00:00Z", "2026-12-04T10:00:00Z"]
    assert connections(clock)[0].state.held == {}


def test_loading_a_large_memory_fails_only_when_the_read_stops_moving_not_after_a_fixed_time(
    broker: EmbeddedBroker,
) -> None:
    fast = Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap, "SALESPULSE_BROKER_TIMEOUT": "0.3"})
    ensure_topics(fast, [connector_state_topic(fast)])  # one partition, as the connector creates it
    with EventProducer(Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap})) as producer:
        for i in range(200_000):
            producer.send_raw(
                STATE_TOPIC,
                b'{"lead.created":"2026-11-02T09:00:00Z"}',
                key=f"vtiger|crm|fact|10x{i}".encode(),
            )
    started = time.monotonic()
    with EventProducer(fast) as producer:
        state = StateStore(fast, producer, "vtiger", "crm").load()
    elapsed = time.monotonic() - started
    assert len(state.facts) == 200_000
    assert elapsed > 3 * fast.broker_timeout, f"read in {elapsed:.1f}s: too fast to show the deadline moves"


def test_an_open_deals_state_is_remembered_while_open_and_one_older_than_the_retention_enters_at_its_edit(
    broker: EmbeddedBroker, fake: FakeVtiger, connections: Any
) -> None:
    clock = Clock(datetime(2026, 12, 10, 12, tzinfo=UTC))
    # Opened before the retention, edited since: its opening is too old to count, its state is not.
    old = fake.add("Potentials", "2026-10-02 09:00:00", "2026-11-25 10:00:00", amount="5000")
    fresh = fake.add("Potentials", "2026-12-01 09:00:00", amount="1000", sales_stage="Qualification")
    poller, metrics = connections(clock)
    assert poller.poll() == (2, {})
    assert skipped(metrics, "past_retention") == 1
    (entered,) = of_type(broker, "opportunity.updated")
    assert (entered["occurred_at"], entered["data"]["opportunity_id"], entered["data"]["amount"]) == (
        "2026-11-25T10:00:00Z",
        old,
        5000.0,
    )
    assert set(poller.state.facts[old]) == {STATE}
    assert set(poller.state.facts[fresh]) == {"opportunity.created", STATE}

    fake.edit(fresh, "2026-12-09 10:00:00", potentialname="Renamed")  # nothing of its state
    assert poller.poll() == (0, {})

    clock.now += timedelta(days=63)
    assert poller.poll() == (0, {})  # trimmed: the opening goes, the open state stays
    poller, _ = connections(clock)
    assert {record: set(memory) for record, memory in poller.state.facts.items()} == {
        old: {STATE},
        fresh: {STATE},
    }
    fake.edit(fresh, "2027-02-10 10:00:00", potentialname="Renamed again")
    assert poller.poll() == (0, {}), "the state is remembered past the retention while the deal is open"
    fake.edit(fresh, "2027-02-11 10:00:00", amount="1500")
    assert poller.poll() == (1, {})
    fake.edit(fresh, "2027-02-11 11:00:00", sales_stage="Closed Lost")
    assert poller.poll() == (1, {})

    assert [(e["occurred_at"], e["data"]["amount"]) for e in of_type(broker, "opportunity.updated")] == [
        ("2026-11-25T10:00:00Z", 5000.0),
        ("2027-02-11T10:00:00Z", 1500.0),
    ]
    (lost,) = of_type(broker, "deal.lost")
    assert lost["data"]["opportunity_id"] == fresh
    assert connections(clock)[0].state.facts[fresh] == {"deal.lost": "2027-02-11T11:00:00Z"}
