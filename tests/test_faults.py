"""The correctness model under faults, with real worker processes and the real embedded broker.

Design brief, section 4: Kafka delivers at least once, yet every exported number must equal a
plain reference count over the same events after SIGKILL at any moment, after a rebalance
between workers, after duplicate deliveries, after poison input, and after the broker under
a worker was replaced by an empty one. Nothing here is mocked: each test runs ``salespulse
worker`` processes against Tansu and compares their ``/kpis`` and ``/metrics`` with
``tests/reference.py``. Kill points are random but seeded, so a failure replays.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from salespulse.agents.base import STATIC_SERIES
from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS, route
from salespulse.streams.endpoints.cluster import merge
from salespulse.streams.endpoints.producer import BrokerUnavailable, EventProducer
from salespulse.streams.kafka.admin import broker_identity, ensure_topics, input_topics
from salespulse.streams.pipeline.worker import _watch_identity
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import EmbeddedBroker, free_port, start_broker
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_NOW, REPO, TOKEN, WorkerProcess, http, settle, wait_until
from tests.reference import (
    EVENT_TYPES,
    WINDOWS,
    Expected,
    GaugeKey,
    diff,
    epoch_seconds,
    expected,
    gauge_diff,
    kpis_series,
    parse_metrics,
    summarize,
)

NOW = int(FIXED_NOW.timestamp())
PARTITIONS = 4
ALL = [0, 1, 2, 3]
MAX_EVENT_BYTES = 64 * 1024


# -- corpora ------------------------------------------------------------------------------
def corpus(seed: int, count: int, **config: Any) -> list[dict[str, Any]]:
    return list(generate(GeneratorConfig(seed=seed, now=FIXED_NOW, customers=5000, **config), count))


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def send_all(producer: EventProducer, events: Iterable[dict[str, Any]], *, flush: bool = True) -> None:
    for event in events:
        producer.send(event)
    if flush:
        producer.flush()


# -- reading workers ----------------------------------------------------------------------
def applied(kpis: dict[str, Any]) -> int:
    """Deliveries a share has applied: counted events plus recognised duplicates."""
    counters = kpis["counters"]
    return int(sum(counters["events"].values()) + counters["duplicates"])


def try_json(url: str, timeout: float = 2.0, token: str = TOKEN) -> tuple[int, Any] | None:
    """(status, JSON body) or None while nothing answers (a worker restarting)."""
    try:
        status, body = http(url, timeout=timeout, token=token)
    except OSError:
        return None
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body


def try_kpis(worker: WorkerProcess) -> dict[str, Any] | None:
    answer = try_json(f"http://{worker.address}/kpis", token=worker.token)
    if answer is None or answer[0] != 200:
        return None
    return dict(answer[1])


def ready_partitions(worker: WorkerProcess) -> list[int] | None:
    answer = try_json(f"http://{worker.address}/readyz")
    if answer is None or answer[0] != 200:
        return None
    return list(answer[1].get("partitions", []))


def logs(*workers: WorkerProcess, lines: int = 40) -> str:
    return "".join(f"\n--- {w.log_path.name} (last {lines} lines) ---\n{w.log_tail(lines)}" for w in workers)


def wait_for(
    predicate: Callable[[], Any],
    what: str,
    *workers: WorkerProcess,
    timeout: float = 60.0,
    interval: float = 0.2,
) -> Any:
    """``wait_until`` that names what it waited for and shows the workers' logs on failure."""
    try:
        return wait_until(predicate, timeout=timeout, interval=interval)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}{logs(*workers)}") from None


def wait_applied(worker: WorkerProcess, n: int, *, timeout: float = 90.0) -> dict[str, Any]:
    """Wait until ``worker`` owns every partition and has applied ``n`` deliveries, exactly."""

    def done() -> dict[str, Any] | None:
        kpis = try_kpis(worker)
        return kpis if kpis and kpis["partitions"] == ALL and applied(kpis) >= n else None

    wait_for(done, f"{worker.log_path.stem} applying {n} deliveries", worker, timeout=timeout)
    settle(worker)  # and the closes it forwarded (an over-count on its way shows meanwhile)
    kpis = worker.kpis()
    assert applied(kpis) == n, f"applied {applied(kpis)} deliveries, sent {n}{logs(worker)}"
    return kpis


