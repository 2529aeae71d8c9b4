"""Reads never change state: not the KPI tables, not the changelog.

Found in the field: a worker with 6 leads in the last hour answered one
``GET /kpis?at=<64 days ahead>``; the read moved the rolling tables' clock there and dropped
every bucket, and the next event's record overwrote the hour's on the changelog, so the
hour read 1 afterwards (3 after a restart). Now only applying and restoring move a table's
clock; a read at another clock sums the retained buckets, and an ``at`` beyond the clock
skew, or before the retention, is refused.

The property test drives two engines with the same events at the same clocks, one of them
also answering every kind of read at every kind of clock in between, and holds the two to
the same changelog records and the same state. Then the issue's reproduction, on a real
worker and the embedded broker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from array import array
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salespulse.agents.rolling import HOUR, MINUTE, WINDOW_NAMES, Clock, WindowedCounter
from salespulse.schemas.event_time import format_time, parse_time
from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.pipeline import state_image
from salespulse.streams.pipeline.engine import Engine, ReadRefused
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import REPO, WorkerProcess, http, wait_until
from tests.engine_driver import PARTITIONS, Driver, lead, replayed

DAY = 24 * HOUR
END = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
T = int(END.timestamp())
ALL = range(PARTITIONS)

#: Events at a steady pace over 100 days, oldest first, with duplicates and re-answers.
EVENTS = list(
    generate(
        GeneratorConfig(
            seed=29,
            now=END,
            customers=60,
            spread_days=100,
            steady=True,
            out_of_order=False,
            recent_share=0.0,
            duplicate_share=0.05,
            reanswer_share=0.1,
        ),
        600,
    )
)
CUSTOMERS = sorted({e["data"]["customer_id"] for e in EVENTS if "customer_id" in e["data"]})

#: An apply's clock, after the newest event of its batch: behind it (events from the
#: future, dead-lettered), at it, a minute or an hour on (buckets expire), months on (late).
APPLY_LAGS = (-2 * HOUR, 0, 59, 61 * MINUTE, DAY, 40 * DAY, 70 * DAY)
#: Where the worker's clock stands at a read, after the last apply's.
READ_SHIFTS = (-HOUR, 0, 59, MINUTE, HOUR, 2 * DAY, 64 * DAY)
#: A read's ``at``, from the worker's clock at the read (None: no ``at``).
READ_ATS = (None, 0, -MINUTE, MINUTE, 599, 601, -30 * DAY, -61 * DAY, -63 * DAY, 64 * DAY)
READS = ("metrics", "kpis", "profile", "detractors", "progress")

apply_op = st.tuples(st.just("apply"), st.integers(1, 80), st.sampled_from(APPLY_LAGS))
read_op = st.tuples(
    st.sampled_from(READS),
    st.sampled_from(READ_SHIFTS),
    st.sampled_from(READ_ATS),
    st.sampled_from(CUSTOMERS),
)


def read(engine: Engine, what: str, at: int | None, customer: str) -> Any:
    """One read, as a worker's views make it; a refused one is an answer too."""
    try:
        if what == "metrics":
            return list(engine.samples(ALL))
        if what == "kpis":
            return engine.kpis_view(ALL, at)
        if what == "profile":
            return engine.profile(customer, ALL)
        if what == "detractors":
            return engine.detractors(ALL, "all", "all")
        return engine.progress(ALL)
    except ReadRefused as exc:
        return str(exc)


