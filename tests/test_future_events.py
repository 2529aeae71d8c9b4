"""Events from the future are not applied: they go to the dead letters as ``future``.

An event whose ``occurred_at`` is later than its Kafka record's timestamp plus
``SALESPULSE_MAX_CLOCK_SKEW`` (10 minutes) is refused whatever ``SALESPULSE_CLOCK`` says:
the decision depends on the record alone, so every replay makes it again. Without it, one
survey answer dated next year stayed a customer's latest answer for good, and one bad
event pushed a ``stream`` clock months ahead. ``POST /events`` refuses such an event to
its sender by the same rule, with the worker's clock in place of the record's.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from salespulse.agents.rolling import HOUR, MINUTE
from salespulse.schemas.codec import REASONS
from salespulse.schemas.event_time import format_time
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import DEADLETTER, route
from salespulse.streams.endpoints.ingest import IngestError, parse_events
from salespulse.streams.endpoints.metrics import Exporter
from salespulse.streams.pipeline.engine import Engine
from salespulse.streams.settings import Settings
from tests.conftest import FIXED_NOW, wait_until
from tests.engine_driver import PARTITIONS, Driver, lead
from tests.test_ingest import post

T = int(FIXED_NOW.timestamp())
DAY = 24 * HOUR
ALL = range(PARTITIONS)
TOKEN = "future-events-test-token-0123456789"


def answer(i: int, t: int, score: int, customer: str = "C-1") -> dict[str, Any]:
    return {
        "event_id": f"answer-{i}",
        "type": "survey.answered",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {
            "survey": "nps",
            "score": score,
            "customer_id": customer,
            "region": "north",
            "product": "crm",
        },
    }


def rejected(engine: Engine) -> dict[str, int]:
    return {k: v for k, v in engine.counters(ALL)["rejected"].items() if v}


# -- the engine ------------------------------------------------------------------------------------


def test_an_event_more_than_the_skew_after_its_record_goes_to_the_dead_letters_as_future() -> None:
    driver = Driver.at(T)
    driver.apply([lead(0, T + 600), lead(1, T + 601)], T, written=T)
    (letter,) = driver.deadletters
    assert letter.reason == "future"
    assert orjson.loads(letter.value or b"")["event_id"] == "lead-1"
    assert "more than 600s (SALESPULSE_MAX_CLOCK_SKEW) after it was written" in letter.detail
    assert rejected(driver.engine) == {"future": 1}
    assert sum(driver.engine.counters(ALL)["events"].values()) == 1, "ten minutes ahead is applied"


def test_the_decision_is_the_records_whatever_the_clock_and_on_every_replay() -> None:
    events = [lead(0, T + HOUR), lead(1, T - HOUR)]
    letters = []
    for clock in (format_time(T), format_time(T + 30 * DAY), "stream", "wall"):
        driver = Driver(Engine(clock=clock, partitions=PARTITIONS))
        driver.apply(events, None, written=T)
        letters.append([(d.reason, d.partition, d.offset) for d in driver.deadletters])
    assert letters == [letters[0]] * 4 and [reason for reason, _, _ in letters[0]] == ["future"]
    # A replay of the same records (a crash before the commit) refuses again and counts nothing twice.
    driver = Driver.at(T)
    driver.apply(events, T, written=T)
    driver.offsets.clear()
    driver.apply(events, T + DAY, written=T)
    assert rejected(driver.engine) == {"future": 1}
    assert sum(driver.engine.counters(ALL)["events"].values()) == 1


def test_a_survey_answer_from_the_future_never_becomes_the_customers_latest_answer() -> None:
    driver = Driver.at(T)
    driver.apply([answer(0, T + 365 * DAY, 0)], T, written=T)
    assert driver.engine.profile("C-1", ALL) is None
    driver.apply([answer(1, T - MINUTE, 10)], T, written=T)
    later = T + 400 * DAY  # long after the bad answer's date: still the real answer
    driver.apply([answer(2, later - HOUR, 9)], later, written=later)
    profile = driver.engine.profile("C-1", ALL)
    assert profile is not None and profile["nps"] == {"score": 9, "occurred_at": later - HOUR}
    assert rejected(driver.engine) == {"future": 1}


def test_one_event_from_the_future_cannot_push_the_stream_clock_forward() -> None:
    driver = Driver(Engine(clock="stream", partitions=PARTITIONS))
    driver.apply([lead(0, T)], None, written=T)
    assert driver.engine.clock().now == T
    driver.apply([lead(1, T + 64 * DAY)], None, written=T)
    assert driver.engine.clock().now == T
    driver.apply([lead(2, T + 300)], None, written=T)
    assert driver.engine.clock().now == T + 300, "within the skew it is an event like any other"


def test_a_record_without_a_timestamp_cannot_be_judged_and_is_applied() -> None:
    driver = Driver.at(T)
    driver.apply([lead(0, T + DAY)], T, written=None)
    assert driver.deadletters == []


def test_the_future_reason_is_exported_from_zero() -> None:
    assert "future" in REASONS
    engine = Engine(clock=format_time(T), partitions=PARTITIONS)
    exporter = Exporter(engine, lambda: set(ALL), dict)
    assert exporter.value("salespulse_events_rejected_total", {"reason": "future"}) == 0


# -- HTTP ingest -----------------------------------------------------------------------------------


def test_ingest_refuses_a_body_with_an_event_from_the_future_naming_it() -> None:
    body = b"\n".join(orjson.dumps(e) for e in (lead(0, T - MINUTE), lead(1, T + 601), lead(2, T + 600)))
    with pytest.raises(IngestError) as refused:
        parse_events(body, max_depth=32, now_ms=T * 1000, max_skew=600)
    assert refused.value.status == 400
    ((index, field, reason),) = [(p.index, p.field, p.reason) for p in refused.value.problems]
    assert (index, field) == (1, "occurred_at")
    assert "is in the future, more than 600s" in reason
    assert len(parse_events(body, max_depth=32, now_ms=(T + 1) * 1000, max_skew=600)) == 3


def test_a_worker_refuses_future_events_over_http_and_dead_letters_them_from_a_topic(
    settings: Settings, spawn_worker: Any
) -> None:
    worker = spawn_worker(SALESPULSE_INGEST_TOKEN=TOKEN, SALESPULSE_CLOCK="stream")
    worker.wait_ready()
    now = int(time.time())
    status, body = post(worker.address, orjson.dumps([lead(0, now - MINUTE), lead(1, now + DAY)]), TOKEN)
    assert status == 400, body
    assert [(p["index"], p["field"]) for p in body["problems"]] == [(1, "occurred_at")]
    assert post(worker.address, orjson.dumps([lead(0, now - MINUTE)]), TOKEN) == (202, {"accepted": 1})

    # Straight onto the topic, with the contract's key and partition: dead-lettered.
    future = lead(2, now + 30 * DAY)
    topic, key = route(future)
    producer = KafkaProducer(bootstrap_servers=list(settings.brokers))
    producer.send(topic, orjson.dumps(future), key=key, partition=partition_for(key, 4)).get(timeout=30)
    producer.close()

    def counted() -> dict[str, Any] | None:
        kpis = worker.kpis()
        c = kpis["counters"]
        return kpis if c["rejected"]["future"] == 1 and sum(c["events"].values()) == 1 else None

    kpis = wait_until(counted, timeout=60)
    assert kpis["clock"] <= now, "the stream clock stayed where the real events put it"
    assert 'salespulse_events_rejected_total{reason="future"} 1.0' in worker.metrics()
    consumer = KafkaConsumer(
        DEADLETTER,
        bootstrap_servers=list(settings.brokers),
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
    )
    try:
        letters = [(dict(m.headers), m.value) for m in consumer]
    finally:
        consumer.close()
    ((headers, value),) = letters
    assert headers["salespulse.reason"] == b"future"
    assert orjson.loads(value)["event_id"] == "lead-2"