def assert_exact(
    kpis: dict[str, Any],
    metrics: str,
    ref: Expected,
    context: str,
    rejected: dict[str, int] | None = None,
    rerouted: dict[str, int] | None = None,
) -> None:
    """Counters, every /metrics gauge and every /kpis number equal the reference."""
    assert not ref.folded, "an exact comparison needs every label under the cap"
    counters = kpis["counters"]
    assert kpis["clock"] == NOW
    assert counters["events"] == ref.events, f"{context}: events"
    assert counters["late"] == ref.late, f"{context}: late"
    assert counters["duplicates"] == ref.duplicates, f"{context}: duplicates"
    want_rejected = {reason: (rejected or {}).get(reason, 0) for reason in counters["rejected"]}
    assert counters["rejected"] == want_rejected, f"{context}: rejected"
    scrape = parse_metrics(metrics)
    problems = gauge_diff(scrape.gauges, ref.gauges)
    assert not problems, f"{context}: {len(problems)} /metrics gauge mismatches:\n" + "\n".join(problems[:30])
    want_counters: dict[GaugeKey, float] = {}
    for kind in EVENT_TYPES:
        want_counters["salespulse_events_total", frozenset({("type", kind)})] = ref.events[kind]
        want_counters["salespulse_events_late_total", frozenset({("type", kind)})] = ref.late[kind]
    want_counters["salespulse_events_duplicate_total", frozenset()] = ref.duplicates
    want_counters["salespulse_comments_truncated_total", frozenset()] = ref.comments_truncated
    for reason, n in want_rejected.items():
        want_counters["salespulse_events_rejected_total", frozenset({("reason", reason)})] = n
    want_rerouted = {topic: (rerouted or {}).get(topic, 0) for topic in INPUT_TOPICS}
    assert counters["rerouted"] == want_rerouted, f"{context}: rerouted"
    for topic, n in want_rerouted.items():
        want_counters["salespulse_events_rerouted_total", frozenset({("topic", topic)})] = n
    assert scrape.counters == want_counters, f"{context}: /metrics counters"
    problems = diff(kpis["windows"], ref.windows)
    assert not problems, f"{context}: {len(problems)} /kpis mismatches:\n" + "\n".join(problems[:30])
    assert not gauge_diff(kpis_series(kpis), scrape.gauges), f"{context}: /kpis series differ from /metrics"


def assert_worker_exact(worker: WorkerProcess, ref: Expected, context: str, **kw: Any) -> None:
    kpis, metrics = worker.kpis(), worker.metrics()
    try:
        assert_exact(kpis, metrics, ref, context, **kw)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{logs(worker)}") from None


def cli_kpis(*workers: WorkerProcess) -> dict[str, Any]:
    """``salespulse kpis --workers ... --json``, the operator's cluster view."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "salespulse.streams",
            "kpis",
            "--workers",
            ",".join(w.address for w in workers),
            "--json",
        ],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout))


class Stopwatch:
    """Laps for the test's printed timeline (pytest -s)."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.laps: list[tuple[str, float]] = []

    def lap(self, label: str) -> float:
        now = time.monotonic()
        self.laps.append((label, now - self.last))
        self.last = now
        return self.laps[-1][1]

    def __str__(self) -> str:
        return ", ".join(f"{label} {seconds:.1f}s" for label, seconds in self.laps)


