"""The connector's memory, kept in a compacted Kafka topic so its container needs no volume.

Four kinds of record, keyed by connector and CRM so one topic serves several CRMs:

- ``cursor|<module>``: the newest ``modifiedtime`` done and the ids done at that very
  second, so records sharing it are neither skipped nor sent twice;
- ``fact|<record id>``: the facts emitted for a record, with their ``occurred_at``,
  (under :data:`DEAD`) the ``modifiedtime`` at which the record went to the dead letters,
  and (under :data:`STATE`, while a potential is open) the digest of the last state of it
  produced, so a potential read again with nothing changed that matters produces nothing;
- ``held|<record id>``: a record with a fact still in the future (a meeting set for next
  week), its module and when the fact falls due;
- ``pending``: the events and dead letters of a page about to be sent, with the cursor
  and memory they complete. It is written (and acknowledged) before them, and cleared
  together with the cursor and memory once the broker has acknowledged them.

A crash before the events are acknowledged leaves ``pending``; the next start sends
exactly those events again (same ids, same ``occurred_at``) before anything else, so a
fact is neither lost nor counted twice (the worker counts an event id once). Memory that
is forgotten (a fact past the retention, a held record produced) is written as a
tombstone, so compaction removes it and the topic stays the size of what is remembered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from salespulse.schemas import exact_json
from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.kafka.admin import CONNECTOR_STATE_TOPIC as STATE_TOPIC
from salespulse.streams.kafka.offsets import true_end_offsets
from salespulse.streams.settings import Settings

#: The memory entry of a record that went to the dead letters: its ``modifiedtime`` then.
DEAD = "deadletter"
#: The memory entry of an open potential: the digest of the state last produced (16 hex digits).
STATE = "state"

#: A record's memory: fact type (or :data:`DEAD`) to time, and :data:`STATE`.
Memory = dict[str, str]


@dataclass(frozen=True)
class Cursor:
    """Where a module's polling stands: everything before ``time``, and ``ids`` at it, is done."""

    time: str
    ids: frozenset[str] = frozenset()

    def is_new(self, modified: str, record: str) -> bool:
        """True for a record not done yet (vtiger's time strings sort as times)."""
        return modified > self.time or (modified == self.time and record not in self.ids)

    def after(self, modified: str, record: str) -> Cursor:
        """The cursor once ``record``, modified at ``modified``, is done (records come in time order)."""
        if modified > self.time:
            return Cursor(modified, frozenset({record}))
        if modified == self.time:
            return Cursor(self.time, self.ids | {record})
        return self

    def encode(self) -> dict[str, Any]:
        return {"time": self.time, "ids": sorted(self.ids)}

    @classmethod
    def decode(cls, value: Mapping[str, Any]) -> Cursor:
        return cls(str(value["time"]), frozenset(str(i) for i in value.get("ids", ())))


@dataclass(frozen=True)
class DeadRecord:
    """A record that cannot be mapped, as it goes to ``crm.deadletter``."""

    module: str
    record: str
    cause: str
    detail: str
    row: dict[str, Any]

    def encode(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "record": self.record,
            "cause": self.cause,
            "detail": self.detail,
            "row": self.row,
        }

    @classmethod
    def decode(cls, value: Mapping[str, Any]) -> DeadRecord:
        return cls(
            str(value["module"]),
            str(value["record"]),
            str(value["cause"]),
            str(value["detail"]),
            dict(value["row"]),
        )


@dataclass
class Pending:
    """A page's events and dead letters, sent or about to be, and the state that they complete.

    ``cursor`` is None for a page that moves no cursor (held records produced when due);
    a ``None`` in ``facts`` or ``held`` forgets the record's entry.
    """

    module: str
    cursor: Cursor | None
    facts: dict[str, Memory | None]
    events: list[dict[str, Any]]
    dead: list[DeadRecord] = field(default_factory=list)
    held: dict[str, dict[str, str] | None] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "cursor": None if self.cursor is None else self.cursor.encode(),
            "facts": self.facts,
            "events": self.events,
            "dead": [d.encode() for d in self.dead],
            "held": self.held,
        }

    @classmethod
    def decode(cls, value: Mapping[str, Any]) -> Pending | None:
        if not value.get("events") and not value.get("dead"):
            return None
        cursor = value.get("cursor")
        return cls(
            str(value["module"]),
            None if cursor is None else Cursor.decode(cursor),
            dict(value["facts"]),
            list(value["events"]),
            [DeadRecord.decode(d) for d in value.get("dead", ())],
            dict(value.get("held", {})),
        )


