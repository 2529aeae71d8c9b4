"""Fixtures that run the real parts: an embedded Tansu broker and real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from salespulse.schemas.topics import INPUT_TOPICS
from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.kafka.offsets import true_end_offsets
from salespulse.streams.settings import Settings
from salespulse.streams.tools.broker import EmbeddedBroker, free_port, start_broker
from tests.vtiger_fake import FakeVtiger

REPO = Path(__file__).resolve().parent.parent
#: A fixed clock makes every window boundary, and so every expected number, reproducible.
FIXED_NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
FIXED_CLOCK = "2026-11-26T12:00:00Z"
#: The token every worker, CLI call and in-process client of the suite shares, as the workers
#: of a deployment share one (``ingest_token`` below). A test of the generated token sets
#: ``SALESPULSE_INGEST_TOKEN=""`` for its worker and reads ``WorkerProcess.token``.
TOKEN = "suite-token-4f1c9a7e2b6d8053"


@pytest.fixture(autouse=True, scope="session")
def ingest_token() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SALESPULSE_INGEST_TOKEN", TOKEN)
        yield TOKEN


def http(url: str, timeout: float = 5.0, token: str = TOKEN) -> tuple[int, bytes]:
    """Status and body of a GET, sending ``token`` as a bearer token (none if empty)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


#: A row's own numbers in a ``GET /forecast`` answer, as :func:`forecast_numbers` lists them.
FORECAST_NUMBERS = ("closed_won", "commit", "best_case", "pipeline", "weighted")


def forecast_numbers(view: dict[str, Any], rep: str, currency: str) -> tuple[float, ...]:
    """A rep's closed won, commit, best case, pipeline and weighted in a ``/forecast`` answer
    by rep; zeros where it has no row."""
    for row in view["rows"]:
        if (row["rep"], row["currency"]) == (rep, currency):
            return tuple(row[name] for name in FORECAST_NUMBERS)
    return (0.0,) * len(FORECAST_NUMBERS)


class WorkerProcess:
    """A ``salespulse worker`` subprocess with its own web port and data dir."""

    def __init__(self, broker: str, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = data_dir.with_suffix(".log")
        self.env = {
            **os.environ,
            "SALESPULSE_BROKER": broker,
            "SALESPULSE_WEB_PORT": str(self.port),
            "SALESPULSE_DATA_DIR": str(data_dir),
            "SALESPULSE_CLOCK": FIXED_CLOCK,
            "SALESPULSE_PARTITIONS": "4",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The token this worker serves with: the configured one, or the one it generated."""
        configured = self.env.get("SALESPULSE_INGEST_TOKEN")
        return configured or (self.data_dir / "ingest-token").read_text().strip()

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "salespulse.streams",
                "worker",
                "--loglevel",
                self.env.get("SALESPULSE_TEST_LOGLEVEL", "warning"),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log_tail()}")
            try:
                status, _ = http(f"http://{self.address}/readyz", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s: {self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def kpis(self) -> dict[str, Any]:
        status, body = http(f"http://{self.address}/kpis", token=self.token)
        assert status == 200, body
        return dict(orjson.loads(body))

    def forecast(self, **query: str | int) -> dict[str, Any]:
        """This worker's ``GET /forecast`` share for ``query`` (period, by, as_of, from, to)."""
        params = "&".join(f"{name}={value}" for name, value in query.items())
        status, body = http(f"http://{self.address}/forecast?{params}", token=self.token)
        assert status == 200, body
        return dict(orjson.loads(body))

    def progress(self) -> dict[str, Any]:
        status, body = http(f"http://{self.address}/progress", token=self.token)
        assert status == 200, body
        return dict(orjson.loads(body))

    def metrics(self) -> str:
        token = self.env.get("SALESPULSE_METRICS_TOKEN", "")  # /metrics is open without one
        status, body = http(f"http://{self.address}/metrics", token=token)
        assert status == 200, body
        return body.decode()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


#: The fixtures of tests that start a broker or worker processes: the long ones.
_PROCESS_FIXTURES = frozenset({"broker", "settings", "producer", "spawn_worker", "fake"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest tests first (marked ``slow``), then the others that start processes,
    then the rest. The suite runs in several processes (pytest-xdist, ``make test``), which
    take tests in this order: a long test taken last would run alone at the end, after the
    short ones are done."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        return 1 if _PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())) else 2

    items.sort(key=rank)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh, empty embedded broker per test (Tansu starts in milliseconds)."""
    running = start_broker()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def settings(broker: EmbeddedBroker) -> Settings:
    return Settings.from_env({"SALESPULSE_BROKER": broker.bootstrap})


@pytest.fixture
def producer(settings: Settings) -> Iterator[EventProducer]:
    with EventProducer(settings) as p:
        yield p


@pytest.fixture
def spawn_worker(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Any]:
    """Factory for worker processes; all are stopped at the end of the test."""
    workers: list[WorkerProcess] = []

    def spawn(name: str = "w1", **env: str) -> WorkerProcess:
        worker = WorkerProcess(broker.bootstrap, tmp_path / name, **env).start()
        workers.append(worker)
        return worker

    yield spawn
    for worker in workers:
        worker.kill()


@pytest.fixture
def fake() -> Iterator[FakeVtiger]:
    """A started, empty local vtiger (tests/vtiger_fake.py), stopped after the test."""
    crm = FakeVtiger()
    crm.start()
    try:
        yield crm
    finally:
        crm.stop()


def send_and_wait(
    worker: WorkerProcess, producer: EventProducer, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Send ``events`` and return the worker's /kpis once every delivery has been applied."""
    for event in events:
        producer.send(event)
    producer.flush()

    def applied() -> dict[str, Any] | None:
        kpis = worker.kpis()
        c = kpis["counters"]
        return kpis if sum(c["events"].values()) + c["duplicates"] == len(events) else None

    wait_until(applied, timeout=60)
    settle(worker)
    return worker.kpis()


def settle(*workers: WorkerProcess, timeout: float = 60.0) -> None:
    """Wait until the workers have applied every record on the input topics, up to the
    broker's end: the deliveries the counters show, and also what the workers forwarded to
    each other (a deal's close goes on to its opportunity's crm.leads partition after the
    deal is counted). It must hold twice, half a second apart, so that a forward the worker
    is still sending when the counters are done has reached the broker."""
    bootstrap = workers[0].env["SALESPULSE_BROKER"]
    count = int(workers[0].env["SALESPULSE_PARTITIONS"])
    tps = [TopicPartition(topic, p) for topic in INPUT_TOPICS for p in range(count)]

    def caught_up() -> bool:
        applied: dict[str, int] = {}
        for worker in workers:
            applied.update(worker.progress()["applied_offsets"])
        ends = true_end_offsets({"bootstrap_servers": [bootstrap]}, tps)
        return all(applied.get(f"{topic}/{p}", -1) + 1 >= end for (topic, p), end in ends.items())

    def twice() -> bool:
        if not caught_up():
            return False
        time.sleep(0.5)
        return caught_up()

    wait_until(twice, timeout=timeout)


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll until ``predicate()`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def records(bootstrap: str, topics: tuple[str, ...]) -> list[Any]:
    """Every record on ``topics``, read from the start until a poll comes back empty."""
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap], enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return list(consumer)
    finally:
        consumer.close()