# -- 1. crash recovery --------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_at_random_points_and_restarts_lose_nothing_and_count_nothing_twice(
    spawn_worker, producer
) -> None:
    rng = random.Random(20261126)
    events = corpus(11, 50_000, duplicate_share=0.02)
    ref = expected(events, NOW)
    assert ref.duplicates > 500
    chunks = chunked(events, 2_500)  # 20 chunks
    # Kill 1 and kill 2 fall inside random chunks while events stream in. After kill 2 the
    # worker stays down for four chunks; kill 3 hits its successor while it catches up.
    # (Restarts are few because each one replays the whole changelog: they dominate the time.)
    first = rng.randrange(1, 5)
    second = rng.randrange(first + 2, 9)
    backlog = range(second + 1, second + 5)
    kills: list[str] = []
    clock = Stopwatch()
    sent = 0
    worker = spawn_worker("crash")
    worker.wait_ready()
    clock.lap("start")
    for i, chunk in enumerate(chunks):
        if i not in (first, second):
            send_all(producer, chunk)
            sent += len(chunk)
        else:
            # SIGKILL from a timer while this chunk is being sent and applied.
            progress = [0]
            note: list[str] = []

            def kill(
                w: WorkerProcess = worker, base: int = sent, at: list[int] = progress, out: list[str] = note
            ) -> None:
                seen = try_kpis(w)
                w.kill()
                out.append(f"had applied {seen and applied(seen) - base} of the {at[0]} sent of it")

            timer = threading.Timer(rng.uniform(0.05, 0.4), kill)
            timer.start()
            for event in chunk:
                producer.send(event)
                progress[0] += 1
            producer.flush()
            timer.join()
            sent += len(chunk)
            kills.append(f"inside chunk {i}: {note[0]}")
            clock.lap(f"kill {len(kills)}")
            if i == first:
                worker = spawn_worker("crash")  # same data dir
                worker.wait_ready()
                clock.lap("restart")
        if i == backlog[-1]:
            # A fresh data dir this time; killed as soon as it is seen catching up. Fetches of
            # 2,000 records make the 10,000-event backlog several fetches, so the kill can
            # land between them (one default fetch could take all of it).
            worker = spawn_worker("crash-fresh", SALESPULSE_FETCH_RECORDS="2000")

            def recovered(w: WorkerProcess = worker) -> dict[str, Any] | None:
                kpis = try_kpis(w)  # exports nothing until its partitions are recovered
                return kpis if kpis and kpis["partitions"] else None

            baseline = applied(wait_for(recovered, "recovered", worker, interval=0.01))
            seen = wait_for(
                lambda w=worker, b=baseline: (k := try_kpis(w)) and applied(k) > b and k,
                "catching up",
                worker,
                interval=0.005,
            )
            worker.kill()
            clock.lap("restart into the backlog")
            assert applied(seen) < sent, f"caught up before the kill: {applied(seen)} of {sent}"
            kills.append(
                f"catching up after chunk {i} (recovered {baseline}, had applied {applied(seen)} of {sent})"
            )
            worker = spawn_worker("crash")
            worker.wait_ready()
            clock.lap("restart")
            # Exact here too, against a reference over what has been sent so far.
            wait_applied(worker, sent)
            assert_worker_exact(worker, expected(events[:sent], NOW), f"after kill {len(kills)}")
            clock.lap("caught up, checked")
    clock.lap("sent the rest")
    assert len(kills) == 3, kills
    assert sent == len(events)
    kpis = wait_applied(worker, len(events))
    assert kpis["partitions"] == ALL
    assert_worker_exact(worker, ref, f"after {len(kills)} kills: {kills}")
    clock.lap("caught up, checked")
    print(f"\nkills: {kills}\n{clock}")


# -- 2. scale-out and failover ------------------------------------------------------------
def disjoint_sample(a: WorkerProcess, b: WorkerProcess) -> set[int]:
    """Partitions exported by both workers at once: ``a`` before and after, ``b`` in between."""
    first, middle, last = try_kpis(a), try_kpis(b), try_kpis(a)
    if not (first and middle and last):
        return set()
    return set(first["partitions"]) & set(middle["partitions"]) & set(last["partitions"])


def add_share(total: dict[GaugeKey, float], key: GaugeKey, value: float) -> None:
    """Workers' shares add up, but static series (quotas, the quarter's clock), which every
    worker exports whole, merge by max."""
    old = total.get(key)
    total[key] = value if old is None else max(old, value) if key[0] in STATIC_SERIES else old + value


