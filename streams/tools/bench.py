"""``salespulse bench``: throughput, latency and memory of one worker, measured honestly.

The same seed gives the same events; they are all pre-loaded into a fresh embedded broker
before any clock starts. In the same run it measures the reference paths, raw consume and
decode (aiokafka + orjson), the same worker with no KPI work and a naive per-event faust
agent, each in its own process as the worker is, and prints the worker's throughput as
ratios to them, because absolute numbers on a shared 2-core machine are noisy. At the end
the worker's numbers are checked against a plain count.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from salespulse.schemas.event_time import format_time, parse_time
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import route
from salespulse.streams.hot_path import describe
from salespulse.streams.kafka.admin import ensure_topics, input_topics
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import free_port, start_broker
from salespulse.streams.tools.generator import GeneratorConfig, generate

NAIVE_TOPIC = "bench.naive"
#: The embedded broker's group session timeout (streams/pipeline/app.py), plus a margin.
GROUP_SESSION_SECONDS = 6.5
BENCH_NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
#: How the bench starts a worker, and the same worker with no KPI work.
WORKER = ("-m", "salespulse.streams", "worker", "--loglevel", "warning")
NO_KPIS_WORKER = ("-m", "salespulse.streams.tools.no_kpis")
#: The token the bench's own workers serve with, and its reads send: one per run.
TOKEN = secrets.token_urlsafe(32)


@dataclass
class BenchResult:
    events: int
    seconds: float
    events_per_s: float
    raw_events_per_s: float
    naive_events: int
    naive_events_per_s: float
    vs_raw: float
    vs_naive: float
    latency_offered_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    peak_rss_mb: float
    exact: bool
    mismatches: list[str] = field(default_factory=list)
    customers: int = 0
    #: Whether the per-event modules ran compiled (streams/hot_path.py).
    hot_path: str = ""
    #: The wrong-partition check alone, per event, and its share of the worker's time.
    partition_check_us: float = 0.0
    partition_check_share: float = 0.0
    #: Most records a fetch handed the worker (``SALESPULSE_FETCH_RECORDS``).
    fetch_records: int = 0
    #: The same worker with no KPI work (streams/tools/no_kpis.py), over the same events.
    no_kpis_events_per_s: float = 0.0
    no_kpis_vs_raw: float = 0.0
    #: The eight KPIs' share of the full worker's time an event.
    kpi_share: float = 0.0


def _corpus(
    count: int, seed: int, customers: int, events_from: Path | None = None
) -> list[tuple[str, bytes, bytes, dict[str, Any]]]:
    """The generated events, or the first ``count`` lines of ``events_from`` (NDJSON): another
    version's corpus, so that two versions are measured on the same events."""
    if events_from is None:
        config = GeneratorConfig(seed=seed, now=BENCH_NOW, customers=customers, duplicate_share=0.01)
        events: Iterable[dict[str, Any]] = generate(config, count)
    else:
        with events_from.open("rb") as lines:
            events = [orjson.loads(line) for line in islice(lines, count)]
    out = []
    for event in events:
        topic, key = route(event)
        out.append((topic, key, orjson.dumps(event), event))
    return out


def _partition_check_seconds(keys: list[bytes], partitions: int) -> float:
    """Per event: the worker's wrong-partition check, timed over the corpus's own keys."""
    started = time.perf_counter()
    for key in keys:
        partition_for(key, partitions)
    return (time.perf_counter() - started) / max(1, len(keys))


def _load(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=[bootstrap], batch_size=512 * 1024, linger_ms=20, acks=1, max_request_size=4 << 20
    )
    for topic, key, value in records:
        producer.send(topic, value, key=key)
    producer.flush(600)
    producer.close()


def _fetch_records() -> int:
    """The fetch size the workers ran with: they inherit this process's environment, and
    memory and speed both depend on it."""
    return Settings.from_env().fetch_records


