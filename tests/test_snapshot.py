"""The local state snapshot: a restart fills its state from disk and replays only the tail.

First the pieces on their own: a state image read back is the same state (every KPI, the
detractor list, a customer's profile), and an image that does not fit, a damaged file or
one of another changelog is refused. Then real worker processes against the embedded
broker, checked against ``tests/reference.py`` as in tests/test_faults.py: a worker
restarted from its snapshot is exact, so is one killed (SIGKILL) again and again while it
takes and writes snapshots, and a snapshot that is damaged, of another changelog topic or
ahead of the changelog is ignored for a full replay.
"""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from salespulse.agents.detractors import DetractorsKpi, Policy
from salespulse.agents.registry import KPIS
from salespulse.schemas.topics import route
from salespulse.streams.pipeline import snapshot_writer, state_image
from salespulse.streams.pipeline.engine import Engine, PartitionState
from salespulse.streams.pipeline.snapshot import Snapshots
from salespulse.streams.pipeline.snapshot_writer import SnapshotWriter
from salespulse.streams.pipeline.state_image import ImageMismatch
from tests.conftest import FIXED_NOW, WorkerProcess
from tests.reference import expected, partition_of
from tests.test_faults import NOW, assert_worker_exact, chunked, corpus, send_all, wait_applied

INFO = {"SALESPULSE_TEST_LOGLEVEL": "info", "SALESPULSE_SNAPSHOT_INTERVAL": "0.2"}
CLOCK = FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


class Record:
    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self.offset, self.key, self.value, self.timestamp, self.headers = offset, key, value, None, ()


def applied_engine(events: list[dict[str, Any]], kpis: Any = KPIS) -> Engine:
    engine = Engine(clock=CLOCK, partitions=4, kpis=kpis)
    offsets: dict[tuple[str, int], int] = {}
    for event in events:
        topic, key = route(event)
        p = partition_of(key, 4)
        offset = offsets[(topic, p)] = offsets.get((topic, p), -1) + 1
        engine.apply(topic, p, [Record(offset, key, orjson.dumps(event))])
    return engine


def read_back(state: PartitionState) -> Any:
    buffer = io.BytesIO()
    state_image.dump(state_image.capture(state), buffer)
    buffer.seek(0)
    return state_image.load(buffer)


def test_a_state_image_read_back_into_a_fresh_engine_is_the_same_state() -> None:
    events = corpus(31, 4_000, duplicate_share=0.05, late_share=0.02)
    engine = applied_engine(events)
    copy = Engine(clock=CLOCK, partitions=4)
    for p, state in engine.partitions.items():
        fresh = PartitionState(p, copy.kpis)
        state_image.fill(fresh, read_back(state))
        copy.partitions[p] = fresh
    for label, values in engine.fold.seen.items():
        for value in values:
            copy.fold.register(label, value)
    assert copy.kpis_view(range(4)) == engine.kpis_view(range(4))
    assert copy.detractors(range(4), "all", "30d") == engine.detractors(range(4), "all", "30d")
    customer = next(
        e["data"]["customer_id"]
        for e in events
        if e["type"] == "survey.answered" and "customer_id" in e["data"]
    )
    assert copy.profile(customer, range(4)) == engine.profile(customer, range(4)) is not None
    # And it goes on exactly like the original: the same next events give the same state.
    more = corpus(32, 1_000)
    for target in (engine, copy):
        for i, event in enumerate(more):
            topic, key = route(event)
            target.apply(topic, partition_of(key, 4), [Record(10**6 + i, key, orjson.dumps(event))])
    assert copy.kpis_view(range(4)) == engine.kpis_view(range(4))


def test_an_image_taken_under_another_follow_up_policy_or_layout_does_not_fit() -> None:
    engine = applied_engine(corpus(33, 500))
    image = read_back(engine.partitions[0])
    other_policy = tuple(
        DetractorsKpi(Policy(sla_seconds=3600)) if kpi.name == "detractors" else kpi for kpi in KPIS
    )
    with pytest.raises(ImageMismatch, match="sla_seconds"):
        state_image.fill(PartitionState(0, other_policy), image)
    with pytest.raises(ImageMismatch, match="no state for 'detractors'"):
        state_image.fill(PartitionState(0, [k for k in KPIS if k.name != "detractors"]), image)


class Hostile:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, ("touch /tmp/salespulse-hostile-image-ran",)


def test_an_image_that_names_anything_but_arrays_is_refused_before_it_runs() -> None:
    hostile = pickle.dumps(Hostile())
    with pytest.raises(ImageMismatch, match=r"may not name posix\.system"):
        state_image.load(io.BytesIO(hostile))
    with pytest.raises(ImageMismatch, match="cannot be read"):
        state_image.load(io.BytesIO(b"\x80\x05not a pickle at all"))