def plain(value: Any) -> Any:
    """A captured state image as comparable data; dicts keep their order, which is state too."""
    if isinstance(value, state_image.Shape):
        return (value.cls, [(name, plain(v)) for name, v in value.attrs.items()])
    if isinstance(value, state_image.Config):
        return ("config", value.text)
    if isinstance(value, dict):
        return ("dict", [(plain(k), plain(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(repr(plain(v)) for v in value))
    if isinstance(value, array | bytearray):
        return bytes(value)
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.tolist())
    return value


def state_of(engine: Engine) -> Any:
    parts = {p: plain(state_image.capture(s)) for p, s in sorted(engine.partitions.items())}
    return parts, plain(engine.fold.seen)


# No example database: a run leaves no files behind; a failure prints its example.
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(apply_op, read_op), min_size=2, max_size=30))
def test_any_reads_at_any_clocks_leave_the_state_and_the_changelog_as_without_them(
    ops: list[tuple[Any, ...]],
) -> None:
    reading, quiet = Driver.at(T), Driver.at(T)
    sent = 0
    clock = parse_time(EVENTS[0]["occurred_at"])
    for op in ops:
        if op[0] == "apply":
            _, count, lag = op
            batch = EVENTS[sent : sent + count]
            if not batch:
                continue
            sent += len(batch)
            clock = max(parse_time(e["occurred_at"]) for e in batch) + lag
            written = [d.apply(batch, clock, written=clock) for d in (reading, quiet)]
            assert written[0] == written[1], "a read changed what the next batch wrote"
        else:
            what, shift, at, customer = op
            reading.set_clock(clock + shift)
            read(reading.engine, what, None if at is None else clock + shift + at, customer)
    assert reading.changelog == quiet.changelog
    assert [(d.reason, d.partition, d.offset) for d in reading.deadletters] == [
        (d.reason, d.partition, d.offset) for d in quiet.deadletters
    ]
    assert state_of(reading.engine) == state_of(quiet.engine)


# -- what a read answers ---------------------------------------------------------------------------


def leads_1h(engine: Engine, at: int | None = None) -> float:
    return float(engine.kpis_view(ALL, at)["windows"]["1h"]["leads"]["leads"])


def test_the_issues_reads_leave_the_hour_at_seven_after_one_more_lead_and_after_a_restore() -> None:
    driver = Driver.at(T)
    driver.apply([lead(i, T - (10 + i) * MINUTE) for i in range(6)], T, written=T)
    with pytest.raises(ReadRefused, match="after the worker's clock"):
        driver.engine.kpis_view(ALL, T + 64 * DAY)
    driver.set_clock(T + 64 * DAY)  # even a worker whose own clock jumped there only reads
    assert leads_1h(driver.engine) == 0
    assert leads_1h(driver.engine, T + 64 * DAY - 60) == 0
    driver.apply([lead(6, T - 5 * MINUTE)], T, written=T)
    assert leads_1h(driver.engine) == 7
    assert leads_1h(replayed(driver.changelog, format_time(T))) == 7


@settings(max_examples=200, deadline=None, database=None)
@given(
    adds=st.lists(
        st.tuples(st.integers(-3 * DAY, 2 * HOUR), st.sampled_from(["north", "south", "east"])),
        max_size=60,
    ),
    ahead=st.one_of(st.integers(0, 3 * HOUR), st.integers(0, 40 * DAY)),
)
def test_a_read_at_a_later_clock_counts_what_the_tables_will_hold_when_they_get_there(
    adds: list[tuple[int, str]], ahead: int
) -> None:
    def built() -> WindowedCounter:
        counter = WindowedCounter("leads", ("region",), 1)
        for offset, (t, region) in enumerate(adds):
            counter.add(T + t, (region,), [1], offset, Clock(T))
        counter.refresh(Clock(T))
        return counter

    counter, moved = built(), built()
    moved.refresh(Clock(T + ahead))
    for window in WINDOW_NAMES:
        read = {
            labels: vec for labels, vec in counter.window_at(Clock(T + ahead), window).items() if any(vec)
        }
        assert read == {labels: vec for labels, vec in moved.window(window).items() if any(vec)}, window
    assert counter.labels_seen(Clock(T + ahead)) == moved.labels_seen()


def test_an_at_beyond_the_clock_skew_or_before_the_retention_is_refused_with_the_reason() -> None:
    engine = Driver.at(T, max_clock_skew=600).engine
    assert engine.kpis_view(ALL, T + 600)["clock"] == T + 600
    with pytest.raises(ReadRefused, match=r"601s after the worker's clock .*SALESPULSE_MAX_CLOCK_SKEW"):
        engine.kpis_view(ALL, T + 601)
    oldest = Clock(T).oldest_hour * HOUR
    assert engine.kpis_view(ALL, oldest)["clock"] == oldest
    with pytest.raises(ReadRefused, match="before the 62-day retention"):
        engine.kpis_view(ALL, oldest - 1)


