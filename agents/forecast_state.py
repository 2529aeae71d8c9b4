"""The pipeline forecast's state (issue 31): every opportunity's history, closed won per day,
and the open pipeline of every period as it stood at the end of any day since the previous
fiscal year began (docs/forecast.md). ``forecast_numbers.py`` reads it; ``forecast.py`` is
the KPI that feeds it.

State, per partition:

- on ``crm.leads``, per opportunity (keyed by its id, so on its own partition): its
  versions, every ``opportunity.created``/``opportunity.updated`` (each a full state) in
  ``(occurred_at, offset)`` order, and its close: the first ``deal.won``/``deal.lost`` naming
  it by ``(occurred_at, offset)``, forwarded there from ``crm.deals`` by the engine. A close is
  final, so the versions after it are dropped, and so is one that arrives later;
- derived from those and never persisted: per (rep, region, currency, month of the
  expected close, category), the open pipeline's daily deltas (amount, amount x probability,
  deals, probability). An opportunity adds its version's share from the version's day and
  takes it back on the day of the next version or of its close, so an update arriving out
  of order, or late, only moves deltas, and a period's pipeline at the end of day D is the
  sum of its months' deltas up to D;
- on ``crm.deals``: closed won per (rep, region, currency, UTC day), amount and deals, with
  the source offset the record has applied, like any windowed counter's bucket.

History goes back to the start of the previous fiscal year (the horizon). When the clock
enters a new fiscal year, closed won of days before it, opportunities closed before it and
open ones that went stale before it (no version since, and no expected close in a month
from it on) get tombstones, and deltas before it fold into the day before it. Every other
open opportunity stays, however old: it is live.

Exact after a crash: a version or a close is kept once by its ``(occurred_at, offset)``
(replaying it changes nothing), a closed-won record skips offsets it has applied, and
restore takes each opportunity's newest record and derives its deltas again. Amounts are
integers (the currency's units, ``money.py``), probabilities basis points, so every sum is
exact in any order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from salespulse.agents.base import ApplyContext, LabelFolder
from salespulse.agents.forecast_calendar import DAY, FiscalCalendar, Period, parse_day
from salespulse.agents.forecast_plan import (
    BASIS_POINTS,
    CATEGORY_INDEX,
    DEFAULT_STAGE_TABLE,
    OMITTED,
    PIPELINE,
    StageTable,
)
from salespulse.agents.rolling import Clock
from salespulse.schemas.topics import DEALS, LEADS

#: A delta key packs (row id, month, category): ``rid << 22 | month << 2 | category``.
_MONTH_BITS: Final = 20
_MONTH_MASK: Final = (1 << _MONTH_BITS) - 1
_CAT_BITS: Final = 2
_CAT_MASK: Final = (1 << _CAT_BITS) - 1
#: A closed-won key packs (row id, epoch day): ``rid << 20 | day``.
_DAY_BITS: Final = 20
_DAY_MASK: Final = (1 << _DAY_BITS) - 1
#: Delta vectors: open amount, amount x basis points, deals, basis points.
WIDTH: Final = 4
#: ``expected_close`` texts already turned into epoch days, before the memory starts again.
_DAYS_KEPT: Final = 1 << 14
_DAY_OF: dict[str, int] = {}


def close_day(text: str) -> int:
    day = _DAY_OF.get(text)
    if day is None:
        day = parse_day(text)
        if len(_DAY_OF) >= _DAYS_KEPT:
            _DAY_OF.clear()
        _DAY_OF[text] = day
    return day


@dataclass(frozen=True)
class ForecastPolicy:
    """What the derived state depends on: the calendar (months) and the stage table.

    An image of the state taken under another policy does not fit (``state_image.py``), so a
    changed setting derives everything again from the changelog.
    """

    calendar: FiscalCalendar = field(default_factory=FiscalCalendar)
    stages: StageTable = DEFAULT_STAGE_TABLE


#: One ``opportunity.created``/``updated``, as sent and as resolved: plain data, which a state
#: image holds as it is (``state_image.py``), and all ints, which the compiled code reads one
#: at a time (a typed fixed-length tuple would be unpacked whole at every read). The fields,
#: by the indices below: time, offset, amount, row id (rep, region, currency), stage id,
#: probability and category as sent, expected close (epoch day), then as resolved: delta key,
#: basis points and month. -1 is absent; key -1 is in no period's pipeline (omitted, or no
#: expected close).
Version = tuple[int, ...]
T: Final = 0
OFFSET: Final = 1
AMOUNT: Final = 2
RID: Final = 3
STAGE: Final = 4
PROBABILITY: Final = 5
CATEGORY: Final = 6
CLOSE_DAY: Final = 7
KEY: Final = 8
BP: Final = 9
MONTH: Final = 10
#: A close: (time, offset, 1 if won else 0).
Close = tuple[int, ...]
NO_CLOSE: Final[Close] = (-1, -1, 0)


def closed_by(close: Close, t: int, offset: int) -> bool:
    """Whether a close (NO_CLOSE: none) comes at or before ``(t, offset)``."""
    ct = close[0]
    return ct >= 0 and (ct < t or (ct == t and close[1] <= offset))


def state_at(versions: Sequence[Version], close: Close, moment: int) -> tuple[str, Version | None]:
    """An opportunity's state at the end of second ``moment``: ``none`` (no version yet),
    ``open``, ``won`` or ``lost``, with the newest version up to then."""
    i = len(versions)
    while i > 0 and versions[i - 1][T] > moment:
        i -= 1
    version = versions[i - 1] if i else None
    if 0 <= close[0] <= moment:
        return ("won" if close[2] else "lost"), version
    return ("none" if version is None else "open"), version


def slips(versions: Sequence[Version], moment: int) -> int:
    """How many versions up to ``moment`` moved the expected close to a later month than the
    version before them (one without an expected close moves nothing)."""
    count, month = 0, -1
    for v in versions:
        if v[T] > moment:
            break
        if month >= 0 and v[MONTH] > month:
            count += 1
        month = v[MONTH]
    return count


#: A version's changelog key suffix: (opportunity, time, offset).
VersionKey = tuple[str, int, int]


def register(fold: LabelFolder, rep: str, region: str, currency: str) -> None:
    """Take a row's labels into the worker's label cap as it is applied or restored, as every
    KPI does, so that exporting it later only reads the cap (a read never writes)."""
    fold("rep", rep)
    fold("region", region)
    fold("currency", currency)


class ForecastState:
    """One partition's opportunities, closed won and open-pipeline deltas.

    An opportunity is its versions in ``(t, offset)`` order and, once closed, its close; it
    has either or both. Everything is plain data (tuples, lists, dicts), which a state
    image captures as it stands. Each version is its own changelog record, written once
    (``["opp", id, t, offset]``), and so is the close (``["close", id]``): an update costs one
    small record, whatever the opportunity's history.
    """

    def __init__(self, policy: ForecastPolicy) -> None:
        self.policy = policy
        self.stage_of: dict[str, tuple[int, int]] = {name: (cat, bp) for name, cat, bp in policy.stages}
        self.versions: dict[str, list[Version]] = {}
        self.closes: dict[str, Close] = {}
        #: Versions and closes to write, and the keys to tombstone (dropped or forgotten).
        self.dirty: dict[VersionKey, Version] = {}
        self.gone: set[VersionKey] = set()
        self.dirty_closes: set[str] = set()
        self.gone_closes: set[str] = set()
        #: (rep, region, currency) rows by a small id, which delta keys and versions hold.
        self.rids: dict[tuple[str, str, str], int] = {}
        self.rows: list[tuple[str, str, str]] = []
        #: Stage names by a small id, and per stage text as sent: (id, category, basis points)
        #: from the stage table (-1, -1 where it has none; category omitted for a "closed" one).
        self.stages: list[str] = []
        self.stage_ids: dict[str, tuple[int, int, int]] = {}
        #: delta key -> epoch day -> [amount, amount x bp, deals, bp].
        self.deltas: dict[int, dict[int, list[int]]] = {}
        #: Closed won, by ``row id << 20 | day``: [applied offset, amount, deals].
        self.won: dict[int, list[int]] = {}
        self.won_dirty: set[int] = set()
        self.won_gone: set[int] = set()
        #: The first day of history kept, its month, and the day the clock was last seen on.
        self.horizon = 0
        self.first_month = 0
        self.day = -1

    # -- versions ------------------------------------------------------------------------
    def rid(self, rep: str, region: str, currency: str) -> int:
        key = (rep, region, currency)
        rid = self.rids.get(key)
        if rid is None:
            rid = self.rids[key] = len(self.rows)
            self.rows.append(key)
        return rid

    def stage(self, name: str) -> tuple[int, int, int]:
        """A stage's id, and its category and basis points from the stage table."""
        found = self.stage_ids.get(name)
        if found is None:
            mapped = self.stage_of.get(name.strip().lower())
            if mapped is not None:
                cat, bp = mapped
            else:
                cat, bp = (OMITTED if "closed" in name.lower() else -1), -1
            found = self.stage_ids[name] = (len(self.stages), cat, bp)
            self.stages.append(name)
        return found

    def version(self, t: int, offset: int, d: dict[str, Any]) -> Version:
        """A version from an event's data, resolved by the stage table and the calendar."""
        stage = d.get("stage")
        probability = d.get("probability")
        category = d.get("forecast_category")
        expected = d.get("expected_close")
        return self.resolved(
            t,
            offset,
            d["amount"],
            self.rid(d["rep_id"], d["region"], d["currency"]),
            -1 if stage is None else self.stage(stage)[0],
            -1 if probability is None else round(probability * BASIS_POINTS),
            -1 if category is None else CATEGORY_INDEX[category],
            -1 if expected is None else close_day(expected),
        )

    def resolved(
        self,
        t: int,
        offset: int,
        amount: int,
        rid: int,
        stage: int,
        probability: int,
        category: int,
        day: int,
    ) -> Version:
        """A version with its category, probability and month worked out."""
        cat, bp = category, probability
        if cat < 0 or bp < 0:
            mapped_cat, mapped_bp = -1, -1
            if stage >= 0:
                _, mapped_cat, mapped_bp = self.stage_ids[self.stages[stage]]
            if cat < 0:
                cat = PIPELINE if mapped_cat < 0 else mapped_cat
            if bp < 0:
                bp = 0 if mapped_bp < 0 else mapped_bp
        month = key = -1
        if day >= 0:
            month = self.policy.calendar.month_of(day)
            if cat != OMITTED:
                key = rid << (_MONTH_BITS + _CAT_BITS) | month << _CAT_BITS | cat
        return (t, offset, amount, rid, stage, probability, category, day, key, bp, month)

    def offer(self, opportunity: str, v: Version) -> None:
        """Take a version unless it is already there or comes after the close."""
        close = self.closes.get(opportunity, NO_CLOSE)
        t, offset = v[T], v[OFFSET]
        if closed_by(close, t, offset):
            return
        versions = self.versions.get(opportunity)
        if versions is None:
            versions = self.versions[opportunity] = []
        i = len(versions)
        while i > 0:
            prev = versions[i - 1]
            pt = prev[T]
            if pt < t:
                break
            if pt == t:
                po = prev[OFFSET]
                if po == offset:
                    return  # replayed
                if po < offset:
                    break
            i -= 1
        before = versions[i - 1] if i else None
        end = versions[i][T] if i < len(versions) else close[0]
        versions.insert(i, v)
        self._move(before, v, t, end)
        key = (opportunity, t, offset)
        self.dirty[key] = v
        self.gone.discard(key)

    def close(self, opportunity: str, t: int, offset: int, won: bool) -> None:
        """Close an opportunity from ``t`` on, unless an earlier close already has."""
        old = self.closes.get(opportunity, NO_CLOSE)
        if closed_by(old, t, offset):
            return
        versions = self.versions.get(opportunity, [])
        i = len(versions)
        while i > 0 and (
            versions[i - 1][T] > t or (versions[i - 1][T] == t and versions[i - 1][OFFSET] > offset)
        ):
            i -= 1
        # From the close on, nothing: take back what the versions added up to the old close.
        active, start = (versions[i - 1] if i else None), t
        for v in versions[i:]:
            self._move(active, None, start, v[T])
            active, start = v, v[T]
            self._drop(opportunity, v)
        self._move(active, None, start, old[0])
        del versions[i:]
        self.closes[opportunity] = (t, offset, 1 if won else 0)
        self.dirty_closes.add(opportunity)
        self.gone_closes.discard(opportunity)
        if t < self.horizon * DAY:
            self._forget(opportunity)

    def _drop(self, opportunity: str, v: Version) -> None:
        """A version leaves the state: its record is tombstoned, unless it was never written."""
        key = (opportunity, v[T], v[OFFSET])
        if self.dirty.pop(key, None) is None:
            self.gone.add(key)

    def _stale(self, versions: Sequence[Version]) -> bool:
        """Whether an open opportunity has had no version since the horizon and is expected to
        close in no month a period from the horizon on can hold: nothing can read it."""
        newest = versions[-1]
        return newest[T] < self.horizon * DAY and newest[MONTH] < self.first_month

    def _forget(self, opportunity: str) -> None:
        """Drop an opportunity closed before the horizon (its deltas there net to nothing), or
        gone stale (its deltas are in months no period can read)."""
        for v in self.versions.pop(opportunity, ()):
            self._drop(opportunity, v)
        if self.closes.pop(opportunity, None) is not None:
            if opportunity in self.dirty_closes:
                self.dirty_closes.discard(opportunity)
            else:
                self.gone_closes.add(opportunity)

    # -- deltas --------------------------------------------------------------------------
    def _move(self, old: Version | None, new: Version | None, start: int, end: int) -> None:
        """Over ``[start, end)`` (``end`` -1: on and on) the opportunity's share goes from
        ``old``'s to ``new``'s."""
        first = start // DAY
        last = end // DAY if end >= 0 else -1
        if first == last:
            return
        if old is not None and old[KEY] >= 0:
            if new is not None and old[KEY] == new[KEY] and old[AMOUNT] == new[AMOUNT] and old[BP] == new[BP]:
                return
            self._add(old, first, -1)
            if last >= 0:
                self._add(old, last, 1)
        if new is not None and new[KEY] >= 0:
            self._add(new, first, 1)
            if last >= 0:
                self._add(new, last, -1)

    def _add(self, v: Version, day: int, sign: int) -> None:
        if v[MONTH] < self.first_month:
            return  # a month before the horizon: no period of it can be read
        key = v[KEY]
        if day < self.horizon:
            day = self.horizon - 1
        days = self.deltas.get(key)
        if days is None:
            days = self.deltas[key] = {}
        amount = sign * v[AMOUNT]
        bp = v[BP]
        vec = days.get(day)
        if vec is None:
            days[day] = [amount, amount * bp, sign, sign * bp]
            return
        vec[0] += amount
        vec[1] += amount * bp
        vec[2] += sign
        vec[3] += sign * bp
        if not (vec[0] or vec[1] or vec[2] or vec[3]):
            del days[day]

    # -- closed won ----------------------------------------------------------------------
    def add_won(self, rid: int, t: int, offset: int, amount: int) -> None:
        day = t // DAY
        if day < self.horizon:
            return  # before the history kept: no period of it can be read
        key = rid << _DAY_BITS | day
        rec = self.won.get(key)
        if rec is None:
            self.won[key] = [offset, amount, 1]
        elif rec[0] < offset:
            rec[0] = offset
            rec[1] += amount
            rec[2] += 1
        else:
            return
        self.won_dirty.add(key)

    # -- the horizon ---------------------------------------------------------------------
    def refresh(self, clock: Clock) -> None:
        """Move the horizon with the clock: forget what falls before the previous fiscal year.

        Only applying and restoring call this; reads never move the state.
        """
        day = clock.now // DAY
        if day == self.day:
            return
        self.day = day
        calendar = self.policy.calendar
        horizon = calendar.horizon(day)
        if horizon <= self.horizon:
            return
        self.horizon, self.first_month = horizon, calendar.month_of(horizon)
        for won in [k for k in self.won if k & _DAY_MASK < horizon]:
            del self.won[won]
            self.won_dirty.discard(won)
            self.won_gone.add(won)
        for name in [n for n, close in self.closes.items() if close[0] < horizon * DAY]:
            self._forget(name)
        for name in [n for n, versions in self.versions.items() if self._stale(versions)]:
            self._forget(name)
        base = horizon - 1
        for key in list(self.deltas):
            if (key >> _CAT_BITS) & _MONTH_MASK < self.first_month:
                del self.deltas[key]
                continue
            days = self.deltas[key]
            old = [day for day in days if day < base]
            if old:
                total = days.pop(base, [0] * WIDTH)
                for d in old:
                    total = [a + b for a, b in zip(total, days.pop(d), strict=True)]
                if any(total):
                    days[base] = total

    # -- persistence ---------------------------------------------------------------------
    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[Any] | None]]:
        self.refresh(clock)
        if topic == LEADS:
            for name, t, at in self.gone:
                yield ["opp", name, t, at], None
            self.gone.clear()
            for name in self.gone_closes:
                yield ["close", name], None
            self.gone_closes.clear()
            rows, stages = self.rows, self.stages
            for (name, t, at), v in self.dirty.items():
                stage = v[STAGE]
                yield (
                    ["opp", name, t, at],
                    [
                        v[AMOUNT],
                        *rows[v[RID]],
                        None if stage < 0 else stages[stage],
                        v[PROBABILITY],
                        v[CATEGORY],
                        v[CLOSE_DAY],
                    ],
                )
            self.dirty.clear()
            for name in self.dirty_closes:
                yield ["close", name], list(self.closes[name])
            self.dirty_closes.clear()
        elif topic == DEALS:
            rows = self.rows
            for key in self.won_gone:
                yield ["won", *rows[key >> _DAY_BITS], key & _DAY_MASK], None
            self.won_gone.clear()
            for key in self.won_dirty:
                yield ["won", *rows[key >> _DAY_BITS], key & _DAY_MASK], self.won[key]
            self.won_dirty.clear()

    def restore(self, topic: str, key: list[Any], rec: list[Any] | None, ctx: ApplyContext) -> None:
        """A version (``["opp", id, t, offset]``: ``[amount, rep, region, currency, stage,
        probability, category, expected close day]``), a close (``["close", id]``: ``[t,
        offset, won]``) or a day's closed won, read back; ``None`` is a tombstone."""
        self.refresh(ctx.clock)
        family = key[0]
        if family == "opp":
            name, t, offset = key[1], key[2], key[3]
            if rec is None:
                self._unversion(name, t, offset)
                self.gone.discard((name, t, offset))
                return
            amount, rep, region, currency, stage, probability, category, day = rec
            register(ctx.fold, rep, region, currency)
            sid = -1 if stage is None else self.stage(stage)[0]
            v = self.resolved(
                t, offset, amount, self.rid(rep, region, currency), sid, probability, category, day
            )
            self.offer(name, v)
            self.dirty.pop((name, t, offset), None)  # read back: written already
        elif family == "close":
            name = key[1]
            if rec is None:
                self._reopen(name)
                self.gone_closes.discard(name)
                return
            self.close(name, rec[0], rec[1], bool(rec[2]))
            self.dirty_closes.discard(name)
        else:
            day = key[4]
            register(ctx.fold, key[1], key[2], key[3])
            won = self.rid(key[1], key[2], key[3]) << _DAY_BITS | day
            if rec is None:
                self.won.pop(won, None)
                self.won_gone.discard(won)
            elif day < self.horizon:
                self.won_gone.add(won)  # its writer stopped before it dropped it: a tombstone is owed
            else:
                self.won[won] = list(rec)

    def _unversion(self, name: str, t: int, offset: int) -> None:
        """Take a version back out (its tombstone read back)."""
        versions = self.versions.get(name)
        if versions is None:
            return
        for i, v in enumerate(versions):
            if v[T] == t and v[OFFSET] == offset:
                close = self.closes.get(name, NO_CLOSE)
                end = versions[i + 1][T] if i + 1 < len(versions) else close[0]
                self._move(v, versions[i - 1] if i else None, t, end)
                del versions[i]
                if not versions:
                    del self.versions[name]
                return

    def _reopen(self, name: str) -> None:
        """Take a close back out (its tombstone read back): the last version runs on."""
        close = self.closes.pop(name, None)
        versions = self.versions.get(name)
        if close is not None and versions:
            self._move(None, versions[-1], close[0], -1)

    # -- reading (changes nothing) -------------------------------------------------------
    def opportunities(self) -> Iterator[tuple[str, list[Version], Close]]:
        """Every opportunity held: its id, versions and close."""
        for name, versions in self.versions.items():
            yield name, versions, self.closes.get(name, NO_CLOSE)
        for name, close in self.closes.items():
            if name not in self.versions:
                yield name, [], close

    def open_at(self, period: Period, day: int) -> dict[tuple[int, int], list[int]]:
        """:meth:`open_daily` at the end of ``day`` alone."""
        return {cell: series[0] for cell, series in self.open_daily(period, day, day).items()}

    def open_daily(self, period: Period, first: int, last: int) -> dict[tuple[int, int], list[list[int]]]:
        """The open pipeline expected to close in ``period``, at the end of each day from
        ``first`` to ``last``: the delta sums per (row id, category)."""
        out: dict[tuple[int, int], list[list[int]]] = {}
        for key, days in self.deltas.items():
            month = (key >> _CAT_BITS) & _MONTH_MASK
            if not period.first_month <= month <= period.last_month:
                continue
            cell = (key >> (_MONTH_BITS + _CAT_BITS), key & _CAT_MASK)
            series = out.get(cell)
            if series is None:
                series = out[cell] = [[0] * WIDTH for _ in range(first, last + 1)]
            running = [0] * WIDTH
            ordered = sorted(days.items())
            j = 0
            for index, day in enumerate(range(first, last + 1)):
                while j < len(ordered) and ordered[j][0] <= day:
                    for i in range(WIDTH):
                        running[i] += ordered[j][1][i]
                    j += 1
                row = series[index]
                for i in range(WIDTH):
                    row[i] += running[i]
        return out

    def won_in(self, first: int, last: int) -> Iterator[tuple[str, str, str, int, int, int]]:
        """Closed won per (rep, region, currency, day) for the days ``first`` to ``last``:
        (rep, region, currency, day, amount, deals)."""
        rows = self.rows
        for key, rec in self.won.items():
            day = key & _DAY_MASK
            if first <= day <= last:
                rep, region, currency = rows[key >> _DAY_BITS]
                yield rep, region, currency, day, rec[1], rec[2]
