"""Detractor follow-up: who to call, who was called, and how fast.

A customer's case is their latest NPS answer (greatest ``occurred_at``, offset breaks ties)
when it is a detractor (0-6) within the bucket retention. It is followed up by the
earliest ``customer.activity`` on a human channel whose ``occurred_at`` is after the
answer's (offset breaks ties); until then it is open, and overdue once open longer than
the follow-up target. The owner is the rep of the latest ``deal.won`` (``unassigned``).

Exact whatever the arrival order across the three topics, with this state per customer:

- the latest answer's time, offset, score, region and product, and the customer id, in
  packed columns (one row per customer); comment and response id only for answers that
  carry either;
- the latest deal's (time, offset, rep), in packed columns too;
- the human-channel activities *after the latest answer's time*, sorted. An activity at
  or before it can never follow anything up again: the latest answer only moves forward.
  Later ones must stay, because a newer answer may arrive (or be replayed) after them and
  then needs the first activity after *its* time. An activity older than the retention
  can follow up no case (every case's answer is within retention), so it is not kept, and
  one that ages out of it is dropped the next time the customer's activities change. A
  customer left with none has their record replaced by a tombstone.

Each family is persisted with the topic that changes it (answers with ``crm.surveys``,
deals with ``crm.deals``, activities with ``crm.activities``), and each is a maximum or a
set, so re-applying a record replayed after a crash changes nothing. Restore takes each
family's newest record and derives the rest: open cases by (region, owner) as sorted
answer times (so overdue and retention are two binary searches at a scrape, never a
scan of customers), and windowed counts of cases by answer time.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from salespulse.agents.base import ApplyContext, Event, ExportContext, Sample, Series, in_window, ratio
from salespulse.agents.customers import CustomerIndex, TextColumn, fill_to, value_at
from salespulse.agents.rolling import HOUR, WINDOW_NAMES, WINDOWS, Clock, WindowedCounter
from salespulse.schemas.event_time import format_time
from salespulse.schemas.topics import ACTIVITIES, DEALS, SURVEYS

DEFAULT_SLA: Final = 24 * 3600
DEFAULT_HUMAN_CHANNELS: Final = ("call", "email", "meeting", "support")
UNASSIGNED: Final = "unassigned"
STATUSES: Final = ("open", "followed_up", "all")
#: Columns of the windowed case counts, by answer time.
STAGES: Final = ("opened", "followed_up", "followed_up_in_target")

_ID_BITS: Final = 32
_ID_MASK: Final = (1 << _ID_BITS) - 1
_OFFSET_BITS: Final = 44
_OFFSET_MASK: Final = (1 << _OFFSET_BITS) - 1
#: An answer's offset column holds ``offset << _SCORE_BITS | score``.
_SCORE_BITS: Final = 4
_SCORE_MASK: Final = (1 << _SCORE_BITS) - 1


def _pack(t: int, offset: int, channel: int) -> int:
    """An activity as one int; ``(t, offset)`` order is its order, so "newer" is one compare."""
    return ((t << _OFFSET_BITS) | offset) << _ID_BITS | channel


def _time(packed: int) -> int:
    return packed >> (_ID_BITS + _OFFSET_BITS)


@dataclass(frozen=True)
class Policy:
    """The follow-up target and which activity channels are a human follow-up."""

    sla_seconds: int = DEFAULT_SLA
    human_channels: frozenset[str] = frozenset(DEFAULT_HUMAN_CHANNELS)


class Names:
    """Small ids for the few distinct regions, products, reps and channels."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = []

    def id(self, name: str) -> int:
        i = self.ids.get(name)
        if i is None:
            i = self.ids[name] = len(self.names)
            self.names.append(name)
        return i


