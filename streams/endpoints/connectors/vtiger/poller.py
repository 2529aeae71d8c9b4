"""One poll of one vtiger: each module page by page, each page produced exactly once.

Paging: ``WHERE modifiedtime >= <cursor> ORDER BY modifiedtime LIMIT offset, 100``. After a
page is done the cursor moves and the next query starts from it again at offset 0, so a
record edited while the connector pages (which moves it to the end) cannot shift an unread
record out of sight. Records at exactly the cursor's second that are done already are
skipped by id; only when a whole page holds nothing new (100 edits in one second) does
the offset move on.

A page is committed in three acknowledged steps (see :mod:`.state`): the pending page,
its events, then its cursor and facts. A crash at any point is repaired at the next start
by :meth:`VtigerPoller.recover`, which sends the pending page's events again unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from salespulse.streams.endpoints.connectors.vtiger.client import PAGE_SIZE, VtigerClient
from salespulse.streams.endpoints.connectors.vtiger.directory import Directory, Prefixes
from salespulse.streams.endpoints.connectors.vtiger.records import (
    MODULES,
    REQUIRED_FIELDS,
    Fact,
    Translator,
    UnexpectedRecord,
    checked_time,
)
from salespulse.streams.endpoints.connectors.vtiger.state import ConnectorState, Cursor, Pending, StateStore
from salespulse.streams.endpoints.producer import EventProducer

log = logging.getLogger("salespulse.connect.vtiger")

#: Called with (event type) for each event produced, and (reason) for each record skipped.
Observer = Callable[[str], None]


def _ignore(*_: object) -> None:
    return None


class VtigerPoller:
    """Polls Leads, Potentials and Events since the stored cursors and produces their facts."""

    def __init__(
        self,
        client: VtigerClient,
        translator: Translator,
        producer: EventProducer,
        store: StateStore,
        since: str,
        *,
        on_event: Observer = _ignore,
        on_skip: Observer = _ignore,
        on_page: Callable[[], None] = _ignore,
    ) -> None:
        self.client = client
        self.translator = translator
        self.producer = producer
        self.store = store
        self.since = since
        self.on_event = on_event
        self.on_skip = on_skip
        self.on_page = on_page
        self.state = ConnectorState()
        self._prefixes: Prefixes | None = None

    def recover(self) -> None:
        """Load the stored state and finish a page a crash interrupted."""
        self.state = self.store.load()
        pending = self.state.pending
        if pending is not None:
            log.warning("finishing a page a previous run left pending: %d events again", len(pending.events))
            self._send(pending)

    def prefixes(self) -> Prefixes:
        """Record-id prefixes from ``describe``, and a check that each polled module has its fields."""
        if self._prefixes is None:
            for module in MODULES:
                names = {f.get("name") for f in self.client.describe(module)["fields"] if isinstance(f, dict)}
                missing = [f for f in REQUIRED_FIELDS[module] if f not in names]
                if missing:
                    raise UnexpectedRecord(f"vtiger's {module} has no field {', '.join(missing)} (describe)")
            self._prefixes = Prefixes(
                accounts=str(self.client.describe("Accounts")["idPrefix"]),
                contacts=str(self.client.describe("Contacts")["idPrefix"]),
            )
        return self._prefixes

    def poll(self) -> int:
        """One pass over every module; returns how many events were produced."""
        prefixes = self.prefixes()
        return sum(self._poll_module(module, prefixes) for module in MODULES)

    def _poll_module(self, module: str, prefixes: Prefixes) -> int:
        produced = 0
        offset = 0
        while True:
            cursor = self.state.cursors.get(module, Cursor(self.since))
            rows = self.client.query(
                f"SELECT * FROM {module} WHERE modifiedtime >= '{checked_time(cursor.time)}' "
                f"ORDER BY modifiedtime LIMIT {offset}, {PAGE_SIZE};"
            )
            fresh = [row for row in rows if cursor.is_new(_modified(module, row), str(row.get("id")))]
            if fresh:
                produced += self._page(module, cursor, fresh, prefixes)
                offset = 0
            else:
                offset += PAGE_SIZE
            if len(rows) < PAGE_SIZE:
                return produced

    def _page(self, module: str, cursor: Cursor, rows: list[dict[str, Any]], prefixes: Prefixes) -> int:
        directory = Directory(self.client, prefixes)
        directory.load(ref for row in rows for ref in self.translator.references(module, row))
        facts: list[Fact] = []
        for row in sorted(rows, key=lambda r: _modified(module, r)):
            record = str(row.get("id"))
            new, skipped = self.translator.facts(module, row, self.state.facts.get(record, {}), directory)
            if skipped is not None:
                self.on_skip(skipped)
            facts += new
            cursor = cursor.after(_modified(module, row), record)
        remembered: dict[str, dict[str, str]] = {}
        for fact in facts:
            remembered.setdefault(fact.record, dict(self.state.facts.get(fact.record, {})))
            remembered[fact.record][fact.type] = fact.occurred_at
        pending = Pending(module, cursor, remembered, [fact.event for fact in facts])
        if pending.events:
            self.store.begin(pending)
        self._send(pending)
        return len(pending.events)

    def _send(self, pending: Pending) -> None:
        for event in pending.events:
            self.producer.send(event)
        self.producer.flush()
        self.store.complete(pending.module, pending.cursor, pending.facts)
        self.state.cursors[pending.module] = pending.cursor
        self.state.facts.update(pending.facts)
        self.state.pending = None
        for event in pending.events:
            self.on_event(str(event["type"]))
        self.on_page()


def _modified(module: str, row: Mapping[str, Any]) -> str:
    try:
        return checked_time(row.get("modifiedtime"))
    except ValueError as exc:
        raise UnexpectedRecord(f"{module} {row.get('id')!r}: modifiedtime {exc}") from None