@pytest.mark.slow
def test_two_workers_split_the_partitions_and_a_survivor_of_sigkill_takes_over_exactly(
    spawn_worker, producer
) -> None:
    rng = random.Random(4242)
    events = corpus(21, 20_000, duplicate_share=0.02)
    first_half, second_half = events[:10_000], events[10_000:]
    a, b = spawn_worker("share-a"), spawn_worker("share-b")
    a.wait_ready()
    b.wait_ready()

    def split() -> tuple[dict[str, Any], dict[str, Any]] | None:
        ka, kb = try_kpis(a), try_kpis(b)
        if not (ka and kb and ka["partitions"] and kb["partitions"]):
            return None
        if sorted(ka["partitions"] + kb["partitions"]) != ALL:
            return None
        return ka, kb

    wait_for(split, "two workers splitting the 4 partitions", a, b)
    samples = 0
    for chunk in chunked(first_half, 2_500):
        send_all(producer, chunk)
        samples += 1
        assert not disjoint_sample(a, b), f"a partition exported by both workers{logs(a, b)}"
        assert not disjoint_sample(b, a), f"a partition exported by both workers{logs(a, b)}"

    # Both alive and quiet: each share is exact (eNPS anonymity applies per share), and so is
    # the merged view.
    def quiet() -> list[dict[str, Any]] | None:
        shares = [try_kpis(a), try_kpis(b)]
        if not all(shares):
            return None
        view = merge(shares)
        return shares if view["partitions"] == ALL and applied(view) >= len(first_half) else None

    wait_for(quiet, "both workers applying the first half", a, b)
    settle(a, b)  # and the closes each forwarded to the other
    shares = [a.kpis(), b.kpis()]
    refs = []
    for worker, share in zip((a, b), shares, strict=True):
        ref = expected(first_half, NOW, owned=share["partitions"])
        refs.append(ref)
        assert_exact(share, worker.metrics(), ref, f"share of {worker.log_path.stem} {share['partitions']}")
    summed: dict[GaugeKey, float] = {}
    for ref in refs:
        for key, value in ref.gauges.items():
            add_share(summed, key, value)
    view = cli_kpis(a, b)
    assert view["partitions"] == ALL
    assert view["partitions_exported_twice"] == []
    assert view["workers"] == 2
    for name in ("events", "late"):
        want = {k: getattr(refs[0], name)[k] + getattr(refs[1], name)[k] for k in EVENT_TYPES}
        assert view["counters"][name] == want, name
    assert view["counters"]["duplicates"] == refs[0].duplicates + refs[1].duplicates
    problems = gauge_diff(kpis_series(view), summed)
    assert not problems, "merged series:\n" + "\n".join(problems[:30])
    problems = diff(view["windows"], {w: summarize(summed, w) for w in WINDOWS})
    assert not problems, "merged /kpis:\n" + "\n".join(problems[:30])
    metric_sums: dict[GaugeKey, float] = {}
    for worker in (a, b):
        for key, value in parse_metrics(worker.metrics()).gauges.items():
            add_share(metric_sums, key, value)
    assert not gauge_diff(metric_sums, summed), "sum of the two workers' /metrics gauges"

    # Half of the rest, then SIGKILL one worker while it is applying; the rest goes to the
    # survivor while it takes over.
    victim, survivor = (a, b) if rng.random() < 0.5 else (b, a)
    halves = chunked(second_half, 5_000)
    send_all(producer, halves[0], flush=False)
    time.sleep(rng.uniform(0.0, 0.5))
    samples += 1
    assert not disjoint_sample(a, b), f"a partition exported by both workers{logs(a, b)}"
    victim.kill()
    killed = time.monotonic()
    send_all(producer, halves[1])
    wait_for(lambda: ready_partitions(survivor) == ALL, "survivor owning all 4 partitions", survivor)
    took_over = time.monotonic() - killed
    kpis = wait_applied(survivor, len(events))
    assert kpis["partitions"] == ALL
    assert_worker_exact(survivor, expected(events, NOW), "survivor after failover")
    view = cli_kpis(survivor)
    assert view["partitions"] == ALL
    assert view["partitions_exported_twice"] == []
    assert not diff(view["windows"], expected(events, NOW).windows)
    print(f"\ntakeover {took_over:.1f}s after SIGKILL of {victim.log_path.stem}; {samples} overlap samples")