def test_a_read_ahead_of_the_tables_counts_as_that_clock_and_moves_nothing() -> None:
    driver = Driver.at(T)
    driver.apply([lead(0, T - 59 * MINUTE), lead(1, T - 2 * HOUR)], T, written=T)
    counter = driver.engine.partitions[0].kpis["leads"]
    leads = next(s for s in driver.engine.partitions.values() if s.kpis["leads"].counters["leads"].hours)
    counter = leads.kpis["leads"].counters["leads"]
    before = (counter._cm, dict(counter.minutes), dict(counter.hours), [dict(s) for s in counter.sums])
    assert leads_1h(driver.engine) == 1
    assert leads_1h(driver.engine, T + 2 * MINUTE) == 0, "the minute left the hour two minutes on"
    views = driver.engine.kpis_view(ALL, T + 2 * MINUTE)["windows"]
    assert views["24h"]["leads"]["leads"] == 2
    assert (counter._cm, counter.minutes, counter.hours, counter.sums) == (
        before[0],
        before[1],
        before[2],
        before[3],
    )
    assert not counter.expired_minutes and not counter.expired_hours, "no tombstone from a read"


def test_an_at_risk_read_at_another_minute_is_counted_there_and_moves_nothing() -> None:
    driver = Driver.at(T)
    deal = {
        "event_id": "deal-1",
        "type": "deal.won",
        "occurred_at": format_time(T - 30 * DAY + 5 * MINUTE),
        "source": "test",
        "data": {
            "deal_id": "D-1",
            "customer_id": "C-1",
            "rep_id": "r-1",
            "region": "north",
            "product": "crm",
            "kind": "new",
            "amount": 10.0,
            "currency": "USD",
        },
    }
    driver.apply([deal], T, written=T)
    state = next(s for s in driver.engine.partitions.values() if s.kpis["engagement"].deal)
    risk = state.kpis["engagement"].at_risk
    before = (risk.threshold, risk.count, dict(risk.by_minute))

    def at_risk(at: int | None = None) -> float:
        view = driver.engine.kpis_view(ALL, at)
        return float(view["windows"]["30d"]["engagement"]["customers_at_risk"])

    assert at_risk() == 0
    assert at_risk(T + 6 * MINUTE) == 1, "30 days and a minute after the deal"
    driver.set_clock(T + 2 * HOUR)
    assert at_risk() == 1
    assert at_risk(T + MINUTE) == 0, "a look back"
    assert (risk.threshold, risk.count, risk.by_minute) == before


# -- the issue's reproduction, on a real worker ----------------------------------------------------


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with these labels in the worker's /metrics."""
    total = 0.0
    for line in worker.metrics().splitlines():
        if not line.startswith(name + "{"):
            continue
        sample, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in sample for k, v in labels.items()):
            total += float(value)
    return total


def hour_leads(worker: WorkerProcess) -> float:
    return metric(worker, "salespulse_leads", window="1h")


def test_a_read_64_days_ahead_is_refused_and_the_hour_reads_7_after_one_more_lead_and_a_restart(
    broker: Any, spawn_worker: Any, producer: EventProducer
) -> None:
    # The wall clock, as in the field; snapshots off, so the restart reads the changelog.
    env = {"SALESPULSE_CLOCK": "wall", "SALESPULSE_SNAPSHOT_INTERVAL": "0"}
    worker = spawn_worker("w1", **env)
    worker.wait_ready()
    now = int(time.time())
    for i in range(6):
        producer.send(lead(i, now - (10 + i) * MINUTE))
    producer.flush()
    wait_until(lambda: hour_leads(worker) == 6, timeout=60)

    ahead = now + 64 * DAY
    status, body = http(f"http://{worker.address}/kpis?at={ahead}")
    assert status == 400
    assert "after the worker's clock" in orjson.loads(body)["error"]
    cli = subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "kpis", "--workers", worker.address, "--at", str(ahead)],
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert cli.returncode != 0
    assert b"answered 400 to /kpis" in cli.stderr and b"SALESPULSE_MAX_CLOCK_SKEW" in cli.stderr

    producer.send(lead(6, now - 5 * MINUTE))
    producer.flush()
    wait_until(lambda: sum(worker.kpis()["counters"]["events"].values()) == 7, timeout=60)
    assert hour_leads(worker) == 7
    worker.stop()

    restarted = WorkerProcess(broker.bootstrap, worker.data_dir, **env).start()
    try:
        restarted.wait_ready()
        assert hour_leads(restarted) == 7
    finally:
        restarted.kill()