def _reference(module: str, *args: str) -> float:
    """Run a reference path in its own process (``streams/tools/<module>.py``); its events/s.

    It prints one JSON line with its events and seconds when it is done, and nothing else
    matters: the naive agent stops itself with SIGTERM, so its exit status says nothing.
    """
    ran = subprocess.run(
        [sys.executable, "-m", f"salespulse.streams.tools.{module}", *args],
        capture_output=True,
        timeout=1800,
        check=False,
    )
    # faust's terminal may prefix the line with cursor escapes.
    lines = [line[line.index("{") :] for line in ran.stdout.decode().splitlines() if "{" in line]
    if not lines:
        raise RuntimeError(f"the {module} reference path did not finish: {ran.stderr.decode()[-2000:]}")
    result = orjson.loads(lines[-1])
    return float(result["events"]) / float(result["seconds"])


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def _latency_buckets(address: str) -> dict[float, float]:
    text = _get(f"http://{address}/metrics").decode()
    for family in text_string_to_metric_families(text):
        if family.name == "salespulse_event_to_state_seconds":
            return {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}
    return {}


def _quantile(buckets: dict[float, float], q: float) -> float | None:
    """histogram_quantile, as Prometheus computes it, over cumulative bucket counts."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            share = (rank - below) / (buckets[bound] - below) if buckets[bound] > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, buckets[bound]
    return lower


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _expected(corpus: list[tuple[str, bytes, bytes, dict[str, Any]]], clock: int) -> dict[str, Any]:
    """A plain count: events per type without repeated ids, three 24h totals, and the 30-day
    sales per currency, summed as decimals from the events' own numbers."""
    seen: set[str] = set()
    per_type: Counter[str] = Counter()
    day: Counter[str] = Counter()
    sales: dict[str, Decimal] = {}
    duplicates = 0
    oldest_hour = clock // 3600 - 62 * 24 + 1
    for _, _, _, event in corpus:
        t = parse_time(event["occurred_at"])
        late = t // 3600 < oldest_hour
        if not late and event["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(event["event_id"])
        per_type[event["type"]] += 1
        if not late and clock // 3600 - 23 <= t // 3600 <= clock // 3600:
            day[event["type"]] += 1
        if event["type"] == "deal.won" and not late and clock // 3600 - 719 <= t // 3600 <= clock // 3600:
            currency, amount = event["data"]["currency"], Decimal(str(event["data"]["amount"]))
            sales[currency] = sales.get(currency, Decimal(0)) + amount
    return {"events": dict(per_type), "duplicates": duplicates, "day": dict(day), "sales": sales}


def _check(view: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    problems = []
    events = {k: v for k, v in view["counters"]["events"].items() if v}
    if events != expected["events"]:
        problems.append(f"events by type {events} != {expected['events']}")
    if view["counters"]["duplicates"] != expected["duplicates"]:
        problems.append(f"duplicates {view['counters']['duplicates']} != {expected['duplicates']}")
    day = view["windows"]["24h"]
    checks = {
        "leads": (day["leads"]["leads"], expected["day"].get("lead.created", 0)),
        "deals won": (day["sales"]["deals_won"], expected["day"].get("deal.won", 0)),
        "activities": (day["engagement"]["activities"], expected["day"].get("customer.activity", 0)),
    }
    for name, (got, want) in checks.items():
        if got != want:
            problems.append(f"24h {name}: worker {got} != reference {want}")
    # Rials pass 2**53 here: exact to the unit, or not at all.
    sales = {
        c: Decimal(v) for c, v in view["windows"]["30d"]["sales"]["amount_by_currency"].items() if Decimal(v)
    }
    if sales != expected["sales"]:
        problems.append(f"30d sales by currency {sales} != reference {expected['sales']}")
    return problems


def run_bench(
    events: int = 1_000_000,
    seed: int = 1,
    naive_events: int = 100_000,
    latency_rate: float = 5000.0,
    latency_seconds: float = 10.0,
    customers: int = 50_000,
    partitions: int = 4,
    log: Any = print,
    events_from: Path | None = None,
) -> BenchResult:
    """Run the whole benchmark on a fresh embedded broker."""
    broker = start_broker()
    workdir = Path(tempfile.mkdtemp(prefix="salespulse-bench-"))
    worker: subprocess.Popen[bytes] | None = None
    try:
        settings = Settings.from_env(
            {"SALESPULSE_BROKER": broker.bootstrap, "SALESPULSE_PARTITIONS": str(partitions)}
        )
        ensure_topics(settings, input_topics(settings))
        if events_from is None:
            log(f"generating {events:,} events (seed {seed}, {customers:,} customers)...")
        else:
            log(f"reading up to {events:,} events from {events_from}...")
        corpus = _corpus(events, seed, customers, events_from)
        log("pre-loading the broker (not timed)...")
        _load(broker.bootstrap, [(t, k, v) for t, k, v, _ in corpus])
        naive_n = min(naive_events, events)
        _load(broker.bootstrap, [(NAIVE_TOPIC, k, v) for _, k, v, _ in corpus[:naive_n]])
        clock = int(BENCH_NOW.timestamp())
        expected = _expected(corpus, clock)
        total_deliveries = len(corpus)
        check_seconds = _partition_check_seconds([k for _, k, _, _ in corpus], partitions)

        log("raw consume + decode...")
        raw_rate = _reference(
            "raw",
            "--broker",
            broker.bootstrap,
            "--count",
            str(total_deliveries),
            "--partitions",
            str(partitions),
        )

        log("worker with no KPI work...")
        worker, address = _start_worker(
            broker.bootstrap, workdir, "no-kpis", partitions, command=NO_KPIS_WORKER
        )
        ready_at = _wait_applied(worker, address, total_deliveries, 3600, workdir / "no-kpis.log")
        no_kpis_rate = total_deliveries / (time.perf_counter() - ready_at)
        no_kpis_applied = _applied(address)
        _stop(worker)

        log("worker with all eight KPIs...")
        worker, address = _start_worker(broker.bootstrap, workdir, "worker", partitions)
        ready_at = _wait_applied(worker, address, total_deliveries, 3600, workdir / "worker.log")
        seconds = time.perf_counter() - ready_at
        rate = total_deliveries / seconds
        view = orjson.loads(_get(f"http://{address}/kpis"))
        mismatches = _check(view, expected)
        applied = _applied(address)
        if applied != no_kpis_applied:
            mismatches.append(f"no-KPI reference applied {no_kpis_applied}, the worker {applied}")

        log(f"latency at {latency_rate:,.0f} events/s offered for {latency_seconds:.0f}s...")
        before = _latency_buckets(address)
        live = GeneratorConfig(seed=seed + 1, now=BENCH_NOW, customers=customers)
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], linger_ms=5)
        n_live = int(latency_rate * latency_seconds)
        t0 = time.perf_counter()
        for i, event in enumerate(generate(live, n_live), 1):
            topic, key = route(event)
            producer.send(topic, orjson.dumps(event), key=key)
            ahead = i / latency_rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()
        producer.close()
        target = total_deliveries + n_live
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sum(_applied(address)) >= target:
                break
            time.sleep(0.1)
        after = _latency_buckets(address)
        delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
        peak_rss = _peak_rss_mb(worker.pid)
        _stop(worker)

        log(f"naive per-event faust agent over {naive_n:,} events...")
        naive_rate = _reference(
            "naive",
            "--broker",
            broker.bootstrap,
            "--topic",
            NAIVE_TOPIC,
            "--count",
            str(naive_n),
            "--web-port",
            str(free_port()),
            "--partitions",
            str(partitions),
        )
        return BenchResult(
            events=total_deliveries,
            seconds=round(seconds, 3),
            events_per_s=round(rate),
            raw_events_per_s=round(raw_rate),
            naive_events=naive_n,
            naive_events_per_s=round(naive_rate),
            vs_raw=round(rate / raw_rate, 4),
            vs_naive=round(rate / naive_rate, 2),
            latency_offered_per_s=latency_rate,
            latency_p50_s=_quantile(delta, 0.5),
            latency_p99_s=_quantile(delta, 0.99),
            peak_rss_mb=round(peak_rss, 1),
            exact=not mismatches,
            mismatches=mismatches,
            customers=customers,
            hot_path=describe(),
            partition_check_us=round(check_seconds * 1e6, 3),
            partition_check_share=round(check_seconds * rate, 4),
            fetch_records=_fetch_records(),
            no_kpis_events_per_s=round(no_kpis_rate),
            no_kpis_vs_raw=round(no_kpis_rate / raw_rate, 4),
            kpi_share=round(1 - rate / no_kpis_rate, 4),
        )
    finally:
        if worker is not None:
            _stop(worker)
        broker.stop()


