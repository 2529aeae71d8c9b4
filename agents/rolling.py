"""The shared rolling-window table every KPI builds on.

Event-time buckets (1 minute for the ``1h`` window, 1 hour for the others) hold sums per
label tuple. Each bucket record carries the source offset it has applied up to, so a
record replayed after a crash is skipped record by record (design brief, section 4).
Window sums are kept running, so a scrape only reads them.

Window rule, exactly: with the clock at second ``T``, ``cm = T // 60`` and ``ch = T // 3600``,
the ``1h`` window holds minute buckets ``cm-59 .. cm`` and the ``24h``/``7d``/``30d`` windows
hold hour buckets ``ch-23 .. ch``, ``ch-167 .. ch`` and ``ch-719 .. ch``. Hour buckets are kept
for 62 days (``ch-1487 .. ch``); an event older than that is late.

A counter of money (``by_day``) also keeps each window's sums split by UTC day, running the
same way, so a read converts each day's sum at that day's rate (``agents/money.py``) with a
few dozen multiplications, not one per bucket.

Only applying (and restoring) moves a counter's clock: that is when running sums advance
and expired buckets are dropped, and each dropped bucket of a persisted counter leaves a
tombstone for the changelog, so compaction can reclaim its key. A read at any other clock
sums the retained buckets and changes nothing (a read that advanced the clock once dropped
buckets that the next event's record then overwrote on the changelog).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from salespulse.agents.customers import CustomerIndex, fill_to, value_at

MINUTE: Final = 60
HOUR: Final = 3600
RETENTION_HOURS: Final = 62 * 24
#: How long a deal's outcome and a survey response are remembered after their event time
#: (``SALESPULSE_OUTCOME_MEMORY``'s default, three years of 365 days): another copy within it
#: is not counted again (streams/pipeline/outcomes.py).
OUTCOME_MEMORY: Final = 3 * 365 * 86400
MINUTE_WINDOW: Final = 60
#: Buckets in a UTC day, by resolution.
MINUTES_A_DAY: Final = 1440
HOURS_A_DAY: Final = 24

#: (name, bucket count, uses minute buckets)
WINDOWS: Final[tuple[tuple[str, int, bool], ...]] = (
    ("1h", 60, True),
    ("24h", 24, False),
    ("7d", 168, False),
    ("30d", 720, False),
)
WINDOW_NAMES: Final = tuple(name for name, _, _ in WINDOWS)
#: Position of each window in ``WINDOWS``, which is how a counter's running sums are kept:
#: a list index is a few instructions, a lookup by name about 135, and an event adds to three.
WINDOW_AT: Final = {name: i for i, name in enumerate(WINDOW_NAMES)}
_1H: Final = WINDOW_AT["1h"]
_24H: Final = WINDOW_AT["24h"]
_7D: Final = WINDOW_AT["7d"]
_30D: Final = WINDOW_AT["30d"]
WINDOW_SECONDS: Final = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}

Labels = tuple[str, ...]
Vector = list[int]
#: What running sums are keyed by: label ids inside a counter, label tuples once merged (and
#: with their UTC day, for a counter of money).
K = TypeVar("K", int, Labels, tuple[Labels, int])


@dataclass(frozen=True)
class Clock:
    """The clock a batch is applied and exported at, as bucket indices."""

    now: int

    @property
    def minute(self) -> int:
        return self.now // MINUTE

    @property
    def hour(self) -> int:
        return self.now // HOUR

    @property
    def oldest_hour(self) -> int:
        """The oldest hour bucket still retained; anything older is late."""
        return self.hour - RETENTION_HOURS + 1

    def is_late(self, t: int) -> bool:
        return t // HOUR < self.oldest_hour


def add_into(sums: dict[K, Vector], key: K, vec: Vector) -> None:
    """Add ``vec`` to the running vector under ``key``, starting it when new."""
    total = sums.get(key)
    if total is None:
        sums[key] = list(vec)
    elif len(vec) == 1:  # most counters: twice as fast as the loop
        total[0] += vec[0]
    else:
        for i, v in enumerate(vec):
            total[i] += v


def _in_window(bucket: int, current: int, size: int) -> bool:
    return current - size < bucket <= current


#: Buckets are keyed by ``bucket << LABEL_BITS | label id``: one int, hashed for free,
#: instead of a (bucket, label tuple) pair hashed afresh on every lookup.
LABEL_BITS: Final = 32
LABEL_MASK: Final = (1 << LABEL_BITS) - 1


class WindowedCounter:
    """Per-partition bucketed sums of a fixed-width vector, keyed by a label tuple.

    ``persisted`` counters keep an applied offset per record and report the records a
    batch touched; derived counters (``persisted=False``) are rebuilt from other state.
    Each label tuple gets a small id the first time it is seen; buckets, dirty marks and
    running sums are keyed by ids, and label tuples come back only at the edges (drain,
    export), where they are looked up. Ids are never reused: label values are capped per
    worker (``LabelFolder``), so the label tuples, and the ids, stay few.
    """

    __slots__ = (
        "_ch",
        "_cm",
        "days",
        "dirty_hours",
        "dirty_minutes",
        "expired_hours",
        "expired_minutes",
        "family",
        "hours",
        "ids",
        "known",
        "label_names",
        "labels_of",
        "minutes",
        "persisted",
        "sums",
        "width",
    )

    def __init__(
        self,
        family: str,
        label_names: tuple[str, ...],
        width: int,
        *,
        persisted: bool = True,
        by_day: bool = False,
    ) -> None:
        self.family = family
        self.label_names = label_names
        self.width = width
        self.persisted = persisted
        self.ids: dict[Labels, int] = {}
        self.labels_of: list[Labels] = []
        # record = [applied offset, v0, v1, ...]
        self.minutes: dict[int, Vector] = {}
        self.hours: dict[int, Vector] = {}
        self.dirty_minutes: set[int] = set()
        self.dirty_hours: set[int] = set()
        #: Keys of persisted buckets dropped since the last drain: their tombstones.
        self.expired_minutes: set[int] = set()
        self.expired_hours: set[int] = set()
        self.sums: list[dict[int, Vector]] = [{} for _ in WINDOWS]
        #: ``by_day``: each window's sums by ``day << LABEL_BITS | label id`` (UTC days).
        self.days: list[dict[int, Vector]] | None = [{} for _ in WINDOWS] if by_day else None
        self.known: set[int] = set()
        self._cm = -1
        self._ch = -1

    def _id(self, labels: Labels) -> int:
        lid = self.ids.get(labels)
        if lid is None:
            lid = self.ids[labels] = len(self.labels_of)
            self.labels_of.append(labels)
        return lid

    # -- applying events -------------------------------------------------------------
    def add(self, t: int, labels: Labels, vec: Vector, offset: int, clock: Clock) -> None:
        """Add ``vec`` at event time ``t`` unless the record already applied ``offset``."""
        if clock.now // MINUTE != self._cm:
            self.refresh(clock)
        lid = self._id(labels)
        h = t // HOUR
        key = h << LABEL_BITS | lid
        rec = self.hours.get(key)
        if rec is None or offset < 0 or rec[0] < offset:
            self._update(self.hours, key, rec, vec, offset)
            if offset >= 0:
                self.dirty_hours.add(key)
            d = self._ch - h
            if 0 <= d < 720:
                sums = self.sums
                add_into(sums[_30D], lid, vec)
                if d < 168:
                    add_into(sums[_7D], lid, vec)
                    if d < 24:
                        add_into(sums[_24H], lid, vec)
                days = self.days
                if days is not None:
                    key = (h // HOURS_A_DAY) << LABEL_BITS | lid
                    add_into(days[_30D], key, vec)
                    if d < 168:
                        add_into(days[_7D], key, vec)
                        if d < 24:
                            add_into(days[_24H], key, vec)
        m = t // MINUTE
        d = self._cm - m
        if d < MINUTE_WINDOW:
            key = m << LABEL_BITS | lid
            rec = self.minutes.get(key)
            if rec is None or offset < 0 or rec[0] < offset:
                self._update(self.minutes, key, rec, vec, offset)
                if offset >= 0:
                    self.dirty_minutes.add(key)
                if d >= 0:
                    add_into(self.sums[_1H], lid, vec)
                    if self.days is not None:
                        add_into(self.days[_1H], (m // MINUTES_A_DAY) << LABEL_BITS | lid, vec)

    def adjust(self, t: int, labels: Labels, vec: Vector, clock: Clock) -> None:
        """Add a (possibly negative) derived amount; no offsets, nothing persisted."""
        self.add(t, labels, vec, -1, clock)

    def _update(
        self, store: dict[int, Vector], key: int, rec: Vector | None, vec: Vector, offset: int
    ) -> None:
        if rec is None:
            store[key] = [offset, vec[0]] if len(vec) == 1 else [offset, *vec]
            self.known.add(key & LABEL_MASK)
        else:
            rec[0] = offset
            if len(vec) == 1:
                rec[1] += vec[0]
            else:
                for i, v in enumerate(vec, 1):
                    rec[i] += v

    def _add_to_sums(self, res: str, bucket: int, lid: int, vec: Vector) -> None:
        for i, (_, size, minute) in enumerate(WINDOWS):
            if minute == (res == "m") and _in_window(bucket, self._cm if minute else self._ch, size):
                add_into(self.sums[i], lid, vec)
                if self.days is not None:
                    per_day = MINUTES_A_DAY if minute else HOURS_A_DAY
                    add_into(self.days[i], (bucket // per_day) << LABEL_BITS | lid, vec)

    # -- clock -----------------------------------------------------------------------
    def refresh(self, clock: Clock) -> None:
        """Recompute window sums when the clock enters a new minute; drop expired buckets.

        Called only when applying or restoring: reads never move the counter's clock.
        """
        if clock.minute == self._cm:
            return
        self._cm = clock.minute
        hour_changed = clock.hour != self._ch
        self._ch = clock.hour
        self._expire(self.minutes, self.expired_minutes, self._cm - MINUTE_WINDOW + 1)
        self.sums[_1H] = self._sum(self.minutes, self._cm, 60)
        days = self.days
        if days is not None:
            days[_1H] = self._sum(self.minutes, self._cm, 60, MINUTES_A_DAY)
        if hour_changed:
            self._expire(self.hours, self.expired_hours, clock.oldest_hour)
            self.known = self._retained(clock)
            for i, (_, size, minute) in enumerate(WINDOWS):
                if not minute:
                    self.sums[i] = self._sum(self.hours, self._ch, size)
                    if days is not None:
                        days[i] = self._sum(self.hours, self._ch, size, HOURS_A_DAY)

    def _expire(self, store: dict[int, Vector], expired: set[int], oldest: int) -> None:
        """Drop the buckets before ``oldest``, noting their keys for tombstones if persisted."""
        gone = [k for k in store if k >> LABEL_BITS < oldest]
        for key in gone:
            del store[key]
        if self.persisted:
            expired.update(gone)

    def _retained(self, clock: Clock) -> set[int]:
        """Label ids with a bucket retained at ``clock``."""
        oldest_minute = clock.minute - MINUTE_WINDOW + 1
        oldest_hour = clock.oldest_hour
        lids = {k & LABEL_MASK for k in self.hours if k >> LABEL_BITS >= oldest_hour}
        lids.update(k & LABEL_MASK for k in self.minutes if k >> LABEL_BITS >= oldest_minute)
        return lids

    @staticmethod
    def _sum(store: dict[int, Vector], current: int, size: int, per_day: int = 0) -> dict[int, Vector]:
        """Sums of the buckets in the window ending at ``current``, by label id, or by day and
        label id (``per_day``: buckets a day)."""
        sums: dict[int, Vector] = {}
        for key, rec in store.items():
            bucket = key >> LABEL_BITS
            if _in_window(bucket, current, size):
                lid = key & LABEL_MASK
                add_into(sums, (bucket // per_day) << LABEL_BITS | lid if per_day else lid, rec[1:])
        return sums

    def _named(self, sums: dict[int, Vector]) -> dict[Labels, Vector]:
        labels_of = self.labels_of
        return {labels_of[lid]: vec for lid, vec in sums.items()}

    def window_at(self, clock: Clock, window: str) -> dict[Labels, Vector]:
        """Sums of ``window`` at any clock, changing nothing.

        At the counter's own clock (its minute for ``1h``, its hour for the others) this
        reads the running sums. At a later clock it works from the retained buckets, which
        hold everything such a window can see. At an earlier one (the digest's previous
        periods) it sums hour buckets, and minute buckets for ``1h`` only where they are
        still kept.
        """
        return self._named(self._at(clock, window, self.sums, 0))

    def window_days_at(self, clock: Clock, window: str) -> dict[tuple[Labels, int], Vector]:
        """A ``by_day`` counter's sums of ``window`` at ``clock`` by (label tuple, UTC day),
        read as :meth:`window_at` reads its sums, changing nothing."""
        assert self.days is not None, f"{self.family} does not keep sums by day"
        by_day = self._at(clock, window, self.days, 1)
        labels_of = self.labels_of
        return {(labels_of[key & LABEL_MASK], key >> LABEL_BITS): vec for key, vec in by_day.items()}

    def _at(
        self, clock: Clock, window: str, running: list[dict[int, Vector]], days: int
    ) -> dict[int, Vector]:
        """``window``'s sums at ``clock`` from the ``running`` ones, keyed by label id, or by
        day and label id when ``days``."""
        i = WINDOW_AT[window]
        _, size, minute = WINDOWS[i]
        if minute:
            per_day = MINUTES_A_DAY * days
            if clock.minute >= self._cm:
                return self._moved(running[i], self.minutes, self._cm, clock.minute, size, per_day)
            return self._sum(self.hours, clock.hour, 1, HOURS_A_DAY * days)
        return self._moved(running[i], self.hours, self._ch, clock.hour, size, HOURS_A_DAY * days)

    def _moved(
        self,
        running: dict[int, Vector],
        store: dict[int, Vector],
        current: int,
        target: int,
        size: int,
        per_day: int,
    ) -> dict[int, Vector]:
        """A window's sums at bucket ``target``: the ``running`` sums at ``current`` (the
        counter's own bucket), less the buckets that leave the window on the way and plus those
        that enter, when looking those up costs less than summing every retained bucket. Keys
        are label ids, or days and label ids (``per_day``: buckets a day)."""
        steps = target - current
        if steps == 0:
            return running
        known = self.known
        if not 0 < steps < size or 2 * steps * len(known) > len(store):
            return self._sum(store, target, size, per_day)
        sums = {key: list(vec) for key, vec in running.items()}
        for first, sign in ((current - size + 1, -1), (current + 1, 1)):
            for bucket in range(first, first + steps):
                base = bucket << LABEL_BITS
                day = (bucket // per_day) << LABEL_BITS if per_day else 0
                for lid in known:
                    rec = store.get(base | lid)
                    if rec is not None:
                        add_into(sums, day | lid, [sign * v for v in rec[1:]])
        return sums

    # -- persistence -----------------------------------------------------------------
    def drain_dirty(self) -> Iterator[tuple[list[object], Vector | None]]:
        """Yield (key suffix, None), a tombstone, for every bucket dropped since the last
        drain, then (key suffix, record) for every record touched since.

        Tombstones go first: a bucket dropped and then made again (a clock stepping back)
        ends as its record, and a touched bucket dropped since is only a tombstone.
        """
        labels_of = self.labels_of
        for res, store, dirty, expired in (
            ("m", self.minutes, self.dirty_minutes, self.expired_minutes),
            ("h", self.hours, self.dirty_hours, self.expired_hours),
        ):
            for key in expired:
                yield [self.family, res, key >> LABEL_BITS, *labels_of[key & LABEL_MASK]], None
            expired.clear()
            for key in dirty:
                rec = store.get(key)
                if rec is not None:
                    yield [self.family, res, key >> LABEL_BITS, *labels_of[key & LABEL_MASK]], rec
            dirty.clear()

    def restore(self, res: str, bucket: int, labels: Labels, rec: Vector | None, clock: Clock) -> None:
        """Set a record read back from the changelog (the newest write wins); a tombstone
        (``None``) removes it. A record already expired at ``clock`` is not kept, and its
        tombstone is left to write: its writer stopped before it dropped the bucket."""
        self.refresh(clock)
        lid = self._id(labels) if rec is not None else self.ids.get(labels)
        if lid is None:
            return
        minute = res == "m"
        store, expired = (self.minutes, self.expired_minutes) if minute else (self.hours, self.expired_hours)
        key = bucket << LABEL_BITS | lid
        if rec is not None and bucket < (self._cm - MINUTE_WINDOW + 1 if minute else clock.oldest_hour):
            expired.add(key)
            return
        old = store.pop(key, None)
        if rec is None:
            expired.discard(key)
        else:
            store[key] = list(rec)
            self.known.add(lid)
        if old is None:
            delta = rec[1:] if rec is not None else []
        elif rec is None:
            delta = [-v for v in old[1:]]
        else:
            delta = [new - old[i] for i, new in enumerate(rec[1:], 1)]
        if delta:
            self._add_to_sums(res, bucket, lid, delta)

    def labels_seen(self, clock: Clock | None = None) -> set[Labels]:
        """Every label tuple with a bucket retained at ``clock`` (by default the counter's own):
        these series stay exported, at 0 if idle."""
        lids = self.known if clock is None or clock.hour <= self._ch else self._retained(clock)
        labels_of = self.labels_of
        return {labels_of[lid] for lid in lids}

    def window(self, name: str) -> dict[Labels, Vector]:
        return self._named(self.sums[WINDOW_AT[name]])


class LatestMap:
    """Latest value per key by ``(occurred_at, offset)``; accepts events of any age.

    Taking the maximum is idempotent, so a replayed or duplicated event changes nothing.
    Records are ``[t, offset, *values]``.
    """

    __slots__ = ("dirty", "family", "records")

    def __init__(self, family: str) -> None:
        self.family = family
        self.records: dict[Labels, list[int]] = {}
        self.dirty: set[Labels] = set()

    def offer(self, key: Labels, t: int, offset: int, values: list[int]) -> list[int] | None:
        """Keep ``values`` if newer; return the record it replaced (``[]`` if new), else None."""
        old = self.records.get(key)
        if old is not None and (old[0], old[1]) >= (t, offset):
            return None
        self.records[key] = [t, offset, *values]
        self.dirty.add(key)
        return old if old is not None else []

    def drain_dirty(self) -> Iterator[tuple[list[object], list[int]]]:
        for key in self.dirty:
            yield [self.family, *key], self.records[key]
        self.dirty.clear()

    def restore(self, key: Labels, rec: list[int]) -> list[int] | None:
        old = self.offer(key, rec[0], rec[1], rec[2:])
        self.dirty.discard(key)
        return old


class CustomerMap:
    """Per-customer values in packed columns, by the partition's customer rows
    (``agents/customers.py``).

    A million customers are held in state (engagement, the NPS profile): as dict entries
    keyed by the id's hash they cost about 120 bytes each, as a row of ``array('q')`` columns
    8 bytes a column. A row with no value here holds -1 or lies past the column's end
    (``value_at``). The id string is kept only until the batch's changelog records are out
    (the changelog and restore use ids).
    """

    __slots__ = ("count", "dirty", "family", "index")

    def __init__(self, family: str, index: CustomerIndex) -> None:
        self.family = family
        self.index = index
        #: Customers with a value here.
        self.count = 0
        #: row -> customer id, for the changelog records of the rows set since the last drain.
        self.dirty: dict[int, str] = {}

    def __len__(self) -> int:
        return self.count

    def restored(self, customer: str) -> None:
        """A value read back from the changelog is already there: nothing to write again."""
        self.dirty.pop(self.index.find(customer), None)


class LatestTime(CustomerMap):
    """Newest event time (in minutes) per customer.

    Only the time matters here. Taking the maximum is idempotent, which is what makes
    replays harmless without a per-record offset.
    """

    __slots__ = ("minutes",)

    def __init__(self, family: str, index: CustomerIndex) -> None:
        super().__init__(family, index)
        self.minutes: array[int] = array("q")

    def __contains__(self, customer: str) -> bool:
        return self.get(customer) is not None

    def get(self, customer: str) -> int | None:
        return self.at_row(self.index.find(customer))

    def at_row(self, row: int) -> int | None:
        """The minute held for the customer at ``row`` (-1: none in the index), if any."""
        minute = value_at(self.minutes, row)
        return None if minute < 0 else minute

    def offer(self, customer: str, minute: int) -> int | None:
        """Record ``minute`` if newer; return the previous minute (-1 if new), else None."""
        row = self.index.row(customer)
        old = value_at(self.minutes, row)
        if old >= minute:
            return None
        if old < 0:
            fill_to(self.minutes, row, -1)
            self.count += 1
        self.minutes[row] = minute
        self.dirty[row] = customer
        return old

    def drain_dirty(self, offset: int) -> Iterator[tuple[list[object], list[int]]]:
        for row, customer in self.dirty.items():
            yield [self.family, customer], [self.minutes[row], offset]
        self.dirty.clear()

    def restore(self, customer: str, rec: list[int]) -> int | None:
        old = self.offer(customer, rec[0])
        self.restored(customer)
        return old


class LatestAnswer(CustomerMap):
    """Latest (occurred_at, offset, score) per customer: a time column and an offset-and-score one."""

    __slots__ = ("offsets", "times")

    SCORE_BITS: Final = 4
    SCORE_MASK: Final = (1 << SCORE_BITS) - 1

    def __init__(self, family: str, index: CustomerIndex) -> None:
        super().__init__(family, index)
        self.times: array[int] = array("q")
        #: offset << SCORE_BITS | score: offsets stay below 2**59, scores below 16.
        self.offsets: array[int] = array("q")

    def offer(self, customer: str, t: int, offset: int, score: int) -> int | None:
        """Keep the answer if newer; return the score it replaced (-1 if new), else None."""
        row = self.index.row(customer)
        old = value_at(self.offsets, row)
        if old < 0:
            fill_to(self.times, row, 0)
            fill_to(self.offsets, row, -1)
            self.count += 1
            old_score = -1
        elif (self.times[row], old >> self.SCORE_BITS) >= (t, offset):
            return None
        else:
            old_score = old & self.SCORE_MASK
        self.times[row] = t
        self.offsets[row] = offset << self.SCORE_BITS | score
        self.dirty[row] = customer
        return old_score

    def get(self, customer: str) -> tuple[int, int, int] | None:
        return self.at_row(self.index.find(customer))

    def at_row(self, row: int) -> tuple[int, int, int] | None:
        """(time, offset, score) of the answer held for the customer at ``row``, if any."""
        return None if value_at(self.offsets, row) < 0 else (self.times[row], *self._offset_score(row))

    def drain_dirty(self) -> Iterator[tuple[list[object], list[int]]]:
        for row, customer in self.dirty.items():
            yield [self.family, customer], [self.times[row], *self._offset_score(row)]
        self.dirty.clear()

    def _offset_score(self, row: int) -> tuple[int, int]:
        packed = self.offsets[row]
        return packed >> self.SCORE_BITS, packed & self.SCORE_MASK

    def restore(self, customer: str, rec: list[int]) -> int | None:
        old = self.offer(customer, rec[0], rec[1], rec[2])
        self.restored(customer)
        return old