@dataclass(frozen=True)
class Case:
    """One customer's case as the list shows it."""

    customer_id: str
    t: int
    score: int
    comment: str | None
    response_id: str | None
    region: str
    product: str
    owner: str
    followed_up_at: int | None
    channel: str | None

    def view(self, now: int) -> dict[str, Any]:
        end = now if self.followed_up_at is None else self.followed_up_at
        return {
            "customer_id": self.customer_id,
            "score": self.score,
            "comment": self.comment,
            "response_id": self.response_id,
            "answered_at": format_time(self.t),
            "region": self.region,
            "product": self.product,
            "owner": self.owner,
            "followed_up_at": None if self.followed_up_at is None else format_time(self.followed_up_at),
            "channel": self.channel,
            "hours_open": round((end - self.t) / HOUR, 2),
        }


#: What a case adds to the derived state: (answer time, region label, owner label, follow-up time).
Contribution = tuple[int, str, str, int | None]
#: An answer's comment and response id.
Note = tuple[str | None, str | None]


class DetractorState:
    """One partition's answers, owners and follow-ups, plus what is derived from them.

    The latest answer, the latest deal and the earliest activity kept are packed columns by
    the partition's customer rows (``agents/customers.py``, whose ids the case list shows);
    each ends at the last row that has a value in it. Comments and response ids are a text
    column (as JSON). The later activities are a dict by row, holding only the customers that
    have any.
    """

    def __init__(self, policy: Policy, customers: CustomerIndex) -> None:
        self.policy = policy
        self.names = Names()
        self.index = customers
        # The latest answer: time, offset << 4 | score (-1: none yet), region and product name ids.
        self.answer_t: array[int] = array("q")
        self.answer_off: array[int] = array("q")
        self.answer_region: array[int] = array("i")
        self.answer_product: array[int] = array("i")
        # The latest deal: time, offset (-1: none yet), rep name id. These reach only as far
        # as the last row with a deal: customers who answer surveys but never bought (about
        # 20 bytes a customer) cost nothing here.
        self.owner_t: array[int] = array("q")
        self.owner_off: array[int] = array("q")
        self.owner_rep: array[int] = array("i")
        #: ``[comment, response id]`` of the latest answer, as JSON, where it has either.
        self.notes = TextColumn()
        # The earliest activity kept: time, offset (-1: none), channel name id; later ones packed.
        self.follow_t: array[int] = array("q")
        self.follow_off: array[int] = array("q")
        self.follow_ch: array[int] = array("i")
        self.later: dict[int, tuple[int, ...]] = {}
        self.dirty: dict[str, dict[int, str]] = {"answer": {}, "owner": {}, "follow": {}}
        # Derived: answer times of open and of followed-up cases by (region, owner) label,
        # sorted; an array('q') is 8 bytes a case, a list of ints 40.
        self.open: dict[tuple[str, str], array[int]] = {}
        self.followed: dict[tuple[str, str], array[int]] = {}
        self.cases = WindowedCounter("cases", (), len(STAGES), persisted=False)

    def _row(self, customer: str) -> int:
        """The customer's row, its columns (no answer, no activity kept) reaching it."""
        row = self.index.row(customer)
        if row >= len(self.answer_off):
            for col in (self.answer_t, self.answer_off, self.follow_t, self.follow_off):
                fill_to(col, row, -1)
            for names in (self.answer_region, self.answer_product, self.follow_ch):
                fill_to(names, row, 0)
        return row

    def _owner(self, row: int) -> str:
        """The rep of the customer's latest deal, or ``unassigned`` without a deal."""
        return UNASSIGNED if value_at(self.owner_off, row) < 0 else self.names.names[self.owner_rep[row]]

    def _score(self, row: int) -> int:
        """The latest answer's score, or 10 (no case) without an answer."""
        off = self.answer_off[row]
        return 10 if off < 0 else off & _SCORE_MASK

    # -- derived state ---------------------------------------------------------------
    def _contribution(self, row: int, ctx: ApplyContext) -> Contribution | None:
        if self._score(row) >= 7:
            return None
        names = self.names.names
        region = ctx.fold("region", names[self.answer_region[row]])
        followed = None if self.follow_off[row] < 0 else self.follow_t[row]
        return self.answer_t[row], region, ctx.fold("owner", self._owner(row)), followed

    def _account(self, c: Contribution | None, sign: int, clock: Clock) -> None:
        if c is None or clock.is_late(c[0]):
            return
        t, region, owner, followed = c
        cases = self.open if followed is None else self.followed
        times = cases.get((region, owner))
        if times is None:
            times = cases[(region, owner)] = array("q")
        if sign > 0:
            bisect.insort(times, t)
        else:
            i = bisect.bisect_left(times, t)
            if i == len(times) or times[i] != t:
                return  # accounted while late (a clock that stepped back): nothing to take back
            del times[i]
        in_target = followed is not None and followed - t <= self.policy.sla_seconds
        vec = [sign, sign if followed is not None else 0, sign if in_target else 0]
        self.cases.adjust(t, (), vec, clock)

    def _change(self, row: int, ctx: ApplyContext, change: Callable[..., bool], *args: Any) -> bool:
        """Apply ``change(row, *args)``; if it changed anything, move the case's share."""
        before = self._contribution(row, ctx)
        if not change(row, *args):
            return False
        after = self._contribution(row, ctx)
        if before != after:
            self._account(before, -1, ctx.clock)
            self._account(after, 1, ctx.clock)
        return True

    # -- the three families ------------------------------------------------------------
    def _set_answer(
        self, row: int, t: int, off: int, region: int, product: int, note: Note | None, oldest: int
    ) -> bool:
        old = self.answer_off[row]
        if old >= 0 and (self.answer_t[row], old >> _SCORE_BITS) >= (t, off >> _SCORE_BITS):
            return False
        self.answer_t[row], self.answer_off[row] = t, off
        self.answer_region[row], self.answer_product[row] = region, product
        self.notes.set(row, None if note is None else orjson.dumps(note))
        self._set_follow(row, self._follow(row), oldest)
        return True

    def _set_owner(self, row: int, t: int, offset: int, rep: int) -> bool:
        old = value_at(self.owner_off, row)  # -1 without a deal
        if old >= 0 and (self.owner_t[row], old) >= (t, offset):
            return False
        fill_to(self.owner_t, row, -1)
        fill_to(self.owner_off, row, -1)
        fill_to(self.owner_rep, row, 0)
        self.owner_t[row], self.owner_off[row], self.owner_rep[row] = t, offset, rep
        return True

    def _set_follow(self, row: int, times: Iterable[int], oldest: int) -> bool:
        """Keep the activities after the latest answer's time (all, before any answer) that
        are not older than ``oldest``, the retention's first second."""
        after = oldest - 1 if self.answer_off[row] < 0 else max(oldest - 1, self.answer_t[row])
        kept = tuple(sorted(p for p in times if _time(p) > after))
        if kept == self._follow(row):
            return False
        if kept:
            first = kept[0]
            self.follow_t[row], self.follow_ch[row] = _time(first), first & _ID_MASK
            self.follow_off[row] = (first >> _ID_BITS) & _OFFSET_MASK
        else:
            self.follow_off[row] = -1
        if len(kept) > 1:
            self.later[row] = kept[1:]
        else:
            self.later.pop(row, None)
        return True

    def _follow(self, row: int) -> tuple[int, ...]:
        """The activities kept, packed and sorted."""
        off = self.follow_off[row]
        if off < 0:
            return ()
        first = _pack(self.follow_t[row], off, self.follow_ch[row])
        return (first, *self.later.get(row, ()))

    def offer_answer(
        self, customer: str, rec: Sequence[Any], ctx: ApplyContext, *, restored: bool = False
    ) -> None:
        """Take an answer ``[t, offset, score, region, product, comment, response_id]`` if newest."""
        t, offset, score, region, product, comment, response = rec
        row = self._row(customer)
        note = None if comment is None and response is None else (comment, response)
        ids = self.names.id(region), self.names.id(product)
        oldest = ctx.clock.oldest_hour * HOUR
        changed = self._change(
            row, ctx, self._set_answer, t, offset << _SCORE_BITS | score, *ids, note, oldest
        )
        if changed and not restored:
            self.dirty["answer"][row] = customer

    def offer_owner(
        self, customer: str, rec: Sequence[Any], ctx: ApplyContext, *, restored: bool = False
    ) -> None:
        """Take a deal's ``[t, offset, rep]`` if it is the customer's latest."""
        t, offset, rep = rec
        row = self._row(customer)
        if self._change(row, ctx, self._set_owner, t, offset, self.names.id(rep)) and not restored:
            self.dirty["owner"][row] = customer

    def offer_activity(self, customer: str, t: int, offset: int, channel: str, ctx: ApplyContext) -> None:
        if ctx.clock.is_late(t):
            return
        row = self._row(customer)
        packed = _pack(t, offset, self.names.id(channel))
        times = self._follow(row)
        oldest = ctx.clock.oldest_hour * HOUR
        if packed not in times and self._change(row, ctx, self._set_follow, (*times, packed), oldest):
            self.dirty["follow"][row] = customer

    def restore_follow(self, customer: str, flat: list[Any], ctx: ApplyContext) -> None:
        """Set the activities read back as ``[t, offset, channel, ...]`` (the newest record wins;
        a tombstone is an empty one)."""
        times = [_pack(flat[i], flat[i + 1], self.names.id(flat[i + 2])) for i in range(0, len(flat), 3)]
        self._change(self._row(customer), ctx, self._set_follow, times, ctx.clock.oldest_hour * HOUR)

    # -- persistence -----------------------------------------------------------------
    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[Any] | None]]:
        family = FAMILY_OF.get(topic)
        if family is None:
            return
        dirty = self.dirty[family]
        for row, customer in dirty.items():
            # Answers and owners are never empty; a customer's activities all gone is a tombstone.
            yield [family, customer], self._record(family, row) or None
        dirty.clear()

    def _record(self, family: str, row: int) -> list[Any]:
        names = self.names.names
        if family == "follow":
            flat: list[Any] = []
            for p in self._follow(row):
                flat += (_time(p), (p >> _ID_BITS) & _OFFSET_MASK, names[p & _ID_MASK])
            return flat
        if family == "owner":
            return [self.owner_t[row], self.owner_off[row], names[self.owner_rep[row]]]
        off = self.answer_off[row]
        comment, response = self.note(row) or (None, None)
        return [
            self.answer_t[row],
            off >> _SCORE_BITS,
            off & _SCORE_MASK,
            names[self.answer_region[row]],
            names[self.answer_product[row]],
            comment,
            response,
        ]

    def restore(self, topic: str, key: list[Any], rec: list[Any] | None, ctx: ApplyContext) -> None:
        family, customer = key
        if family == "follow":
            self.restore_follow(customer, rec or [], ctx)
        elif rec is None:  # latest answers and deals never expire, so they never get a tombstone
            return
        elif family == "answer":
            self.offer_answer(customer, rec, ctx, restored=True)
        else:
            self.offer_owner(customer, rec, ctx, restored=True)

    # -- reading ---------------------------------------------------------------------
    def overdue(self, clock: Clock) -> int:
        oldest, due = clock.oldest_hour * HOUR, clock.now - self.policy.sla_seconds
        return sum(
            max(0, bisect.bisect_left(times, due) - bisect.bisect_left(times, oldest))
            for times in self.open.values()
        )

    def open_by_label(self, clock: Clock) -> Iterator[tuple[tuple[str, str], int]]:
        """Open cases within retention per (region, owner) label of every current case."""
        oldest = clock.oldest_hour * HOUR
        for label in self.open.keys() | self.followed.keys():
            times = self.open.get(label, ())
            n = len(times) - bisect.bisect_left(times, oldest)
            followed = self.followed.get(label, ())
            if n or len(followed) > bisect.bisect_left(followed, oldest):
                yield label, n

    def case(self, row: int) -> Case | None:
        """The customer's case, if their latest answer is a detractor."""
        score = self._score(row)
        if score >= 7:
            return None
        names = self.names.names
        comment, response = self.note(row) or (None, None)
        followed = self.follow_off[row] >= 0
        return Case(
            customer_id=self.index.customer(row),
            t=self.answer_t[row],
            score=score,
            comment=comment,
            response_id=response,
            region=names[self.answer_region[row]],
            product=names[self.answer_product[row]],
            owner=self._owner(row),
            followed_up_at=self.follow_t[row] if followed else None,
            channel=names[self.follow_ch[row]] if followed else None,
        )

    def note(self, row: int) -> Note | None:
        """The comment and response id of the latest answer of the customer at ``row``, if it
        has either."""
        text = self.notes.get(row)
        if text is None:
            return None
        comment, response = orjson.loads(text)
        return comment, response

    def listed(self, clock: Clock, window: str, status: str) -> Iterator[Case]:
        for row in range(len(self.answer_off)):
            case = self.case(row)
            if case is None or not in_list_window(clock, case.t, window):
                continue
            if status == "all" or (status == "open") == (case.followed_up_at is None):
                yield case


