"""The faust table that persists the engine's state, and knows what this worker owns.

faust keeps doing what it is good at: the changelog topic, partition assignment of
actives and standbys, and recovery. Recovery hands each changelog batch to the engine
instead of a key-value store, and the table tracks which partitions are active and
recovered, because only those may be exported (design brief, section 4).

With a local snapshot (``streams/pipeline/snapshot.py``), a partition this process does not
hold yet is filled from its snapshot when assigned, and the store answers faust's
``persisted_offset`` with the changelog offset the snapshot covers, so recovery reads only
the changelog written after it instead of all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import faust
from faust.stores.memory import Store as MemoryStore
from faust.tables.manager import TableManager
from faust.types import TP

from salespulse.streams.pipeline.engine import Engine, PartitionState
from salespulse.streams.pipeline.snapshot import Restored
from salespulse.streams.pipeline.snapshot_writer import SnapshotWriter
from salespulse.streams.pipeline.state_image import ImageMismatch, fill

log = logging.getLogger(__name__)


class Ownership:
    """Partitions this worker exports: active ones whose recovery has completed."""

    def __init__(self) -> None:
        self.active: set[int] = set()
        self.recovered_once = False

    def revoke(self, partitions: Iterable[int]) -> None:
        self.active.difference_update(partitions)


class EngineStore(MemoryStore):  # type: ignore[type-arg]
    """A faust store whose data is the engine, fed by changelog recovery."""

    engine: Engine
    ownership: Ownership
    snapshots: SnapshotWriter | None = None
    #: Looks up a topic's id on the broker (blocking): a snapshot belongs to one changelog topic.
    topic_id: Callable[[str], str | None] | None = None
    #: Partitions filled from their snapshot and not recovered since: the offset each covers.
    restored: dict[int, int]

    def apply_changelog_batch(
        self,
        batch: Iterable[Any],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        restore = self.engine.restore
        for event in batch:
            message = event.message
            restore(message.key, message.value)

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        if self.snapshots is not None:
            await self.snapshots.settled()  # an image being captured is whole before anything moves
            self.snapshots.recovering = True
        # Stop exporting at once: a partition that moved may already be counted elsewhere.
        self.ownership.revoke(tp.partition for tp in revoked)
        self.ownership.revoke(tp.partition for tp in newly_assigned)
        await self._restore_snapshots({tp.partition for tp in assigned})

    async def _restore_snapshots(self, partitions: set[int]) -> None:
        """Fill assigned partitions this process does not hold from their snapshots."""
        writer, engine = self.snapshots, self.engine
        if writer is None or self.topic_id is None:
            return
        snapshots = writer.snapshots
        changelog = self.table.changelog_topic.get_topic_name()
        if not snapshots.attached:
            topic_id = await asyncio.to_thread(self.topic_id, changelog)
            if topic_id is None:
                log.warning("changelog topic %s has no id yet: no snapshot this time", changelog)
                return
            await asyncio.to_thread(snapshots.attach, changelog, topic_id)
        fresh = [TP(changelog, p) for p in sorted(partitions - engine.partitions.keys())]
        if not fresh:
            return
        ends = await self.app.consumer.highwaters(*fresh)
        for tp in fresh:
            restored = await asyncio.to_thread(snapshots.load, tp.partition, ends.get(tp))
            if restored is not None and self._adopt(tp.partition, restored):
                self.restored[tp.partition] = restored.covered

    def _adopt(self, partition: int, restored: Restored) -> bool:
        state = PartitionState(partition, self.engine.kpis)
        try:
            fill(state, restored.image)
        except ImageMismatch as exc:
            log.warning("snapshot of partition %d does not fit (%s): replaying in full", partition, exc)
            return False
        for label, values in restored.labels.items():
            for value in values:
                self.engine.fold.register(label, value)
        self.engine.partitions[partition] = state
        log.info(
            "restored partition %d from its snapshot, up to changelog offset %d", partition, restored.covered
        )
        return True

    def persisted_offset(self, tp: TP) -> int | None:
        """Where recovery of a changelog partition starts: after its snapshot, if it has one.

        None (from the start) for any other; a partition held all along keeps the offset
        recovery has read so far, as faust keeps it.
        """
        return self.restored.get(tp.partition)

    async def on_stop(self) -> None:
        if self.snapshots is not None:
            await self.snapshots.stop()

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        active = {tp.partition for tp in active_tps}
        standby = {tp.partition for tp in standby_tps} - active
        held = active | standby
        self.engine.drop(p for p in list(self.engine.partitions) if p not in held)
        if self.snapshots is not None:
            self.snapshots.recovering = False
            offsets = cast(Any, self.app.tables).recovery.active_offsets
            for tp in active_tps:
                read = offsets.get(tp)
                self.snapshots.recovered(
                    tp.partition, -1 if read is None else read, self.restored.get(tp.partition)
                )
        self.restored.clear()
        self.ownership.active = active
        self.ownership.recovered_once = True
        log.info("recovered: active partitions %s, standby %s", sorted(active), sorted(standby))


class StateTable(faust.Table):  # type: ignore[type-arg]
    """The changelog-backed table behind every KPI, one changelog partition per partition."""

    def __init__(
        self,
        app: faust.App,
        *,
        engine: Engine,
        ownership: Ownership,
        snapshots: SnapshotWriter | None = None,
        topic_id: Callable[[str], str | None] | None = None,
        **kw: Any,
    ) -> None:
        self._engine = engine
        self._ownership = ownership
        self._snapshots = snapshots
        self._topic_id = topic_id
        schema: Any = faust.Schema(key_serializer="raw", value_serializer="raw")
        super().__init__(app, schema=schema, **kw)

    def _new_store(self) -> EngineStore:
        store = EngineStore(
            "memory://",
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
        )
        store.engine = self._engine
        store.ownership = self._ownership
        store.snapshots = self._snapshots
        store.topic_id = self._topic_id
        store.restored = {}
        return store


class PromptTableManager(TableManager):
    """faust's table manager without the second it waits at start for tables to be added.

    The state table is added before the app starts, so the wait only delayed every worker's
    group join, and so every restart, by one second.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()
