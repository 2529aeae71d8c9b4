"""A changelog the size of the state: every key whose state expires gets a tombstone.

Compaction keeps the newest record of every key until a tombstone replaces it. Minute and
hour buckets and seen-id chunks are new keys all the time, so without tombstones a full
recovery read everything since the first day. Now a bucket leaving retention, a seen-id
chunk whose ids have all expired and a customer's detractor follow-ups all gone each leave
a tombstone in their batch, on the batch's own changelog partition; restore takes a
tombstone as the removal it is. So the keys that stay live are bounded by the retention and
the customers, and restoring from a compacted copy gives exactly the state a full replay
gives.

First each kind of key on its own (the engine, no Kafka), then 150 days at a steady pace
through an engine, then through a real worker on the embedded broker, whose changelog is
compacted and restored into a second worker.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from salespulse.agents.rolling import HOUR, MINUTE, RETENTION_HOURS
from salespulse.schemas.event_time import format_time
from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.kafka.admin import (
    Topic,
    broker_identity,
    changelog_topic,
    ensure_topics,
    input_topics,
)
from salespulse.streams.pipeline import state_image
from salespulse.streams.pipeline.engine import Engine, PartitionState
from salespulse.streams.pipeline.worker import identity_epoch
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import start_broker
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import WorkerProcess, settle, wait_until
from tests.engine_driver import PARTITIONS, Driver, Entry, compacted, live_keys, replayed
from tests.engine_driver import lead as engine_lead
from tests.reference import diff, expected, gauge_diff, kpis_series

DAY = 24 * HOUR
T = int(datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC).timestamp())
ALL = range(PARTITIONS)


def lead(i: int, t: int, region: str = "north") -> dict[str, Any]:
    """Leads all keyed alike, so all on one partition and one counter."""
    return engine_lead(i, t, lead_id="L-1", region=region)


def event(kind: str, i: int, t: int, customer: str, **data: Any) -> dict[str, Any]:
    return {
        "event_id": f"{kind}-{i}",
        "type": kind,
        "occurred_at": format_time(t),
        "source": "test",
        "data": {"customer_id": customer, **data},
    }


def keys(entries: list[Entry], kind: str, value_is_none: bool) -> list[list[Any]]:
    """The decoded keys of ``entries`` of one kind (KPI name or ``seen``), tombstones or not."""
    return [
        orjson.loads(key)
        for _, key, value in entries
        if orjson.loads(key)[2] == kind and (value is None) == value_is_none
    ]


def flat(batches: list[list[Entry]]) -> list[Entry]:
    return [entry for batch in batches for entry in batch]


# -- each kind of key ------------------------------------------------------------------------------


def test_a_minute_bucket_gets_a_tombstone_in_the_first_batch_after_it_leaves_the_hour() -> None:
    driver = Driver.at(T)
    first = flat(driver.apply([lead(0, T - MINUTE)], T, written=T))
    ((p, _, _),) = {(p, 0, 0) for p, _, _ in first}
    minute = ["crm.leads", p, "leads", "leads", "m", (T - MINUTE) // MINUTE, "north", "web", "r-1"]
    assert minute in keys(first, "leads", False)
    assert not keys(flat(driver.apply([lead(1, T + 58 * MINUTE)], T + 58 * MINUTE, written=T)), "leads", True)
    later = flat(driver.apply([lead(2, T + 59 * MINUTE)], T + 59 * MINUTE, written=T + HOUR))
    assert keys(later, "leads", True) == [minute]
    assert {entry_p for entry_p, _, _ in later} == {p}, "on the batch's own changelog partition"


def test_an_hour_bucket_gets_a_tombstone_once_it_leaves_the_62_day_retention() -> None:
    driver = Driver.at(T)
    driver.apply([lead(0, T - 2 * HOUR)], T, written=T)
    hour = (T - 2 * HOUR) // HOUR
    last_retained = (hour + RETENTION_HOURS - 1) * HOUR
    kept = flat(driver.apply([lead(1, last_retained)], last_retained, written=last_retained))
    assert all(k[4] != "h" or k[5] != hour for k in keys(kept, "leads", True))
    gone = flat(
        driver.apply([lead(2, last_retained + HOUR)], last_retained + HOUR, written=last_retained + HOUR)
    )
    assert [k[4:6] for k in keys(gone, "leads", True) if k[4] == "h"] == [["h", hour]]


def test_a_seen_id_chunk_gets_a_tombstone_once_every_id_in_it_has_expired() -> None:
    driver = Driver.at(T)
    first = flat(driver.apply([lead(0, T - 3 * HOUR), lead(1, T)], T, written=T))
    (chunk,) = keys(first, "seen", False)
    second = flat(driver.apply([lead(2, T)], T, written=T))
    (other,) = keys(second, "seen", False)
    oldest_gone = (T - 3 * HOUR) // HOUR * HOUR + RETENTION_HOURS * HOUR
    mid = flat(driver.apply([lead(3, oldest_gone)], oldest_gone, written=oldest_gone))
    assert keys(mid, "seen", True) == [], "lead-1 of the first chunk is still within retention"
    end = T // HOUR * HOUR + RETENTION_HOURS * HOUR
    last = flat(driver.apply([lead(4, end)], end, written=end))
    assert sorted(map(str, keys(last, "seen", True))) == sorted(map(str, (chunk, other)))
    # A duplicate of lead-4 is still one; lead-1 counts as new again, as its id expired.
    driver.apply([lead(4, end), lead(1, end)], end, written=end)
    assert driver.engine.counters(ALL)["duplicates"] == 1


def test_detractor_follow_ups_past_the_retention_are_dropped_and_a_customer_with_none_is_a_tombstone() -> (
    None
):
    driver = Driver.at(T)
    call = {"channel": "call"}
    driver.apply([event("customer.activity", 0, T - DAY, "C-1", **call)], T, written=T)
    later = T + RETENTION_HOURS * HOUR
    out = flat(
        driver.apply([event("customer.activity", 1, later - MINUTE, "C-1", **call)], later, written=later)
    )
    ((_, _, value),) = [e for e in out if orjson.loads(e[1])[2:4] == ["detractors", "follow"]]
    assert value is not None and orjson.loads(value)[0] == later - MINUTE, "the expired call is gone"
    nps = {"survey": "nps", "score": 3, "region": "north", "product": "crm"}
    driver.apply([event("survey.answered", 2, later, "C-1", **nps)], later, written=later)
    # The answer left no follow-up behind it; the next activity batch writes the empty record as a tombstone.
    out = flat(
        driver.apply([event("customer.activity", 3, later - HOUR, "C-1", **call)], later, written=later)
    )
    assert [e[2] for e in out if orjson.loads(e[1])[2:4] == ["detractors", "follow"]] in ([], [None])
    case = driver.engine.detractors(ALL, "all", "all")["cases"]
    assert [c["followed_up_at"] for c in case] == [None]


def test_a_restored_record_already_expired_is_dropped_and_gets_its_tombstone_written() -> None:
    driver = Driver.at(T)
    driver.apply([lead(0, T - MINUTE)], T, written=T)
    later = T + 2 * HOUR
    restored = Driver(replayed(driver.changelog, format_time(later)), offsets=dict(driver.offsets))
    out = flat(restored.apply([lead(1, later)], later, written=later))
    assert [k[4] for k in keys(out, "leads", True)] == ["m"], "the minute its writer never dropped"


def test_a_tombstone_read_back_removes_what_its_key_held() -> None:
    driver = Driver.at(T)
    driver.apply([lead(0, T - MINUTE), lead(1, T - 3 * HOUR, region="south")], T, written=T)
    minute_key = next(key for _, key, value in driver.changelog if orjson.loads(key)[4] == "m")
    engine = replayed(driver.changelog, format_time(T))
    assert engine.kpis_view(ALL)["windows"]["1h"]["leads"]["leads"] == 1
    engine.restore(minute_key, None)
    assert engine.kpis_view(ALL)["windows"]["1h"]["leads"]["leads"] == 0
    assert engine.kpis_view(ALL)["windows"]["24h"]["leads"]["leads"] == 2


def test_a_state_image_keeps_the_tombstones_owed_and_the_chunks_to_tombstone() -> None:
    driver = Driver.at(T)
    driver.apply([lead(i, T - i * HOUR) for i in range(30)], T, written=T)
    copy = Driver(Engine(clock=format_time(T), partitions=PARTITIONS), offsets=dict(driver.offsets))
    for p, state in driver.engine.partitions.items():
        fresh = PartitionState(p, copy.engine.kpis)
        image = io.BytesIO()
        state_image.dump(state_image.capture(state), image)
        image.seek(0)
        state_image.fill(fresh, state_image.load(image))
        copy.engine.partitions[p] = fresh
    later = T + RETENTION_HOURS * HOUR
    written = [
        dict(((p, k), v) for p, k, v in flat(d.apply([lead(99, later)], later, written=later)))
        for d in (driver, copy)
    ]
    assert written[0] == written[1]
    assert sum(v is None for v in written[0].values()) > 30, "minutes, hours and the seen chunk"


# -- 150 days at a steady pace ---------------------------------------------------------------------

END = T
DAYS = 150
PER_DAY = 300


def steady(days: int, per_day: int, end: int, seed: int) -> list[list[dict[str, Any]]]:
    """``days`` days of events at a steady pace up to ``end``, oldest first, one list a day."""
    config = GeneratorConfig(
        seed=seed,
        now=datetime.fromtimestamp(end, UTC),
        customers=300,
        spread_days=days,
        steady=True,
        out_of_order=False,
        recent_share=0.0,
        duplicate_share=0.02,
    )
    by_day: list[list[dict[str, Any]]] = [[] for _ in range(days)]
    start = end - days * DAY
    for e in generate(config, days * per_day):
        t = int(datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")).timestamp())
        by_day[min(days - 1, (t - start) // DAY)].append(e)
    return by_day


def retained(log: Iterable[Entry]) -> list[Entry]:
    """The records of the state kept for the 62-day retention: not the forecast's, which keeps
    two fiscal years, so its keys grow until its horizon moves (tests/test_forecast_engine.py
    holds those to it)."""
    return [e for e in log if orjson.loads(e[1])[2] != "forecast"]


def assert_views_equal(engines: dict[str, Engine], what: str) -> None:
    views = {name: e.kpis_view(ALL) for name, e in engines.items()}
    first = next(iter(views.values()))
    for name, view in views.items():
        assert view == first, f"{what}: {name} differs"
    cases = {name: e.detractors(ALL, "all", "all") for name, e in engines.items()}
    assert all(c == next(iter(cases.values())) for c in cases.values()), f"{what}: detractor cases differ"


def test_over_150_steady_days_live_keys_stay_flat_and_a_compacted_restore_is_exact() -> None:
    started = time.perf_counter()
    days = steady(DAYS, PER_DAY, END, seed=150)
    driver = Driver.at(END - DAYS * DAY)
    live: dict[int, int] = {}
    for day, events in enumerate(days, 1):
        driver.apply(events, END - (DAYS - day) * DAY, written=END - (DAYS - day) * DAY)
        if day in (70, 150):
            live[day] = live_keys(retained(driver.changelog))
    growth = live[150] / live[70]
    assert 0.9 <= growth <= 1.1, f"live keys day 70: {live[70]}, day 150: {live[150]}"
    print(f"\nlive keys: day 70 {live[70]}, day 150 {live[150]} ({growth:.3f}x);", end=" ")
    ever = len({(p, key) for p, key, _ in driver.changelog})
    print(f"{len(driver.changelog)} records written to {ever} keys (all live without tombstones)")

    clock = format_time(END)
    engines = {
        "original": driver.engine,
        "full replay": replayed(driver.changelog, clock),
        "compacted": replayed(compacted(driver.changelog), clock),
    }
    assert_views_equal(engines, "restored")
    ref = expected(driver.sent, END)
    view = driver.engine.kpis_view(ALL)
    assert not ref.folded
    problems = diff(view["windows"], ref.windows) + gauge_diff(kpis_series(view), ref.gauges)
    assert not problems, "\n".join(problems[:30])

    # And each goes on alike: the next day's events give the same state and the same records.
    nxt = steady(1, PER_DAY, END + DAY, seed=151)[0]
    written: dict[str, dict[tuple[int, bytes], bytes | None]] = {}
    for name, engine in engines.items():
        follower = Driver(engine, offsets=dict(driver.offsets))
        written[name] = {(p, k): v for p, k, v in flat(follower.apply(nxt, END + DAY, written=END + DAY))}
    assert written["full replay"] == written["original"] == written["compacted"]
    assert_views_equal(engines, "a day on")
    print(f"150 days in {time.perf_counter() - started:.1f}s")


# -- a real worker ---------------------------------------------------------------------------------


def changelog_entries(settings: Settings, topic: str) -> list[Entry]:
    """Every record of the changelog topic, per partition in offset order."""
    consumer = KafkaConsumer(
        bootstrap_servers=list(settings.brokers),
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    try:
        parts = [TopicPartition(topic, p) for p in ALL]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: dict[int, list[Any]] = {p: [] for p in ALL}
        for message in consumer:
            got[message.partition].append(message)
    finally:
        consumer.close()
    return [(p, m.key, m.value) for p in ALL for m in sorted(got[p], key=lambda m: m.offset)]


def state_changelog(settings: Settings) -> Topic:
    """The state changelog on a broker, as a worker names it: after the broker's identity."""
    return changelog_topic(settings, identity_epoch(broker_identity(settings)))