# -- 3. duplicates ------------------------------------------------------------------------
@pytest.mark.slow
def test_every_event_sent_twice_counts_once_even_when_the_copy_comes_after_a_restart(
    spawn_worker, producer
) -> None:
    rng = random.Random(77)
    unique = corpus(31, 6_000, late_share=0.02)
    assert len({e["event_id"] for e in unique}) == len(unique)
    order = list(range(len(unique)))
    rng.shuffle(order)
    cut1, cut2 = len(order) * 4 // 10, len(order) * 7 // 10
    early, while_down, after_restart = set(order[:cut1]), order[cut1:cut2], order[cut2:]
    # First copies of everything, with the early second copies mixed in after their originals.
    phase1: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for i, event in enumerate(unique):
        phase1.append(event)
        if i in early:
            pending.append(dict(event))
        if pending and rng.random() < 0.5:
            phase1.append(pending.pop(rng.randrange(len(pending))))
    rng.shuffle(pending)
    phase1 += pending
    phase2 = [dict(unique[i]) for i in while_down]
    phase3 = [dict(unique[i]) for i in after_restart]
    deliveries = phase1 + phase2 + phase3
    assert len(deliveries) == 2 * len(unique)

    worker = spawn_worker("dups")
    worker.wait_ready()
    send_all(producer, phase1)
    wait_applied(worker, len(phase1))
    worker.kill()
    send_all(producer, phase2)  # second copies while the worker is down
    worker = spawn_worker("dups")
    worker.wait_ready()
    send_all(producer, phase3)  # and after it is back
    kpis = wait_applied(worker, len(deliveries))

    once = expected(unique, NOW)
    full = expected(deliveries, NOW)
    late = Counter(e["type"] for e in unique if full.clock.is_late(epoch_seconds(e["occurred_at"])))
    # A late event's id is not remembered, so its copy counts again; but a deal's outcome is
    # remembered late too, so its copy is a duplicate.
    again = Counter({kind: n for kind, n in late.items() if kind not in ("deal.won", "deal.lost")})
    duplicates = len(unique) - sum(again.values())
    assert 0 < sum(again.values()) < sum(late.values()), "the corpus has late events of both kinds"
    assert full.duplicates == duplicates
    # Windowed numbers and latest values count each event once.
    problems = gauge_diff(full.gauges, once.gauges)
    assert not problems, "reference: sending twice changes a gauge:\n" + "\n".join(problems[:10])
    assert kpis["counters"]["duplicates"] == duplicates
    assert kpis["counters"]["events"] == {k: once.events[k] + again[k] for k in EVENT_TYPES}
    assert kpis["counters"]["late"] == {k: once.late[k] + again[k] for k in EVENT_TYPES}
    assert_worker_exact(worker, full, "every event twice")
    scrape = parse_metrics(worker.metrics())
    assert not gauge_diff(scrape.gauges, once.gauges)
    assert not diff(kpis["windows"], once.windows)


# -- 4. poison input ----------------------------------------------------------------------
def poison(sample: dict[str, dict[str, Any]]) -> list[tuple[str, bytes, bytes | None, str]]:
    """(topic, value, key, reason): garbage, two wrong schemas and an oversized message per topic."""
    out = []
    for n, topic in enumerate(INPUT_TOPICS):
        event = sample[topic]
        key = route(event)[1]
        missing = {**event, "data": {}}
        padded = {**event, "event_id": f"01POISONPADDED{n:012d}", "pad": "x" * (MAX_EVENT_BYTES + 1024)}
        out += [
            (topic, b"\x00\xff\xfe garbage " + bytes(range(256)), f"junk-{n}".encode(), "not_json"),
            (topic, orjson.dumps({"hello": "world", "n": n}), key, "unknown_type"),
            (topic, orjson.dumps(missing), key, "schema"),
            (topic, orjson.dumps(padded), key, "too_large"),
        ]
    return out


