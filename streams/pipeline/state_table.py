"""The faust table that persists the engine's state, and knows what this worker owns.

faust keeps doing what it is good at: the changelog topic, partition assignment of
actives and standbys, and recovery. Recovery hands each changelog batch to the engine
instead of a key-value store, and the table tracks which partitions are active and
recovered, because only those may be exported (design brief, section 4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from salespulse.streams.pipeline.engine import Engine

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
        # Stop exporting at once: a partition that moved may already be counted elsewhere.
        self.ownership.revoke(tp.partition for tp in revoked)
        self.ownership.revoke(tp.partition for tp in newly_assigned)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        active = {tp.partition for tp in active_tps}
        standby = {tp.partition for tp in standby_tps} - active
        held = active | standby
        self.engine.drop(p for p in list(self.engine.partitions) if p not in held)
        self.ownership.active = active
        self.ownership.recovered_once = True
        log.info("recovered: active partitions %s, standby %s", sorted(active), sorted(standby))


class StateTable(faust.Table):  # type: ignore[type-arg]
    """The changelog-backed table behind every KPI, one changelog partition per partition."""

    def __init__(self, app: faust.App, *, engine: Engine, ownership: Ownership, **kw: Any) -> None:
        self._engine = engine
        self._ownership = ownership
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
        return store
