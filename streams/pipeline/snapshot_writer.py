"""When a partition's snapshot is taken, and which changelog offset it covers.

An image must never run ahead of the changelog on the broker: a worker that restarted from
a state holding a batch whose changelog was never written would skip that batch's records
by their applied offsets, and the changelog, which other workers replay, would never get
them. So an image is taken only between batches, when every applied batch's changelog
writes have been sent, and it is sealed only once the broker has acked the last of them;
the offset of that last record is what the image covers. A partition without a write since
its recovery covers what its recovery read.

Images are taken one partition at a time, after a fetch's writes are sent (and on a timer
while no fetches come), each partition at most once per ``SALESPULSE_SNAPSHOT_INTERVAL`` and
only when it changed; a graceful stop takes the rest.

An image is captured in a thread, so the event loop keeps answering (``/healthz`` within
100 ms during the image of a 250,000-customer partition). The state must not change while
the thread walks it, so the capture holds :attr:`SnapshotWriter.lock`, which the apply path
holds while it applies a fetch and a rebalance waits for before any partition moves (reads
change nothing, so they go on meanwhile). From a rebalance until its
recovery completes no image is started: recovery may restore changelog records (this
worker's own, read back) into a partition that stayed active.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from salespulse.streams.pipeline.engine import Engine
from salespulse.streams.pipeline.snapshot import Snapshots

log = logging.getLogger(__name__)

#: A graceful stop waits at most this long for a fetch's writes to go out.
STOP_WAIT_SECONDS = 5.0


class SnapshotWriter:
    """Takes and seals the snapshots of the partitions a worker actively owns."""

    def __init__(self, snapshots: Snapshots, engine: Engine, active: Callable[[], Iterable[int]]) -> None:
        self.snapshots = snapshots
        self.engine = engine
        self.active = active
        #: Clear while a batch is applied and its writes are not all sent yet: no image then.
        self._idle = asyncio.Event()
        self._idle.set()
        #: Held by the apply path and a capture: the state stands still while held.
        self.lock = asyncio.Lock()
        #: The capture under way (one at a time), if any.
        self._capture: asyncio.Future[None] | None = None
        #: Set from a rebalance until its recovery completes: no image meanwhile.
        self.recovering = False
        #: Per partition: the future of its last changelog batch sent, and that batch's size.
        self._last_sent: dict[int, tuple[asyncio.Future[Any], int]] = {}
        #: Per partition: the changelog offset its recovery read up to (-1: nothing).
        self._recovered: dict[int, int] = {}
        self._changed: set[int] = set()
        self._taken_at: dict[int, float] = {}
        self._sealing: dict[int, asyncio.Task[None]] = {}

    # -- what the worker tells it ----------------------------------------------------
    @property
    def applying(self) -> bool:
        """Whether a batch is being applied or its writes are still being sent."""
        return not self._idle.is_set()

    @applying.setter
    def applying(self, value: bool) -> None:
        if value:
            self._idle.clear()
        else:
            self._idle.set()

    def sent(self, partition: int, future: asyncio.Future[Any], count: int) -> None:
        """A changelog batch of ``count`` records went out; acks come back in order."""
        self._last_sent[partition] = (future, count)
        self._changed.add(partition)

    def recovered(self, partition: int, offset: int, from_snapshot: int | None) -> None:
        """Recovery of an active partition read its changelog up to ``offset``."""
        self._last_sent.pop(partition, None)
        self._recovered[partition] = offset
        if offset != from_snapshot:
            self._changed.add(partition)

    async def settled(self) -> None:
        """Return once no image is being captured (a rebalance waits so before partitions move)."""
        async with self.lock:
            pass

    # -- taking ----------------------------------------------------------------------
    def tick(self) -> None:
        """Start the image of the partition most overdue, if any is."""
        if self.applying or self.recovering or not self.snapshots.attached or self._capture is not None:
            return
        now = time.monotonic()
        due = [
            p
            for p in self.active()
            if p in self._changed
            and p not in self._sealing
            and now - self._taken_at.get(p, 0.0) >= self.snapshots.interval
        ]
        if due:
            capture = asyncio.ensure_future(self._take(min(due, key=lambda p: self._taken_at.get(p, 0.0))))
            self._capture = capture
            capture.add_done_callback(self._captured)

    def _captured(self, capture: asyncio.Future[None]) -> None:
        self._capture = None
        if not capture.cancelled() and capture.exception() is not None:
            log.error("image not taken", exc_info=capture.exception())

    async def stop(self) -> None:
        """A graceful stop: take every changed partition now and wait until all are sealed."""
        with contextlib.suppress(TimeoutError):  # a fetch's writes still going out (shielded)
            await asyncio.wait_for(self._idle.wait(), STOP_WAIT_SECONDS)
        if self._capture is not None:
            await asyncio.gather(self._capture, return_exceptions=True)
        await asyncio.gather(*self._sealing.values(), return_exceptions=True)
        if self.applying or self.recovering or not self.snapshots.attached:
            log.warning("stopping with a batch's writes unsent or a recovery under way: no images taken")
            return
        changed = [p for p in self.active() if p in self._changed]
        log.info("stopping: taking the images of partitions %s", changed)
        for partition in changed:
            await self._take(partition)
        await asyncio.gather(*self._sealing.values(), return_exceptions=True)
        log.info("stopping: images sealed")

    async def _take(self, partition: int) -> None:
        """Capture the image of ``partition`` in a thread, holding :attr:`lock`, then seal it."""
        async with self.lock:
            # Checked under the lock: a fetch applied since the tick may not be sent yet.
            state = self.engine.partitions.get(partition)
            last = self._last_sent.get(partition)
            if self.applying or self.recovering or state is None:
                return
            if last is None and partition not in self._recovered:
                return
            started = time.perf_counter()
            labels = {label: list(values) for label, values in self.engine.fold.seen.items()}
            try:
                temporary = await asyncio.to_thread(self.snapshots.begin, partition, state)
            except OSError:
                log.exception("image of partition %d not taken; the previous one stays", partition)
                return
            self._taken_at[partition] = time.monotonic()
            self._changed.discard(partition)
        log.debug("image of partition %d captured in %.3fs", partition, time.perf_counter() - started)
        task = asyncio.ensure_future(self._seal(partition, temporary, last, labels))
        self._sealing[partition] = task
        task.add_done_callback(lambda _: self._sealing.pop(partition, None))

    async def _seal(
        self,
        partition: int,
        temporary: Path,
        last: tuple[asyncio.Future[Any], int] | None,
        labels: dict[str, list[str]],
    ) -> None:
        if last is None:
            covered = self._recovered[partition]
        else:
            future, count = last
            try:
                covered = (await future).offset + count - 1
            except Exception:  # the write failed: the worker exits to replay; no snapshot
                self.snapshots.discard(temporary)
                return
        await asyncio.to_thread(self.snapshots.seal, temporary, partition, covered, labels)