def sealed(tmp_path: Path, state: PartitionState, covered: int, topic_id: str = "id-1") -> Snapshots:
    snapshots = Snapshots(tmp_path, partitions=4, interval=1.0)
    snapshots.attach("salespulse-state-x-changelog", topic_id)
    snapshots.seal(snapshots.begin(0, state), 0, covered, {"region": ["north"]})
    return snapshots


def test_a_sealed_snapshot_loads_back_only_for_its_changelog_and_within_its_end(tmp_path: Path) -> None:
    state = applied_engine(corpus(34, 500)).partitions[0]
    snapshots = sealed(tmp_path, state, covered=41)
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file was renamed into place"
    restored = snapshots.load(0, end=42)
    assert restored is not None and restored.covered == 41 and restored.labels == {"region": ["north"]}
    assert snapshots.load(0, end=41) is None, "covers the changelog's last offset or more"
    assert snapshots.load(1, end=100) is None, "no snapshot for that partition"
    other = Snapshots(tmp_path, partitions=4, interval=1.0)
    other.attach("salespulse-state-x-changelog", "id-2")  # the changelog topic was recreated
    assert other.load(0, end=100) is None
    assert Snapshots(tmp_path, partitions=8, interval=1.0).load(0, end=100) is None


def test_a_graceful_stop_takes_its_images_once_the_batchs_writes_are_out_and_not_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = applied_engine(corpus(34, 500))
    snapshots = Snapshots(tmp_path, partitions=4, interval=1.0)
    snapshots.attach("salespulse-state-x-changelog", "id-1")

    async def stop_while_applying(writes_go_out: bool) -> bool:
        writer = SnapshotWriter(snapshots, engine, lambda: [0])
        writer.recovered(0, 41, from_snapshot=None)
        writer.applying = True
        stopping = asyncio.ensure_future(writer.stop())
        await asyncio.sleep(0.2)
        waited = not stopping.done() and not snapshots.path(0).exists()
        if writes_go_out:
            writer.applying = False
        await stopping
        return waited

    assert asyncio.run(stop_while_applying(writes_go_out=True)), "it waited for the writes"
    restored = snapshots.load(0, end=42)
    assert restored is not None and restored.covered == 41
    snapshots.path(0).unlink()
    monkeypatch.setattr(snapshot_writer, "STOP_WAIT_SECONDS", 0.5)
    assert asyncio.run(stop_while_applying(writes_go_out=False))
    assert not snapshots.path(0).exists(), "writes never sent: no image"


@pytest.mark.parametrize("where", [0.1, 0.5, 0.95])
def test_a_damaged_snapshot_is_refused(tmp_path: Path, where: float) -> None:
    snapshots = sealed(tmp_path, applied_engine(corpus(35, 500)).partitions[0], covered=10)
    path = snapshots.path(0)
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))
    assert snapshots.load(0, end=100) is None


# -- live workers ----------------------------------------------------------------------
def snapshot_files(worker: WorkerProcess) -> list[Path]:
    return sorted((worker.data_dir / "snapshots").glob("*.state"))


def restored_partitions(worker: WorkerProcess) -> int:
    return worker.log_path.read_text().count("from its snapshot")


def wait_snapshots(worker: WorkerProcess, count: int = 4, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(snapshot_files(worker)) < count:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.1)
    time.sleep(1.0)  # a snapshot of every partition's latest changes, once more


def start_again(
    spawn_worker: Any, stopped: WorkerProcess, name: str, applied: int, env: dict[str, str]
) -> WorkerProcess:
    """A worker on ``name``'s data dir again, with a fresh log, once it has applied ``applied``
    deliveries (the one before it stopped or killed)."""
    stopped.log_path.write_text("")
    worker: WorkerProcess = spawn_worker(name, **env)
    worker.wait_ready()
    wait_applied(worker, applied)
    return worker


@pytest.mark.slow
def test_a_restarted_worker_restores_its_snapshot_replays_only_the_tail_and_counts_exactly(
    spawn_worker, producer
) -> None:
    events = corpus(21, 12_000, duplicate_share=0.02)
    first, second = events[:8_000], events[8_000:]
    worker = spawn_worker("snap", **INFO)
    worker.wait_ready()
    send_all(producer, first)
    wait_applied(worker, len(first))
    wait_snapshots(worker)
    worker.kill()
    send_all(producer, second)  # while it is down: the tail it must consume
    worker = start_again(spawn_worker, worker, "snap", len(events), INFO)
    assert restored_partitions(worker) == 4, worker.log_tail()
    assert_worker_exact(worker, expected(events, NOW), "restarted from the snapshot")
    # A graceful stop seals the latest state: the next start reads no changelog at all.
    worker.stop()
    worker = start_again(spawn_worker, worker, "snap", len(events), INFO)
    assert restored_partitions(worker) == 4, worker.log_tail()
    assert_worker_exact(worker, expected(events, NOW), "restarted after a graceful stop")


def temporary_images(worker: WorkerProcess) -> list[Path]:
    """Images taken and not sealed yet (or never, if the worker died first)."""
    return list((worker.data_dir / "snapshots").glob(".*.tmp"))


