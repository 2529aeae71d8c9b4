"""One poll of one vtiger: each module on its own, page by page, each page produced exactly once.

Paging: ``WHERE modifiedtime >= <cursor> ORDER BY modifiedtime, id LIMIT offset, 100``.
After a page is done the cursor moves and the next query starts from it again at offset 0,
so a record edited while the connector pages (which moves it to the end) cannot shift an
unread record out of sight. Records at exactly the cursor's second that are done already
are skipped by id; only when a whole page holds nothing new (100 edits in one second) does
the offset move on.

No record stops a feed: one that cannot be mapped goes to ``crm.deadletter`` (remembered
with its ``modifiedtime``, so it is sent there once) and the cursor moves past it; fixed in
vtiger, its ``modifiedtime`` moves and the next poll reads it again. No module holds back
another: each is polled on its own, and a module that fails is tried again at the next
poll while the others go on. A fact whose time is still to come (a meeting set for next
week) is held, and produced at the first poll after it; facts older than the 62-day
retention are not produced again once forgotten (the workers would count them in no
window), while a deal's outcome is remembered for ever, and an open potential's last state
(its digest) as long as it is open: an update is produced only when that state changes,
and not when the potential's opening, produced at the same time, carries it already. vtiger
writes local times without an offset, so while a cursor lies in a repeated (fall-back) local
hour the query restarts from that hour's start, and the memory skips what was produced
already.

A page is committed in three acknowledged steps (see :mod:`.state`): the pending page,
its events and dead letters, then its cursor and memory. A crash at any point is repaired
at the next start by :meth:`VtigerPoller.recover`, which sends the pending page again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from salespulse.agents.rolling import RETENTION_HOURS
from salespulse.schemas.topics import DEADLETTER
from salespulse.streams.endpoints.connectors.base import dead_letter_headers
from salespulse.streams.endpoints.connectors.vtiger.client import PAGE_SIZE, VtigerClient, VtigerError
from salespulse.streams.endpoints.connectors.vtiger.directory import Directory, Prefixes, rows_by_id
from salespulse.streams.endpoints.connectors.vtiger.metrics import ConnectorMetrics
from salespulse.streams.endpoints.connectors.vtiger.records import (
    MODULES,
    OPENED,
    OUTCOMES,
    REQUIRED_FIELDS,
    SOURCE,
    UPDATED,
    Fact,
    Translator,
    UnexpectedRecord,
    checked_time,
    repeated_hour_start,
    utc_text,
    vtiger_time,
)
from salespulse.streams.endpoints.connectors.vtiger.state import (
    DEAD,
    STATE,
    ConnectorState,
    Cursor,
    DeadRecord,
    Memory,
    Pending,
    StateStore,
)
from salespulse.streams.endpoints.producer import EventProducer

log = logging.getLogger("salespulse.connect.vtiger")

RETENTION = timedelta(hours=RETENTION_HOURS)
#: The memory is trimmed at most this often: it is a scan of every record remembered.
TRIM_EVERY = timedelta(hours=1)
#: Memory kept whatever its age: a deal's outcome, and an open potential's state.
KEPT = OUTCOMES | {STATE}
#: What one module's poll may fail with while the others go on.
MODULE_FAILURES = (VtigerError, UnexpectedRecord)


def wall_clock() -> datetime:
    return datetime.now(UTC)


class VtigerPoller:
    """Polls Leads, Potentials and Events since the stored cursors and produces their facts."""

    def __init__(
        self,
        client: VtigerClient,
        translator: Translator,
        producer: EventProducer,
        store: StateStore,
        since: str,
        metrics: ConnectorMetrics,
        *,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.client = client
        self.translator = translator
        self.producer = producer
        self.store = store
        self.since = since
        self.metrics = metrics
        self.clock = clock
        self.state = ConnectorState()
        #: Modules whose last poll failed: until none does, a page done is not progress.
        self.failing: set[str] = set()
        self._prefixes: Prefixes | None = None
        self._described: set[str] = set()
        self._trimmed: datetime | None = None

    def recover(self) -> None:
        """Load the stored state and finish a page a crash interrupted."""
        self.state = self.store.load()
        pending = self.state.pending
        if pending is not None:
            log.warning(
                "finishing a page a previous run left pending: %d events and %d dead letters again",
                len(pending.events),
                len(pending.dead),
            )
            self._send(pending)

    def prefixes(self) -> Prefixes:
        """Record-id prefixes from ``describe``."""
        if self._prefixes is None:
            self._prefixes = Prefixes(
                *(str(self.client.describe(m)["idPrefix"]) for m in ("Accounts", "Contacts", "Potentials"))
            )
        return self._prefixes

    def _describe(self, module: str) -> None:
        """Check once that the module has the fields SalesPulse reads."""
        if module in self._described:
            return
        names = {f.get("name") for f in self.client.describe(module)["fields"] if isinstance(f, dict)}
        missing = [f for f in REQUIRED_FIELDS[module] if f not in names]
        if missing:
            raise UnexpectedRecord(f"vtiger's {module} has no field {', '.join(missing)} (describe)")
        self._described.add(module)

    def poll(self) -> tuple[int, dict[str, Exception]]:
        """One pass over every module: how many events were produced, and each module that
        failed with why (a refused login, or the broker failing, fails the whole poll)."""
        self.client.connect()
        produced = 0
        failures: dict[str, Exception] = {}
        for module in MODULES:
            try:
                produced += self._poll_module(module)
            except MODULE_FAILURES as exc:
                failures[module] = exc
                self.failing.add(module)
            else:
                self.failing.discard(module)
        self._trim()
        return produced, failures

    def _poll_module(self, module: str) -> int:
        self._describe(module)
        produced = self._release(module)
        cursor = self.state.cursors.get(module, Cursor(self.since))
        if (start := repeated_hour_start(cursor.time, self.translator.zone)) is not None:
            cursor = Cursor(start)  # once a poll: records of the hour's second pass sort before
        offset = 0
        while True:
            rows = self.client.query(
                f"SELECT * FROM {module} WHERE modifiedtime >= '{checked_time(cursor.time)}' "
                f"ORDER BY modifiedtime, id LIMIT {offset}, {PAGE_SIZE};"
            )
            fresh = [row for row in rows if self._is_new(cursor, row)]
            if fresh:
                done = self._page(module, fresh, cursor)
                cursor = done.cursor or cursor
                produced += len(done.events)
                offset = 0
            else:
                offset += PAGE_SIZE
            if len(rows) < PAGE_SIZE:
                return produced

    def _is_new(self, cursor: Cursor, row: Mapping[str, Any]) -> bool:
        record = str(row.get("id"))
        modified = _modified(row)
        if modified is None:  # cannot be placed: new unless dead-lettered as it is
            return self.state.facts.get(record, {}).get(DEAD) != str(row.get("modifiedtime"))
        return cursor.is_new(modified, record)

    def _release(self, module: str) -> int:
        """Produce the held records of ``module`` that have fallen due, read afresh (a
        rescheduled meeting is held again, a deleted one is gone)."""
        now = utc_text(self.clock())
        due = sorted(r for r, h in self.state.held.items() if h["module"] == module and h["at"] <= now)
        produced = 0
        for start in range(0, len(due), PAGE_SIZE):
            chunk = due[start : start + PAGE_SIZE]
            rows = rows_by_id(self.client, module, chunk)
            found = {str(row.get("id")) for row in rows}
            gone: dict[str, dict[str, str] | None] = {r: None for r in chunk if r not in found}
            for _ in gone:
                self.metrics.skip("deleted")
            produced += len(self._page(module, rows, None, gone).events)
        return produced

    def _page(
        self,
        module: str,
        rows: list[dict[str, Any]],
        cursor: Cursor | None,
        held: dict[str, dict[str, str] | None] | None = None,
    ) -> Pending:
        """Map, produce and record one page; returns it, done (with the cursor after it)."""
        directory = Directory(self.client, self.prefixes)
        directory.load(ref for row in rows for ref in self.translator.references(module, row))
        now = self.clock()
        pending = Pending(module, cursor, {}, [], held=dict(held or {}))
        fallbacks: list[str] = []
        for row in sorted(rows, key=_order):
            record, modified = str(row.get("id")), _modified(row)
            if pending.cursor is not None and modified is not None:
                pending.cursor = pending.cursor.after(modified, record)
            for fact in self._record(module, row, record, modified, directory, now, pending):
                pending.events.append(fact.event)
                if fact.fallback is not None:
                    fallbacks.append(fact.fallback)
        if pending.events or pending.dead:
            self.store.begin(pending)
        self._send(pending)
        for reason in fallbacks:
            self.metrics.fallback(reason)
        return pending

    def _record(
        self,
        module: str,
        row: dict[str, Any],
        record: str,
        modified: str | None,
        directory: Directory,
        now: datetime,
        pending: Pending,
    ) -> list[Fact]:
        """The facts of one record to produce now; its dead letter, held fact and memory go
        into ``pending``."""
        known = self.state.facts.get(record, {})
        try:
            if modified is None:
                raise UnexpectedRecord(
                    f"{module} {record}: modifiedtime {row.get('modifiedtime')!r} is unreadable"
                )
            found, skipped = self.translator.facts(module, row, known, directory)
        except UnexpectedRecord as exc:
            raw = str(row.get("modifiedtime"))
            if known.get(DEAD) != raw:
                pending.dead.append(DeadRecord(module, record, exc.cause, str(exc), row))
                pending.facts[record] = {**known, DEAD: raw}
            return []
        if skipped is not None:
            self.metrics.skip(skipped)
        memory: Memory = {k: v for k, v in known.items() if k != DEAD}
        present, horizon = utc_text(now), utc_text(now - RETENTION)
        later, due = [], []
        for fact in found:
            if fact.occurred_at > present:
                later.append(fact.occurred_at)
            elif fact.type not in OUTCOMES and fact.occurred_at < horizon:
                self.metrics.skip("past_retention")
            else:
                due.append(fact)
        if any(fact.type == OPENED for fact in due):  # the opening carries the state already
            due = [fact for fact in due if fact.type != UPDATED]
        for fact in due:
            if fact.type != UPDATED:  # an update is remembered by its state alone
                memory[fact.type] = fact.occurred_at
            if fact.state is not None:
                memory[STATE] = fact.state
        if not OUTCOMES.isdisjoint(memory):  # closed for good: no update will follow
            memory.pop(STATE, None)
        if memory != known:
            pending.facts[record] = memory or None
        if later:
            pending.held[record] = {"module": module, "at": min(later)}
        elif record in self.state.held:
            pending.held[record] = None
        return due

    def _send(self, pending: Pending) -> None:
        for event in pending.events:
            self.producer.send(event)
        source = f"{SOURCE}/{self.translator.account}"
        for dead in pending.dead:
            headers = dead_letter_headers(SOURCE, source, dead.module, dead.record, dead.cause, dead.detail)
            self.producer.send_raw(DEADLETTER, orjson.dumps(dead.row), headers=headers)
        self.producer.flush()
        self.store.complete(pending)
        if pending.cursor is not None:
            self.state.cursors[pending.module] = pending.cursor
        self.state.remember(pending.facts, pending.held)
        self.state.pending = None
        for event in pending.events:
            self.metrics.produced(str(event["type"]))
        for dead in pending.dead:
            self.metrics.dead(dead.module, dead.cause)
            log.warning(
                "%s %s sent to crm.deadletter (%s): %s", dead.module, dead.record, dead.cause, dead.detail
            )
        if not self.failing:
            self.metrics.progressed()

    def _trim(self) -> None:
        """Forget what is past the retention, deal outcomes and open potentials' states
        excepted; tombstone what empties."""
        now = self.clock()
        if self._trimmed is not None and now - self._trimmed < TRIM_EVERY:
            return
        horizon = utc_text(now - RETENTION)
        updates: dict[str, Memory | None] = {}
        for record, memory in self.state.facts.items():
            kept = {k: v for k, v in memory.items() if k in KEPT or self._utc(k, v) >= horizon}
            if kept != memory:
                updates[record] = kept or None
        if updates:
            self.store.forget(updates)
            self.state.remember(updates, {})
            log.info("forgot %d records' facts past the retention", len(updates))
        self._trimmed = now

    def _utc(self, kind: str, value: str) -> str:
        """A memory entry's time as UTC text ("" when unreadable, so it goes)."""
        if kind != DEAD:
            return value
        try:
            return utc_text(vtiger_time(value, self.translator.zone))
        except ValueError:
            return ""


def _modified(row: Mapping[str, Any]) -> str | None:
    try:
        return checked_time(row.get("modifiedtime"))
    except ValueError:
        return None


def _order(row: Mapping[str, Any]) -> tuple[str, int]:
    """vtiger's order: by ``modifiedtime``, then by the record's number."""
    number = str(row.get("id", "")).rpartition("x")[2]
    return _modified(row) or "", int(number) if number.isdigit() else 0