@pytest.mark.slow
def test_a_worker_over_150_days_keeps_its_changelog_flat_and_one_restored_from_the_compacted_copy_is_exact(
    broker: Any, settings: Settings, spawn_worker: Any, producer: EventProducer, tmp_path: Any
) -> None:
    end = int(time.time()) - HOUR  # every event is in the past of its record's timestamp
    days = steady(DAYS, PER_DAY, end, seed=152)
    env = {"SALESPULSE_CLOCK": "stream", "SALESPULSE_SNAPSHOT_INTERVAL": "0"}
    worker = spawn_worker("w1", **env)
    worker.wait_ready()
    topic = state_changelog(settings).name
    sent: list[dict[str, Any]] = []
    live: dict[int, int] = {}
    for first, upto in ((0, 70), (70, DAYS)):
        for day in days[first:upto]:
            for e in day:
                producer.send(e)
            sent += day
        producer.flush()

        def applied(n: int = len(sent)) -> bool:
            progress = worker.progress()
            return bool(progress["events"] + progress["duplicates"] == n)

        wait_until(applied, timeout=120)
        live[upto] = live_keys(retained(changelog_entries(settings, topic)))
    growth = live[DAYS] / live[70]
    print(f"\nworker's changelog, live keys: day 70 {live[70]}, day 150 {live[DAYS]} ({growth:.3f}x)")
    assert 0.9 <= growth <= 1.1, live
    settle(worker)  # the closes forwarded to their opportunities' partitions too
    view = worker.kpis()
    worker.stop()
    log = changelog_entries(settings, topic)
    copy = compacted(log)
    assert len(retained(copy)) == live[DAYS]
    ever = len({(p, key) for p, key, _ in log})
    print(f"{len(log)} records written to {ever} keys; live without tombstones: {ever}")

    # A second broker whose changelog holds only the compacted copy, and no input at all.
    other = start_broker()
    try:
        other_settings = Settings.from_env({"SALESPULSE_BROKER": other.bootstrap})
        ensure_topics(other_settings, input_topics(other_settings))
        changelog = state_changelog(other_settings)
        ensure_topics(other_settings, [changelog])
        writer = KafkaProducer(bootstrap_servers=[other.bootstrap], acks="all")
        for p, key, value in copy:
            writer.send(changelog.name, value, key=key, partition=p)
        writer.flush()
        writer.close()
        restored = WorkerProcess(other.bootstrap, tmp_path / "restored", **env).start()
        try:
            restored.wait_ready(timeout=120)
            again = restored.kpis()
        finally:
            restored.kill()
    finally:
        other.stop()
    assert (again["clock"], again["series"], again["windows"]) == (
        view["clock"],
        view["series"],
        view["windows"],
    )
    ref = expected(sent, again["clock"])
    problems = diff(again["windows"], ref.windows) + gauge_diff(kpis_series(again), ref.gauges)
    assert not problems, "\n".join(problems[:30])
    # The counters are the original's. They judge lateness and duplicates when an event is
    # applied (sent in time order, none was late then), the reference at the last clock.
    counters = again["counters"]
    assert counters == view["counters"]
    assert sum(counters["events"].values()) + counters["duplicates"] == len(sent)
    assert sum(counters["late"].values()) == 0 < sum(ref.late.values())