def _applied(address: str) -> tuple[int, int, int]:
    """Events applied, duplicates dropped and records rejected, as ``/progress`` has them."""
    progress = orjson.loads(_get(f"http://{address}/progress"))
    return progress["events"], progress["duplicates"], progress["rejected"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def as_json(result: BenchResult | MemoryResult) -> bytes:
    return orjson.dumps(asdict(result), option=orjson.OPT_INDENT_2)


@dataclass
class MemoryResult:
    customers: int
    events: int
    seconds: float
    peak_rss_mb: float
    restart_seconds: float
    restart_peak_rss_mb: float
    exact_after_restart: bool
    #: From process start to every event applied, restoring the local snapshot.
    restart_snapshot_seconds: float
    restart_snapshot_peak_rss_mb: float
    exact_after_snapshot_restart: bool
    #: A worker with nothing to recover, from process start to ready: start-up, broker
    #: checks and the group join, which both restarts also pay.
    empty_start_seconds: float
    detail: str
    hot_path: str = ""
    #: Most records a fetch handed the workers (``SALESPULSE_FETCH_RECORDS``).
    fetch_records: int = 0


#: Won deals in rials in the memory corpus, of about 2.5 x 10^13 each: their 30-day sum passes
#: 2**53, so an exact restart shows sums that neither overflow nor round.
RIAL_DEALS = 1000


def _customer_events(customers: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    """One activity and one NPS answer for each of ``customers`` distinct customers, then won
    deals in rials for the first :data:`RIAL_DEALS` of them (no new customer state). Each answer
    carries a ``response_id``, as a survey tool's do, so the outcome memory holds a million."""
    rng = random.Random(seed)
    clock = int(BENCH_NOW.timestamp())
    out = []
    for i in range(customers):
        customer = f"C-{i:07d}"
        for kind in ("customer.activity", "survey.answered"):
            t = clock - rng.randrange(29 * 86400)
            data: dict[str, Any] = (
                {"customer_id": customer, "channel": rng.choice(("email", "call", "login"))}
                if kind == "customer.activity"
                else {
                    "survey": "nps",
                    "score": rng.randrange(11),
                    "customer_id": customer,
                    "region": rng.choice(("north", "south", "berlin")),
                    "product": rng.choice(("crm-basic", "crm-pro")),
                    "response_id": f"R-{i:07d}",
                }
            )
            event = {
                "event_id": f"{kind}-{i}",
                "type": kind,
                "occurred_at": format_time(t),
                "source": "salespulse-bench",
                "data": data,
            }
            topic, key = route(event)
            out.append((topic, key, orjson.dumps(event)))
    for i in range(min(customers, RIAL_DEALS)):
        event = {
            "event_id": f"deal.won-{i}",
            "type": "deal.won",
            "occurred_at": format_time(clock - rng.randrange(29 * 86400)),
            "source": "salespulse-bench",
            "data": {
                "deal_id": f"D-{i}",
                "customer_id": f"C-{i:07d}",
                "rep_id": "r-1",
                "region": "tehran",
                "product": "crm-pro",
                "kind": "renewal",
                "amount": rng.randrange(10**13, 4 * 10**13),
                "currency": "IRR",
            },
        }
        topic, key = route(event)
        out.append((topic, key, orjson.dumps(event)))
    return out


def _start_worker(
    broker: str,
    workdir: Path,
    name: str,
    partitions: int,
    data: str | None = None,
    command: tuple[str, ...] = WORKER,
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "SALESPULSE_BROKER": broker,
        "SALESPULSE_WEB_PORT": str(port),
        "SALESPULSE_DATA_DIR": str(workdir / (data or name)),
        "SALESPULSE_CLOCK": format_time(int(BENCH_NOW.timestamp())),
        "SALESPULSE_PARTITIONS": str(partitions),
        "SALESPULSE_INGEST_TOKEN": TOKEN,
    }
    process = subprocess.Popen(
        [sys.executable, *command],
        env=env,
        stdout=(workdir / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, f"127.0.0.1:{port}"


def _wait_applied(
    process: subprocess.Popen[bytes], address: str, total: int, timeout: float, log: Path
) -> float:
    """Wait until the worker has applied ``total`` deliveries; return when it became ready.

    Readiness (group joined, tables recovered) is when the first fetch can start, so the
    benchmark's clock starts there.
    """
    deadline = time.monotonic() + timeout
    ready_at: float | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited; see {log}")
        try:
            done = sum(_applied(address))
            ready = orjson.loads(_get(f"http://{address}/readyz"))
        except OSError:
            time.sleep(0.05)
            continue
        if ready_at is None and ready.get("status") == "ready":
            ready_at = time.perf_counter()
        if ready_at is not None and done >= total:
            return ready_at
        time.sleep(0.05)
    raise RuntimeError(f"the worker did not apply {total} events within {timeout:.0f}s")


def _time_to_ready(broker: str, workdir: Path, partitions: int) -> float:
    """Seconds from starting a worker until it is ready (it is then stopped)."""
    process, address = _start_worker(broker, workdir, "empty", partitions)
    started = time.perf_counter()
    try:
        _wait_applied(process, address, 0, 120, workdir / "empty.log")
        return time.perf_counter() - started
    finally:
        _stop(process)


def _customers_counted(view: dict[str, Any]) -> tuple[float, float]:
    """Customers engaged in 30 days, and customers with a latest NPS answer, in a /kpis view."""
    window = view["windows"]["30d"]
    return window["engagement"]["customers_engaged"], sum(
        window["nps"]["customers_by_latest_category"].values()
    )


def run_memory(
    customers: int = 1_000_000, seed: int = 1, partitions: int = 4, log: Any = print
) -> MemoryResult:
    """Peak RSS with ``customers`` distinct customers in state, and exact restarts: one replaying
    the whole changelog on a new disk, one from the first worker's snapshot.

    The work directory (logs, and snapshots of about 170 MB at 1,000,000 customers) is
    removed after a run that completes, and kept for its logs after one that fails.
    """
    broker = start_broker()
    workdir = Path(tempfile.mkdtemp(prefix="salespulse-memory-"))
    processes: list[subprocess.Popen[bytes]] = []
    result: MemoryResult | None = None
    try:
        broker_settings = Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap})
        ensure_topics(broker_settings, input_topics(broker_settings))
        log("starting a worker with nothing to recover...")
        empty_start = _time_to_ready(broker.bootstrap, workdir, partitions)
        log(f"pre-loading {2 * customers:,} events for {customers:,} distinct customers (not timed)...")
        events = _customer_events(customers, seed)
        _load(broker.bootstrap, events)

        def run(name: str, data: str) -> tuple[float, float, dict[str, Any]]:
            """Start a worker on data dir ``data``, wait until it has applied every event:
            seconds from process start, peak RSS, /kpis."""
            process, address = _start_worker(broker.bootstrap, workdir, name, partitions, data)
            processes.append(process)
            started = time.perf_counter()
            _wait_applied(process, address, len(events), 3600, workdir / f"{name}.log")
            seconds = time.perf_counter() - started
            peak = _peak_rss_mb(process.pid)  # before /kpis builds its view
            return seconds, peak, orjson.loads(_get(f"http://{address}/kpis"))

        def stop() -> None:
            processes[-1].terminate()  # a graceful stop takes the last images
            processes[-1].wait(120)
            # A worker stopped under load may leave without a LeaveGroup; the next would pay
            # for that in its group join, whichever restart it is.
            time.sleep(GROUP_SESSION_SECONDS)

        def exact(after: dict[str, Any]) -> bool:
            return bool(
                before["series"] == after["series"]
                and before["counters"] == after["counters"]
                and _customers_counted(after) == (customers, customers)
            )

        seconds, peak, before = run("first", "first")
        stop()
        log("restarting on a new disk: the second worker replays the whole changelog...")
        restart, restart_peak, replayed = run("replay", "replay")
        stop()
        log("restarting on the first worker's disk: the third restores its snapshot...")
        from_snapshot, snapshot_peak, restored = run("snapshot", "first")
        engaged, answered = _customers_counted(restored)
        result = MemoryResult(
            customers=customers,
            events=len(events),
            seconds=round(seconds, 2),
            peak_rss_mb=round(peak, 1),
            restart_seconds=round(restart, 2),
            restart_peak_rss_mb=round(restart_peak, 1),
            exact_after_restart=exact(replayed),
            restart_snapshot_seconds=round(from_snapshot, 2),
            restart_snapshot_peak_rss_mb=round(snapshot_peak, 1),
            exact_after_snapshot_restart=exact(restored),
            empty_start_seconds=round(empty_start, 2),
            detail=f"engaged {engaged:,.0f}, customers with an NPS answer {answered:,.0f},"
            f" rials won over 30 days {restored['windows']['30d']['sales']['amount_by_currency'].get('IRR')}",
            hot_path=describe(),
            fetch_records=_fetch_records(),
        )
        return result
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(30)
        broker.stop()
        if result is not None:
            shutil.rmtree(workdir, ignore_errors=True)