@dataclass
class ConnectorState:
    """Everything the topic holds for one CRM."""

    cursors: dict[str, Cursor] = field(default_factory=dict)
    facts: dict[str, Memory] = field(default_factory=dict)
    held: dict[str, dict[str, str]] = field(default_factory=dict)
    pending: Pending | None = None

    def remember(self, facts: Mapping[str, Memory | None], held: Mapping[str, dict[str, str] | None]) -> None:
        """Apply memory updates as the topic holds them once written."""
        for table, updates in ((self.facts, facts), (self.held, held)):
            for record, value in updates.items():
                if value is None:
                    table.pop(record, None)
                else:
                    table[record] = dict(value)


class StateStore:
    """Reads and writes one CRM's records in the state topic, through the events' producer."""

    def __init__(self, settings: Settings, producer: EventProducer, connector: str, account: str) -> None:
        self.settings = settings
        self.producer = producer
        self.prefix = f"{connector}|{account}|"

    def load(self) -> ConnectorState:
        """Read the topic to its true end (a Fetch high watermark, not ListOffsets).

        A large memory takes a while to read, so the deadline is for progress: the read
        fails only when the position has not moved for three broker timeouts.
        """
        client = self.settings.kafka_python_config
        tp = TopicPartition(STATE_TOPIC, 0)
        end = true_end_offsets(client, [tp], timeout=self.settings.broker_timeout)[(STATE_TOPIC, 0)]
        state = ConnectorState()
        if end <= 0:
            return state
        consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100, **client)
        stall = self.settings.broker_timeout * 3
        try:
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            position, moved = 0, time.monotonic()
            while position < end:
                if time.monotonic() - moved > stall:
                    raise TimeoutError(
                        f"{STATE_TOPIC} could not be read past offset {position} of {end} in {stall:.0f}s"
                    )
                for records in consumer.poll(timeout_ms=200, max_records=10_000).values():
                    for record in records:
                        self._apply(state, record.key, record.value)
                if (now_at := consumer.position(tp)) > position:
                    position, moved = now_at, time.monotonic()
        finally:
            with contextlib.suppress(Exception):
                consumer.close()
        return state

    def _apply(self, state: ConnectorState, raw_key: bytes | None, raw_value: bytes | None) -> None:
        key = (raw_key or b"").decode()
        if not key.startswith(self.prefix):
            return
        kind, _, name = key[len(self.prefix) :].partition("|")
        value = None if raw_value is None else exact_json.loads(raw_value)
        if kind == "cursor" and value is not None:
            state.cursors[name] = Cursor.decode(value)
        elif kind == "fact":
            state.remember({name: value}, {})
        elif kind == "held":
            state.remember({}, {name: value})
        elif kind == "pending":
            state.pending = None if value is None else Pending.decode(value)

    def begin(self, pending: Pending) -> None:
        """Record the page's events before sending them; returns once acknowledged."""
        self._write([("pending", pending.encode())])

    def complete(self, pending: Pending) -> None:
        """Record a page as done (its events acknowledged): cursor, memory, and no pending page."""
        records = self._memory(pending.facts, pending.held)
        if pending.cursor is not None:
            records.append((f"cursor|{pending.module}", pending.cursor.encode()))
        records.append(("pending", {}))
        self._write(records)

    def forget(self, facts: Mapping[str, Memory | None]) -> None:
        """Rewrite (or tombstone) the memory of records whose older facts are trimmed."""
        self._write(self._memory(facts, {}))

    @staticmethod
    def _memory(
        facts: Mapping[str, Memory | None], held: Mapping[str, dict[str, str] | None]
    ) -> list[tuple[str, Any]]:
        return [(f"fact|{r}", m) for r, m in facts.items()] + [(f"held|{r}", h) for r, h in held.items()]

    def _write(self, records: Iterable[tuple[str, Any]]) -> None:
        for key, value in records:
            raw = None if value is None else exact_json.dumps(value)  # amounts are exact decimals
            self.producer.send_raw(STATE_TOPIC, raw, key=(self.prefix + key).encode())
        self.producer.flush()