def test_poison_on_every_input_topic_goes_to_the_dead_letters_and_the_same_worker_stays_exact(
    spawn_worker, producer, settings
) -> None:
    rng = random.Random(99)
    events = corpus(41, 8_000, duplicate_share=0.02)
    sample = {}
    for event in events:
        sample.setdefault(route(event)[0], event)
    bad = poison(sample)
    assert {topic for topic, *_ in bad} == set(INPUT_TOPICS)
    assert all(len(value) > MAX_EVENT_BYTES for _, value, _, reason in bad if reason == "too_large")
    worker = spawn_worker("poison", SALESPULSE_TEST_LOGLEVEL="info")
    worker.wait_ready()
    assert worker.process is not None
    pid = worker.process.pid
    positions = sorted(rng.sample(range(len(events)), len(bad)))
    rng.shuffle(bad)
    b = 0
    for i, event in enumerate(events):
        while b < len(bad) and positions[b] == i:
            topic, value, key, _ = bad[b]
            producer.send_raw(topic, value, key)
            b += 1
        producer.send(event)
        if i % 2000 == 1999:
            producer.flush()
            status, _ = http(f"http://{worker.address}/healthz")
            assert status == 200
    producer.flush()
    want = Counter(reason for *_, reason in bad)

    def done() -> dict[str, Any] | None:
        kpis = try_kpis(worker)
        if not kpis or applied(kpis) < len(events):
            return None
        return kpis if sum(kpis["counters"]["rejected"].values()) >= len(bad) else None

    wait_for(done, "valid events applied and poison rejected", worker)
    time.sleep(0.5)
    # The same process all along: alive, same pid, faust started once, no re-exec.
    assert worker.process.poll() is None and worker.process.pid == pid
    log = worker.log_path.read_text(errors="replace")
    assert log.count("[^Worker]: Starting...") == 1, logs(worker)
    assert "changed identity" not in log
    assert_worker_exact(worker, expected(events, NOW), "with poison", rejected=dict(want))

    # Every rejected message is in crm.deadletter, bytes intact, with its reason and source.
    consumer = KafkaConsumer(
        DEADLETTER,
        bootstrap_servers=list(settings.brokers),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
        fetch_max_bytes=8 * 1024 * 1024,
    )
    letters: list[tuple[str, str, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(letters) < len(bad) and time.monotonic() < deadline:
            for message in consumer:
                headers = dict(message.headers)
                source_topic = headers["salespulse.source"].decode().split("/")[0]
                letters.append((source_topic, headers["salespulse.reason"].decode(), message.value))
    finally:
        consumer.close()
    assert Counter(reason for _, reason, _ in letters) == want
    assert sorted(letters) == sorted((topic, reason, value) for topic, value, _, reason in bad)
    per_topic = Counter(topic for topic, _, _ in letters)
    assert per_topic == dict.fromkeys(INPUT_TOPICS, 4)


# -- 5. stale state -----------------------------------------------------------------------
@pytest.mark.slow
def test_a_worker_whose_broker_is_replaced_by_an_empty_one_restarts_empty_and_counts_the_new_stream_exactly(
    broker: EmbeddedBroker, spawn_worker, producer
) -> None:
    old_corpus = corpus(51, 2_000, duplicate_share=0.02)
    new_corpus = corpus(52, 3_000, duplicate_share=0.02)
    clock = Stopwatch()
    worker = spawn_worker("stale")
    worker.wait_ready()
    send_all(producer, old_corpus)
    wait_applied(worker, len(old_corpus))
    assert worker.process is not None
    pid = worker.process.pid
    clock.lap("counted the old corpus")
    port = broker.port
    broker.process.kill()  # the broker dies; its storage is memory only (a stop is 5 s slower)
    broker.process.wait(10)
    replacement = start_broker(port)  # empty, new topic ids, same address
    try:
        new_settings = Settings.from_env({"SALESPULSE_BROKER": replacement.bootstrap})
        # As the deployment's init step would; 4 partitions.
        ensure_topics(new_settings, input_topics(new_settings))
        with EventProducer(new_settings) as fresh:
            # Part of the new stream arrives before the worker has noticed anything.
            send_all(fresh, new_corpus[:600])
            clock.lap("replaced the broker")

            def noticed() -> bool:
                log = worker.log_path.read_text(errors="replace")
                return "the broker changed identity" in log and "belongs to another broker: wiping it" in log

            wait_for(
                noticed, "the watchdog re-executing the worker, which wipes its state", worker, timeout=30
            )
            clock.lap("re-executed")
            worker.wait_ready()
            clock.lap("ready")
            send_all(fresh, new_corpus[600:])
        kpis = wait_applied(worker, len(new_corpus))
        clock.lap("counted the new corpus")
        assert worker.process.poll() is None and worker.process.pid == pid, "re-executed in place"
        assert kpis["partitions"] == ALL
        assert_worker_exact(worker, expected(new_corpus, NOW), "after the broker was replaced")
        saved = orjson.loads((worker.data_dir / "broker-identity.json").read_bytes())
        assert saved == broker_identity(new_settings)
        print(f"\n{clock}")
    finally:
        worker.kill()  # Tansu takes 5 s to stop while clients are connected
        replacement.stop()


def test_a_worker_started_on_state_of_another_broker_wipes_it_logs_it_and_counts_exactly(
    settings: Settings, spawn_worker, tmp_path: Path
) -> None:
    ensure_topics(settings, input_topics(settings))
    data_dir = tmp_path / "foreign"
    data_dir.mkdir()
    (data_dir / "broker-identity.json").write_bytes(orjson.dumps(broker_identity(settings)))
    (data_dir / "stale-marker").write_text("state from the other broker")
    events = corpus(61, 4_000, duplicate_share=0.02)
    other = start_broker()
    started: list[WorkerProcess] = []
    try:
        other_settings = Settings.from_env({"SALESPULSE_BROKER": other.bootstrap})
        with EventProducer(other_settings) as p:
            send_all(p, events)  # already waiting when the worker starts
        worker = spawn_worker("foreign", SALESPULSE_BROKER=other.bootstrap)
        started.append(worker)
        worker.wait_ready()
        kpis = wait_applied(worker, len(events))
        log = worker.log_path.read_text(errors="replace")
        assert f"state in {data_dir} belongs to another broker: wiping it" in log, logs(worker)
        assert not (data_dir / "stale-marker").exists()
        saved = orjson.loads((data_dir / "broker-identity.json").read_bytes())
        assert saved == broker_identity(other_settings) != broker_identity(settings)
        assert kpis["partitions"] == ALL
        assert_worker_exact(worker, expected(events, NOW), "after wiping foreign state")
    finally:
        for worker in started:
            worker.kill()
        other.stop()


def key_lines(worker: WorkerProcess, *needles: str) -> str:
    """The log lines that tell the story of a broker switch, for a failure message."""
    lines = worker.log_path.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if any(n in line for n in needles))


def watchdog_started(worker: WorkerProcess) -> float:
    """Epoch seconds at which the worker's identity watchdog started (info log)."""
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if "[^Worker]: Starting..." in line:  # logged right after the watchdog thread starts
            stamp = line[1 : line.index("]")]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise AssertionError(f"no start line in the log{logs(worker)}")


@pytest.mark.slow
def test_a_worker_never_carries_stale_state_into_a_replaced_broker_while_events_keep_flowing(
    broker: EmbeddedBroker, spawn_worker, producer
) -> None:
    """As in production: the broker comes back empty and producers never stopped sending.

    The identity watchdog polls every few seconds, while faust rejoins the group on the new
    broker about 3 s after it is back. The broker is replaced just after a watchdog poll, so
    the old process is assigned the new broker's partitions before the next poll, and the
    new stream (longer than the old one) is already past the offsets it still holds in memory.
    Nothing it applies then may survive into the state the re-executed worker recovers.
    """
    interval = inspect.signature(_watch_identity).parameters["interval"].default
    old_corpus = corpus(53, 2_000, duplicate_share=0.02)
    new_corpus = corpus(54, 6_000, duplicate_share=0.02)
    worker = spawn_worker("flowing", SALESPULSE_TEST_LOGLEVEL="info")
    worker.wait_ready()
    send_all(producer, old_corpus)
    wait_applied(worker, len(old_corpus))
    started = watchdog_started(worker)
    polls = math.ceil((time.time() - started) / interval)
    time.sleep(max(0.0, started + polls * interval + 0.2 - time.time()))
    port = broker.port
    broker.process.kill()
    broker.process.wait(10)
    replacement = start_broker(port)
    try:
        new_settings = Settings.from_env({"SALESPULSE_BROKER": replacement.bootstrap})
        ensure_topics(new_settings, input_topics(new_settings))
        with EventProducer(new_settings) as fresh:
            send_all(fresh, new_corpus[:3_000])  # past the old offsets at once
            for batch in chunked(new_corpus[3_000:], 100):  # then about 1,000 events/s
                send_all(fresh, batch)
                time.sleep(0.08)
        wait_for(
            lambda: "belongs to another broker: wiping it" in worker.log_path.read_text(errors="replace"),
            "the watchdog re-executing the worker",
            worker,
            timeout=30,
        )
        try:
            worker.wait_ready(timeout=25)  # about 12 s when all is well
            kpis = wait_applied(worker, len(new_corpus), timeout=45)
            assert kpis["partitions"] == ALL
            assert_worker_exact(worker, expected(new_corpus, NOW), "new stream after the broker was replaced")
        except AssertionError as exc:
            story = key_lines(
                worker,
                "Setting newly assigned partitions",
                "recovered: active",
                "changed identity",
                "wiping it",
                "-changelog | 0 ",
            )
            raise AssertionError(
                f"{str(exc)[:3000]}\n--- assignments, changelog ends and the re-exec, from the worker log "
                f"(old process before 'changed identity', new one after) ---\n{story}"
            ) from None
    finally:
        worker.kill()
        replacement.stop()


# -- 6. broker down -----------------------------------------------------------------------
def post_events(worker: WorkerProcess, events: list[dict[str, Any]]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://{worker.address}/events",
        data=orjson.dumps(events),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {worker.token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.mark.slow
def test_a_worker_started_without_a_broker_stays_alive_and_unready_then_counts_once_it_appears(
    spawn_worker,
) -> None:
    port = free_port()  # nothing listens there
    worker = spawn_worker("no-broker", SALESPULSE_BROKER=f"127.0.0.1:{port}")
    started = time.monotonic()
    wait_for(
        lambda: (try_json(f"http://{worker.address}/healthz") or (0,))[0] == 200,
        "/healthz answering 200 while the broker is unreachable",
        worker,
        timeout=15,
    )
    alive_after = time.monotonic() - started
    status, body = try_json(f"http://{worker.address}/readyz") or (0, None)
    assert status == 503, body
    events = corpus(71, 3_000, duplicate_share=0.02)
    status, body = post_events(worker, events[:10])
    assert status == 503, body
    retry = f"broker 127.0.0.1:{port} not reachable"
    wait_for(
        lambda: worker.log_path.read_text(errors="replace").count(retry) >= 2,
        "two retry lines",
        worker,
        timeout=20,
    )
    assert "retrying in" in worker.log_tail(), logs(worker)
    assert worker.process is not None and worker.process.poll() is None, "exited without a broker"
    status, _ = try_json(f"http://{worker.address}/readyz") or (0, None)
    assert status == 503
    late_broker = start_broker(port)
    try:
        appeared = time.monotonic()
        worker.wait_ready(timeout=30)
        ready_after = time.monotonic() - appeared
        with EventProducer(Settings.from_env({"SALESPULSE_BROKER": late_broker.bootstrap})) as p:
            send_all(p, events)
        wait_applied(worker, len(events))
        assert_worker_exact(worker, expected(events, NOW), "after the broker appeared")
        print(f"\n/healthz after {alive_after:.1f}s; ready {ready_after:.1f}s after the broker appeared")
    finally:
        worker.kill()  # Tansu takes 5 s to stop while clients are connected
        late_broker.stop()


def test_the_producer_raises_broker_unavailable_within_its_timeout_when_the_broker_is_unreachable() -> None:
    port = free_port()
    dead = Settings.from_env({"SALESPULSE_BROKER": f"127.0.0.1:{port}"})
    event = corpus(81, 1)[0]
    timeout = 3.0
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        started = time.monotonic()
        try:
            with EventProducer(dead, timeout=timeout) as p:
                p.send(event)
        except Exception as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    # In a thread, so a hang fails the test at the deadline instead of holding the suite.
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 3)
    assert not thread.is_alive(), f"EventProducer(timeout={timeout}) still blocked after {timeout + 3:.0f}s"
    error = outcome.get("error")
    assert isinstance(error, BrokerUnavailable), repr(error)
    assert f"cannot reach the broker at 127.0.0.1:{port}" in str(error)
    assert outcome["elapsed"] < timeout + 3


def test_emit_exits_nonzero_with_a_clear_message_within_seconds_when_the_broker_is_unreachable(
    tmp_path: Path,
) -> None:
    port = free_port()
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in corpus(82, 50)))
    command = [
        sys.executable,
        "-m",
        "salespulse.streams",
        "emit",
        str(source),
        "--broker",
        f"127.0.0.1:{port}",
        "--timeout",
        "3",
    ]
    started = time.monotonic()
    done: subprocess.CompletedProcess[bytes] | None = None
    with contextlib.suppress(subprocess.TimeoutExpired):
        done = subprocess.run(command, capture_output=True, cwd=REPO, timeout=10, check=False)
    elapsed = time.monotonic() - started
    assert done is not None, "salespulse emit --timeout 3 against a dead broker still ran after 10s (killed)"
    message = done.stderr.decode()
    assert done.returncode != 0, message
    assert f"cannot reach the broker at 127.0.0.1:{port}" in message
    assert "Traceback" not in message
    assert elapsed < 10, f"emit took {elapsed:.1f}s"
