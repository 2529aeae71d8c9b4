"""An :class:`Engine` driven as a worker drives it, without Kafka, keeping the changelog it writes.

Events go to their contract partition with offsets numbered in send order per topic
partition (as ``tests/reference.py`` numbers them), and are applied a batch at a time at a
clock the test sets: the wall clock a worker would read. The changelog records each batch
produced are kept in write order with their changelog partition (the batch's own), so a
test can compact them as Kafka would, or replay them into another engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from salespulse.agents.rolling import Clock
from salespulse.schemas.event_time import format_time
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import route
from salespulse.streams.pipeline.engine import DeadLetter, Engine
from tests.test_agents_unit import Rec

PARTITIONS = 4

#: One changelog record: its partition, key and value (``None``: a tombstone).
Entry = tuple[int, bytes, bytes | None]


def lead(i: int, t: int, *, lead_id: str | None = None, region: str = "north") -> dict[str, Any]:
    """The ``i``-th lead, at ``t``; keyed by its own lead id unless given one (one partition)."""
    return {
        "event_id": f"lead-{i}",
        "type": "lead.created",
        "occurred_at": format_time(t),
        "source": "test",
        "data": {"lead_id": lead_id or f"L-{i}", "rep_id": "r-1", "region": region, "source": "web"},
    }


@dataclass
class Driver:
    """Applies events to ``engine`` and keeps everything the batches wrote."""

    engine: Engine
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    changelog: list[Entry] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    #: Every event sent, in send order: what the reference replays.
    sent: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def at(cls, now: int, **engine: Any) -> Driver:
        """A driver of a fresh engine whose clock reads ``now`` until the test moves it."""
        return cls(Engine(clock=format_time(now), partitions=PARTITIONS, **engine))

    def set_clock(self, now: int) -> None:
        """What the worker's clock reads from now on (a fixed-clock engine's clock)."""
        self.engine.fixed_clock = Clock(now)

    def apply(
        self, events: Iterable[dict[str, Any]], now: int | None, written: int | None = None
    ) -> list[list[Entry]]:
        """Apply ``events`` at clock ``now`` (None: the engine's own, for a stream or wall
        clock), one batch per topic partition, their records stamped ``written`` (epoch
        seconds; None: no timestamp). Returns each batch's records."""
        if now is not None:
            self.set_clock(now)
        batches: dict[tuple[str, int], list[Rec]] = {}
        for event in events:
            topic, key = route(event)
            tp = (topic, partition_for(key, PARTITIONS))
            offset = self.offsets[tp] = self.offsets.get(tp, -1) + 1
            stamp = None if written is None else written * 1000
            batches.setdefault(tp, []).append(Rec(offset, key, orjson.dumps(event), stamp))
            self.sent.append(event)
        written_batches = []
        while batches:
            forwards: dict[tuple[str, int], list[Rec]] = {}
            for (topic, p), records in batches.items():
                out = self.engine.apply(topic, p, records)
                entries = [(p, key, value) for key, value in out.changelog]
                self.changelog += entries
                self.deadletters += out.deadletters
                written_batches.append(entries)
                # Forwards (a wrong partition, a close for its opportunity) are on their
                # partition once acked: the next batches there.
                for fw in out.forwards:
                    tp = (fw.topic, fw.partition)
                    offset = self.offsets[tp] = self.offsets.get(tp, -1) + 1
                    forwards.setdefault(tp, []).append(
                        Rec(offset, fw.key, fw.value, fw.timestamp, fw.headers)
                    )
            batches = forwards
        return written_batches


def compacted(log: Iterable[Entry]) -> list[Entry]:
    """What compaction leaves of ``log``: the newest record of each key, in log order, with
    tombstones gone (once ``delete.retention.ms`` has passed)."""
    newest: dict[tuple[int, bytes], int] = {}
    entries = list(log)
    for i, (p, key, _) in enumerate(entries):
        newest[(p, key)] = i
    return [entries[i] for i in sorted(newest.values()) if entries[i][2] is not None]


def live_keys(log: Iterable[Entry]) -> int:
    """Keys whose newest record is not a tombstone: what compaction can never reclaim."""
    return len(compacted(log))


def replayed(log: Iterable[Entry], clock: str, **config: Any) -> Engine:
    """A fresh engine with clock ``clock`` (``stream``, or a fixed time) restored from ``log``."""
    engine = Engine(clock=clock, partitions=PARTITIONS, **config)
    for _, key, value in log:
        engine.restore(key, value)
    return engine
