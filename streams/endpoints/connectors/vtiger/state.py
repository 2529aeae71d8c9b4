"""The connector's memory, kept in a compacted Kafka topic so its container needs no volume.

Three kinds of record, keyed by connector and CRM so one topic serves several CRMs:

- ``cursor|<module>``: the newest ``modifiedtime`` done and the ids done at that very
  second, so records sharing it are neither skipped nor sent twice;
- ``fact|<record id>``: the facts emitted for a record, with their ``occurred_at``;
- ``pending``: the events of a page about to be sent, with the cursor and facts they
  complete. It is written (and acknowledged) before the events, and cleared together with
  the cursor and facts once the broker has acknowledged the events.

A crash before the events are acknowledged leaves ``pending``; the next start sends
exactly those events again (same ids, same ``occurred_at``) before anything else, so a
fact is neither lost nor counted twice (the worker counts an event id once).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from salespulse.streams.endpoints.producer import EventProducer
from salespulse.streams.kafka.admin import CONNECTOR_STATE_TOPIC as STATE_TOPIC
from salespulse.streams.kafka.offsets import true_end_offsets
from salespulse.streams.settings import Settings


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


@dataclass
class Pending:
    """A page's events, sent or about to be, and the state that they complete."""

    module: str
    cursor: Cursor
    facts: dict[str, dict[str, str]]
    events: list[dict[str, Any]]

    def encode(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "cursor": self.cursor.encode(),
            "facts": self.facts,
            "events": self.events,
        }

    @classmethod
    def decode(cls, value: Mapping[str, Any]) -> Pending | None:
        if not value.get("events"):
            return None
        return cls(
            str(value["module"]), Cursor.decode(value["cursor"]), dict(value["facts"]), list(value["events"])
        )


@dataclass
class ConnectorState:
    """Everything the topic holds for one CRM."""

    cursors: dict[str, Cursor] = field(default_factory=dict)
    facts: dict[str, dict[str, str]] = field(default_factory=dict)
    pending: Pending | None = None


class StateStore:
    """Reads and writes one CRM's records in the state topic, through the events' producer."""

    def __init__(self, settings: Settings, producer: EventProducer, connector: str, account: str) -> None:
        self.settings = settings
        self.producer = producer
        self.prefix = f"{connector}|{account}|"

    def load(self) -> ConnectorState:
        """Read the topic to its true end (a Fetch high watermark, not ListOffsets)."""
        client = self.settings.kafka_python_config
        tp = TopicPartition(STATE_TOPIC, 0)
        end = true_end_offsets(client, [tp], timeout=self.settings.broker_timeout)[(STATE_TOPIC, 0)]
        state = ConnectorState()
        if end <= 0:
            return state
        consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100, **client)
        try:
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            deadline = time.monotonic() + self.settings.broker_timeout * 3
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{STATE_TOPIC} could not be read to offset {end}")
                for records in consumer.poll(timeout_ms=200, max_records=10_000).values():
                    for record in records:
                        self._apply(state, record.key, record.value)
        finally:
            with contextlib.suppress(Exception):
                consumer.close()
        return state

    def _apply(self, state: ConnectorState, raw_key: bytes | None, raw_value: bytes | None) -> None:
        key = (raw_key or b"").decode()
        if not key.startswith(self.prefix) or raw_value is None:
            return
        kind, _, name = key[len(self.prefix) :].partition("|")
        value = orjson.loads(raw_value)
        if kind == "cursor":
            state.cursors[name] = Cursor.decode(value)
        elif kind == "fact":
            state.facts[name] = dict(value)
        elif kind == "pending":
            state.pending = Pending.decode(value)

    def begin(self, pending: Pending) -> None:
        """Record the page's events before sending them; returns once acknowledged."""
        self._write([("pending", pending.encode())])

    def complete(self, module: str, cursor: Cursor, facts: Mapping[str, Mapping[str, str]]) -> None:
        """Record a page as done (its events acknowledged): cursor, facts, and no pending page."""
        records: list[tuple[str, Any]] = [(f"fact|{record}", dict(f)) for record, f in facts.items()]
        records += [(f"cursor|{module}", cursor.encode()), ("pending", {})]
        self._write(records)

    def _write(self, records: Iterable[tuple[str, Any]]) -> None:
        for key, value in records:
            self.producer.send_raw(STATE_TOPIC, orjson.dumps(value), key=(self.prefix + key).encode())
        self.producer.flush()