FAMILY_OF: Final = {SURVEYS: "answer", DEALS: "owner", ACTIVITIES: "follow"}


def in_list_window(clock: Clock, t: int, window: str) -> bool:
    """The windows' own rule on answer time (see agents/rolling.py); ``all`` is the retention."""
    if window == "all":
        return not clock.is_late(t)
    size, minute = next((n, m) for name, n, m in WINDOWS if name == window)
    if minute:
        return clock.minute - size < t // 60 <= clock.minute
    return clock.hour - size < t // HOUR <= clock.hour


def order_cases(cases: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open cases first, oldest answer first; the same order for one worker and merged."""
    return sorted(cases, key=lambda c: (c["followed_up_at"] is not None, c["answered_at"], c["customer_id"]))


class DetractorsKpi:
    name = "detractors"
    title = "Detractor follow-up"
    event_types = frozenset({"survey.answered", "customer.activity", "deal.won"})
    topics = frozenset({SURVEYS, ACTIVITIES, DEALS})

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()

    def new_state(self, customers: CustomerIndex) -> DetractorState:
        return DetractorState(self.policy, customers)

    def apply(self, state: DetractorState, event: Event, ctx: ApplyContext) -> None:
        d = event.data
        kind = event.type
        if kind == "customer.activity":
            if d["channel"] in self.policy.human_channels:
                state.offer_activity(d["customer_id"], event.t, event.offset, d["channel"], ctx)
        elif kind == "deal.won":
            state.offer_owner(d["customer_id"], (event.t, event.offset, d["rep_id"]), ctx)
        elif d["survey"] == "nps":
            rec = (
                event.t,
                event.offset,
                d["score"],
                d["region"],
                d["product"],
                d.get("comment"),
                d.get("response_id"),
            )
            state.offer_answer(d["customer_id"], rec, ctx)

    def samples(self, states: Sequence[DetractorState], ctx: ExportContext) -> Iterator[Sample]:
        clock = ctx.clock
        open_cases: dict[tuple[str, str], int] = {}
        for s in states:
            for label, n in s.open_by_label(clock):
                open_cases[label] = open_cases.get(label, 0) + n
        for (region, owner), n in sorted(open_cases.items()):
            yield "salespulse_detractors_open", {"region": region, "owner": owner}, float(n)
        yield "salespulse_detractors_overdue", {}, float(sum(s.overdue(clock) for s in states))
        for window in WINDOW_NAMES:
            totals = [0] * len(STAGES)
            for s in states:
                vec = s.cases.window_at(clock, window).get((), [0] * len(STAGES))
                totals = [a + b for a, b in zip(totals, vec, strict=True)]
            for stage, n in zip(STAGES, totals, strict=True):
                yield "salespulse_detractor_cases", {"window": window, "stage": stage}, float(n)

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        stages = series.group("salespulse_detractor_cases", "stage", w)
        opened, followed, in_target = (stages.get(s, 0.0) for s in STAGES)
        return {
            "open": series.total("salespulse_detractors_open"),
            "overdue": series.total("salespulse_detractors_overdue"),
            "open_by_owner": series.group("salespulse_detractors_open", "owner"),
            "cases_opened": opened,
            "cases_followed_up": followed,
            "cases_followed_up_in_target": in_target,
            "follow_up_rate": ratio(followed, opened),
            "follow_up_in_target_rate": ratio(in_target, opened),
        }


KPI: DetractorsKpi = DetractorsKpi()