def kill_mid_image(worker: WorkerProcess, after: float, within: float = 3.0) -> None:
    """SIGKILL the worker the moment an image is being written, ``after`` seconds on
    (or at the end of ``within`` seconds if none is seen)."""
    time.sleep(after)
    deadline = time.monotonic() + within
    while not temporary_images(worker) and time.monotonic() < deadline:
        time.sleep(0.0005)
    worker.kill()


@pytest.mark.slow
def test_sigkill_while_snapshots_are_taken_and_written_loses_nothing_and_counts_nothing_twice(
    spawn_worker, producer
) -> None:
    rng = random.Random(2026)
    events = corpus(22, 16_000, duplicate_share=0.02)
    # An image every 20 ms a partition while events stream in small fetches; each kill waits
    # for a temporary image file, so it lands between an image and its seal.
    env = {**INFO, "SALESPULSE_SNAPSHOT_INTERVAL": "0.02", "SALESPULSE_FETCH_RECORDS": "500"}
    worker = spawn_worker("snapkill", **env)
    worker.wait_ready()
    sent = 0
    unsealed = []
    for i, chunk in enumerate(chunked(events, 4_000)):
        if i == 0:
            send_all(producer, chunk)
            sent += len(chunk)
            wait_applied(worker, sent)
            wait_snapshots(worker)
            continue
        killer = threading.Thread(target=kill_mid_image, args=(worker, rng.uniform(0.05, 0.3)))
        killer.start()
        send_all(producer, chunk)
        killer.join()
        sent += len(chunk)
        unsealed.append(len(temporary_images(worker)))
        worker = start_again(spawn_worker, worker, "snapkill", sent, env)
        assert restored_partitions(worker) == 4, worker.log_tail()
        assert_worker_exact(worker, expected(events[:sent], NOW), f"after kill {i}")
    assert any(unsealed), f"no kill landed between an image and its seal: {unsealed}"


def rewrite_trailer(path: Path, key: str, change: Any) -> None:
    data = path.read_bytes()
    length = int.from_bytes(data[-8:], "big")
    trailer = orjson.loads(data[-8 - length : -8])
    trailer[key] = change(trailer[key])
    raw = orjson.dumps(trailer)
    path.write_bytes(data[: -8 - length] + raw + len(raw).to_bytes(8, "big"))


def damage_topic(path: Path) -> None:
    """As if the changelog topic had been deleted and created again since."""
    rewrite_trailer(path, "topic_id", lambda topic_id: "another-" + topic_id)


def damage_offsets(path: Path) -> None:
    rewrite_trailer(path, "covered", lambda covered: covered + 1_000_000)


def damage_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_foreign_stale_or_corrupt_snapshot_is_ignored_and_the_worker_replays_in_full_exactly(
    spawn_worker, producer
) -> None:
    events = corpus(23, 6_000, duplicate_share=0.02)
    ref = expected(events, NOW)
    worker = spawn_worker("snapbad", **INFO)
    worker.wait_ready()
    send_all(producer, events)
    wait_applied(worker, len(events))
    # One kind of damage a partition, all in one restart; partition 3's file stays good.
    cases = (
        (damage_topic, "is not this changelog's"),
        (damage_offsets, "beyond the end"),
        (damage_bytes, "checksum differs"),
    )
    worker.stop()
    files = snapshot_files(worker)
    assert len(files) == 4, files
    for path, (damage, _) in zip(files, cases, strict=False):
        damage(path)
    worker = start_again(spawn_worker, worker, "snapbad", len(events), INFO)
    log = worker.log_path.read_text()
    for _, logged in cases:
        assert logged in log, worker.log_tail()
    assert restored_partitions(worker) == 1, worker.log_tail()
    assert_worker_exact(worker, ref, "after three damaged snapshots and one good one")
    # The full replay made a new snapshot: the next restart uses it again.
    worker.stop()
    worker = start_again(spawn_worker, worker, "snapbad", len(events), INFO)
    assert restored_partitions(worker) == 4, worker.log_tail()
    assert_worker_exact(worker, ref, "restarted from the rebuilt snapshot")


def test_a_worker_keeps_its_data_dirs_hash_seed_and_runs_without_snapshots_when_they_are_off(
    spawn_worker, producer
) -> None:
    worker = spawn_worker("seed", **INFO)
    worker.wait_ready()
    seed_file = worker.data_dir / "hash-seed"
    assert seed_file.stat().st_mode & 0o077 == 0, "readable by its owner only"
    assert "local state snapshot: on" in worker.log_path.read_text()
    worker.stop()
    off = spawn_worker("off", SALESPULSE_TEST_LOGLEVEL="info", SALESPULSE_SNAPSHOT_INTERVAL="0")
    off.wait_ready()
    send_all(producer, corpus(24, 500))
    wait_applied(off, 500)
    assert "local state snapshot: off" in off.log_path.read_text()
    assert not (off.data_dir / "snapshots").exists() and not (off.data_dir / "hash-seed").exists()
