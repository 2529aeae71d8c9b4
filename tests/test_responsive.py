"""The event loop stays responsive: ``/healthz`` answers within 100 ms (p99) while a worker
validates and sends the largest ``POST /events`` body (8 MiB of NDJSON, about 35,000
events) and while it takes the state image of a 250,000-customer partition.

A thread polls ``/healthz`` every 10 ms, each time on a new connection, while the main
thread only waits; the figures are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from salespulse.schemas.topics import route
from salespulse.streams.pipeline.engine import Engine
from salespulse.streams.pipeline.snapshot import Snapshots
from salespulse.streams.pipeline.snapshot_writer import SnapshotWriter
from salespulse.streams.settings import Settings
from salespulse.streams.tools.bench import _customer_events, _load
from salespulse.streams.tools.generator import GeneratorConfig, generate
from tests.conftest import FIXED_CLOCK, FIXED_NOW, TOKEN, http, wait_until

# Latency under a load the tests make themselves: other tests' load would be measured too.
pytestmark = pytest.mark.serial

P99_LIMIT = 0.100
CUSTOMERS = 250_000


class HealthProbe:
    """Polls ``/healthz`` every ``interval`` seconds in a thread; latencies in seconds."""

    def __init__(self, address: str, interval: float = 0.010) -> None:
        self.url = f"http://{address}/healthz"
        self.interval = interval
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status, _ = http(self.url, timeout=5.0, token="")
            except OSError:
                status = 0
            took = time.perf_counter() - started
            if status == 200:
                self.latencies.append(took)
            else:
                self.failures += 1
            self._stop.wait(max(0.0, self.interval - took))

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        return (
            f"{len(ordered)} probes, p50 {ordered[len(ordered) // 2] * 1000:.1f} ms,"
            f" p99 {self.p99() * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
        )


def largest_body() -> tuple[bytes, int]:
    """NDJSON events up to the largest body a worker accepts."""
    limit = Settings().max_body_bytes
    lines: list[bytes] = []
    size = 0
    for event in generate(GeneratorConfig(seed=29, now=FIXED_NOW), 60_000):
        line = orjson.dumps(event) + b"\n"
        if size + len(line) > limit:
            break
        lines.append(line)
        size += len(line)
    return b"".join(lines), len(lines)


def test_healthz_answers_within_100_ms_while_the_largest_post_is_validated_and_sent(
    spawn_worker: Any,
) -> None:
    body, count = largest_body()
    assert count > 30_000 and len(body) > 8_000_000
    worker = spawn_worker("post")
    worker.wait_ready()
    request = urllib.request.Request(
        f"http://{worker.address}/events",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {TOKEN}"},
    )
    with HealthProbe(worker.address) as probe:
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            status, answer = response.status, orjson.loads(response.read())
        took = time.perf_counter() - started
    assert (status, answer) == (202, {"accepted": count})
    print(f"\nPOST of {len(body):,} bytes ({count:,} events) took {took:.2f}s; /healthz: {probe.summary()}")
    assert probe.failures == 0
    assert len(probe.latencies) >= 20, "the probe covered the request"
    assert probe.p99() < P99_LIMIT, probe.summary()


def images(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "snapshots").glob("*.state"))


def test_healthz_answers_within_100_ms_while_a_250000_customer_partition_is_imaged(
    spawn_worker: Any, broker: Any
) -> None:
    worker = spawn_worker("image", SALESPULSE_PARTITIONS="1", SALESPULSE_SNAPSHOT_INTERVAL="2")
    worker.wait_ready()
    events = _customer_events(CUSTOMERS, seed=7)
    _load(broker.bootstrap, events)
    wait_until(lambda: worker.progress()["events"] == len(events), timeout=600, interval=1.0)
    wait_until(lambda: images(worker.data_dir), timeout=60)

    # One more event changes the partition, so its next image (of the whole state) falls
    # inside the probe's window.
    extra = next(
        e for e in generate(GeneratorConfig(seed=8, now=FIXED_NOW), 50) if e["type"] == "lead.created"
    )
    with HealthProbe(worker.address) as probe:
        window = time.time()
        _load(broker.bootstrap, [(*route(extra), orjson.dumps(extra))])
        wait_until(
            lambda: [p for p in images(worker.data_dir) if p.stat().st_mtime > window],
            timeout=60,
            interval=0.1,
        )
        time.sleep(0.5)
    (image,) = images(worker.data_dir)
    size = image.stat().st_size
    assert size > 30_000_000, f"an image of {CUSTOMERS:,} customers, not {size:,} bytes"
    print(f"\nimage of a {CUSTOMERS:,}-customer partition ({size:,} bytes); /healthz: {probe.summary()}")
    assert probe.failures == 0
    assert len(probe.latencies) >= 20
    assert probe.p99() < P99_LIMIT, probe.summary()


def test_an_image_is_captured_in_a_thread_while_the_loop_runs_and_applying_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(clock=FIXED_CLOCK, partitions=1)
    engine.state(0)
    snapshots = Snapshots(tmp_path, partitions=1, interval=0.0)
    snapshots.attach("salespulse-state-x-changelog", "id-1")
    capturing, release = threading.Event(), threading.Event()
    begin = snapshots.begin

    def held_begin(partition: int, state: Any) -> Path:
        assert threading.current_thread() is not threading.main_thread(), "captured off the loop"
        capturing.set()
        release.wait(10)
        return begin(partition, state)

    monkeypatch.setattr(snapshots, "begin", held_begin)

    async def scenario() -> None:
        writer = SnapshotWriter(snapshots, engine, lambda: [0])
        writer.recovered(0, 41, from_snapshot=None)
        writer.recovering = True
        writer.tick()
        await asyncio.sleep(0.05)
        assert not capturing.is_set(), "no image while a recovery may restore into the partition"
        writer.recovering = False
        writer.tick()
        await asyncio.to_thread(capturing.wait, 10)
        started = time.perf_counter()
        for _ in range(10):
            await asyncio.sleep(0.01)  # the loop keeps turning during the capture
        assert time.perf_counter() - started < 1.0
        applying = asyncio.ensure_future(writer.lock.acquire())  # what handle_fetch takes
        await asyncio.sleep(0.1)
        assert not applying.done(), "the state stands still while the thread walks it"
        release.set()
        await applying
        writer.lock.release()
        await writer.stop()

    asyncio.run(scenario())
    restored = snapshots.load(0, end=42)
    assert restored is not None and restored.covered == 41
