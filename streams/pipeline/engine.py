"""Applies batches of records to the KPI states, exactly once per event.

Exactness without Kafka transactions (design brief, section 4): every state record carries
the source offset it has applied up to and is skipped record by record on replay; event
ids are remembered with the offset they were first seen at (expiring with the event-time
hour of that first copy), so a duplicate is recognised whatever its ``occurred_at`` and a
replay of the original is not mistaken for one. Deal outcomes and survey responses are
remembered the same way by what they are (``outcomes.py``), for years: a deal's second win
is a duplicate whatever its event id and time.

Keyed state is exact only if each key lives on one partition. A record whose key belongs
on another partition (a producer with another partitioner) is not applied where it
arrived: it is forwarded to its right partition and applied there. Its forward is acked
before the changelog that marks its offset applied is written, so a replay never needs
to forward it again, and a copy sent twice anyway is the same event id, which dedupe
drops. A deal that closes an opportunity is applied on its own partition and forwarded
the same way to the opportunity's partition of ``crm.leads``, where only the KPIs that take
closes there (the forecast) apply it. The engine knows nothing of Kafka clients: it turns
records into changelog records, forwards and dead letters, and the consumer writes those
before it acks the source offsets.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from salespulse.agents.base import (
    ApplyContext,
    Event,
    ExportContext,
    Kpi,
    KpiState,
    LabelFolder,
    Sample,
    Series,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.detractors import order_cases
from salespulse.agents.forecast import ForecastKpi
from salespulse.agents.forecast_numbers import QueryError, parse_query, share
from salespulse.agents.money import Rates, money_fields, normalize
from salespulse.agents.registry import KPIS
from salespulse.agents.rolling import HOUR, OUTCOME_MEMORY, WINDOW_NAMES, Clock
from salespulse.schemas import EVENT_TYPES
from salespulse.schemas.codec import (
    FORWARDED_FROM,
    MAX_CLOCK_SKEW,
    REASONS,
    Rejected,
    check_not_future,
    check_route,
    decode,
)
from salespulse.schemas.event_time import format_time, parse_time
from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import CLOSES, INPUT_TOPICS, close_route
from salespulse.schemas.validator import SCHEMA_DIR, schema_files
from salespulse.streams.pipeline.outcomes import COUNTED_ONCE, OUTCOME_TOPICS, OutcomeMemory
from salespulse.streams.pipeline.seen_ids import SeenIds

#: A survey comment longer than this many characters is cut to it (and counted), never rejected.
COMMENT_CHARS = 2000

# Changelog records are encoded with msgspec's reusable encoder: the same JSON as orjson,
# but orjson.dumps cost about 2 us a call inside a worker's large heap, against 0.2 us for
# this, and there are about 1.3 records an event. Restore reads them with msgspec too: sums of
# money can pass 2**64, which orjson would read back as a float.
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

#: Event type -> the field holding its money, turned into integer units before any KPI sees it.
MONEY_FIELDS: dict[str, str] = money_fields(
    json.loads(path.read_text(encoding="utf-8")) for path in schema_files(SCHEMA_DIR)
)


class Record(Protocol):
    """What the engine needs of a consumed Kafka record."""

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> int | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


@dataclass(frozen=True)
class MessageRecord:
    """A faust message seen as a :class:`Record` (faust keeps timestamps in seconds)."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None
    headers: Sequence[tuple[str, bytes | None]] = ()

    @classmethod
    def of(cls, message: Any) -> MessageRecord:
        ts = message.timestamp
        millis = None if ts is None else int(ts * 1000)
        return cls(message.offset, message.key, message.value, millis, list(message.headers or ()))


@dataclass
class DeadLetter:
    """A rejected message, bound for ``crm.deadletter`` with its reason in headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("salespulse.reason", self.reason.encode()),
            ("salespulse.detail", self.detail.encode()[:1024]),
            ("salespulse.source", f"{self.topic}/{self.partition}/{self.offset}".encode()),
        ]


@dataclass
class Forward:
    """A record that arrived on a partition its key does not belong to, bound for the right one.

    It goes unchanged (key, value, headers, record timestamp, so latency includes the hop),
    with one more header naming where it arrived.
    """

    topic: str
    partition: int
    key: bytes
    value: bytes | None
    timestamp: int | None
    headers: list[tuple[str, bytes]]


class ReadRefused(ValueError):
    """A read asked for a clock the state cannot answer for (too far ahead, or before retention)."""


@dataclass
class Output:
    """What a batch produced: changelog records (a ``None`` value is a tombstone), forwards and
    dead letters, to be written first."""

    changelog: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    #: Record timestamps (ms) of the events applied, and when they were applied (ms).
    timestamps: list[int] = field(default_factory=list)
    applied_ms: float = 0.0

    def latencies(self) -> list[float]:
        """Event-to-state latency of each applied event, in seconds."""
        return [max(0.0, self.applied_ms - ts) / 1000.0 for ts in self.timestamps]


@dataclass
class TopicMeta:
    """Per source partition: applied offset, newest event time and the event counters."""

    offset: int = -1
    newest: int = 0
    events: dict[str, int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rerouted: int = 0
    truncated: int = 0
    #: Money values finer than their unit, rounded half to even, by stored currency.
    rounded: dict[str, int] = field(default_factory=dict)
    #: Money events applied with no rate into the reporting currency, by stored currency.
    unconverted: dict[str, int] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        return {
            "o": self.offset,
            "t": self.newest,
            "events": self.events,
            "late": self.late,
            "rejected": self.rejected,
            "dups": self.duplicates,
            "rr": self.rerouted,
            "tr": self.truncated,
            "rd": self.rounded,
            "fx": self.unconverted,
        }

    @classmethod
    def decode(cls, value: dict[str, Any]) -> TopicMeta:
        return cls(
            value["o"],
            value["t"],
            value["events"],
            value["late"],
            value["rejected"],
            value["dups"],
            value.get("rr", 0),  # written before rerouting existed
            value.get("tr", 0),  # written before survey comments existed
            value.get("rd", {}),  # written before exact money existed
            value.get("fx", {}),  # written before the unconverted counter existed
        )


class PartitionState:
    """Everything kept for one partition number, across the input topics."""

    def __init__(self, partition: int, kpis: Sequence[Kpi]) -> None:
        self.partition = partition
        self.customers = CustomerIndex()
        self.kpis: dict[str, KpiState] = {kpi.name: kpi.new_state(self.customers) for kpi in kpis}
        # Keyed by source topic; a topic outside the contract only ever yields dead letters.
        self.meta: defaultdict[str, TopicMeta] = defaultdict(TopicMeta)
        self.seen: defaultdict[str, SeenIds] = defaultdict(SeenIds)
        for topic in INPUT_TOPICS:
            self.meta[topic], self.seen[topic] = TopicMeta(), SeenIds()
        self.outcomes = {topic: OutcomeMemory() for topic in OUTCOME_TOPICS}

    @property
    def newest(self) -> int:
        return max(m.newest for m in self.meta.values())


class Engine:
    """The KPI states of every partition this process holds, active or standby."""

    def __init__(
        self,
        *,
        clock: str = "wall",
        label_cap: int = 50,
        max_event_bytes: int = 64 * 1024,
        targets: dict[tuple[str, str], float] | None = None,
        kpis: Sequence[Kpi] = KPIS,
        partitions: int = 1,
        max_clock_skew: int = MAX_CLOCK_SKEW,
        outcome_memory: int = OUTCOME_MEMORY,
    ) -> None:
        self.kpis = tuple(kpis)
        self.max_clock_skew = max_clock_skew
        #: Hours a deal outcome or survey response is remembered, counted like retention's.
        self.outcome_hours = max(1, outcome_memory // HOUR)
        #: Partitions of each input topic, which decide where a key belongs; the worker
        #: keeps them to what the broker's metadata says.
        self.partition_counts: dict[str, int] = dict.fromkeys(INPUT_TOPICS, partitions)
        self.clock_mode = clock
        self.fixed_clock = None if clock in {"wall", "stream"} else Clock(parse_time(clock))
        self._context: ApplyContext | None = None
        self.fold = LabelFolder(label_cap)
        self.max_event_bytes = max_event_bytes
        self.targets = targets or {}
        #: The reporting currency and its rates; the worker swaps in a new object when the
        #: rates file changes (reads take it as it is, nothing in the state depends on it).
        self.fx = Rates()
        self.partitions: dict[int, PartitionState] = {}
        self.by_topic: dict[str, list[Kpi]] = {
            topic: [k for k in self.kpis if topic in k.topics] for topic in INPUT_TOPICS
        }
        #: Per topic, per event type, the KPIs that apply it there.
        self.dispatch: dict[str, dict[str, list[Kpi]]] = {
            topic: {
                t: [k for k in self.kpis if t in k.event_types and topic in k.topics] for t in EVENT_TYPES
            }
            for topic in INPUT_TOPICS
        }
        self.close_routes = self._close_routes(None)

    # -- clock -----------------------------------------------------------------------
    def clock(self) -> Clock:
        """The clock: fixed, the newest event time this process holds (``stream``), or wall.

        The stream clock spans every partition held, standbys included, so it only moves
        forward within a process and applying and exporting see the same clock.
        """
        if self.fixed_clock is not None:
            return self.fixed_clock
        if self.clock_mode == "stream":
            return Clock(max((s.newest for s in self.partitions.values()), default=0))
        return Clock(int(time.time()))

    def context(self) -> ApplyContext:
        """What a batch or a changelog record is applied with; reused while the clock stands."""
        clock = self.clock()
        ctx = self._context
        if ctx is None or ctx.clock != clock:
            ctx = self._context = ApplyContext(clock, self.fold)
        return ctx

    def state(self, partition: int) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:
            state = self.partitions[partition] = PartitionState(partition, self.kpis)
        return state

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions this process holds neither actively nor as a standby."""
        for p in partitions:
            self.partitions.pop(p, None)

    # -- applying --------------------------------------------------------------------
    def apply(
        self, topic: str, partition: int, records: Sequence[Record], *, only: Kpi | None = None
    ) -> Output:
        """Apply one partition's records in offset order; return what must be written."""
        out = Output()
        if not records:
            return out
        state = self.state(partition)
        meta = state.meta[topic]
        seen = state.seen[topic]
        outcomes = state.outcomes.get(topic)
        partitions = self.partition_counts.get(topic, 1)
        ctx = self.context()
        clock = ctx.clock
        kpi_states = state.kpis
        if only is None:
            dispatch, close_routes = self.dispatch.get(topic, {}), self.close_routes
        else:
            dispatch = {t: [only] for t in only.event_types} if topic in only.topics else {}
            close_routes = self._close_routes(only)
        out.applied_ms = time.time() * 1000.0
        timestamps = out.timestamps
        oldest_hour = clock.oldest_hour
        forgotten = self.forgotten_hour(clock)
        if outcomes is not None:
            outcomes.expire(forgotten)  # first: an outcome past the memory is a new one
        max_skew = self.max_clock_skew
        for record in records:
            offset = record.offset
            fresh = offset > meta.offset
            key = record.key
            written = record.timestamp
            try:
                raw, t = decode(record.value, self.max_event_bytes)
                check_not_future(t, written, max_skew)
                closes = check_route(raw, topic, key, record.headers)
                # check_route has checked the key is the contract's, so it is not None.
                right = partition_for(key, partitions) if key is not None else partition
                if right != partition:
                    forward = self._forward(topic, partition, right, partitions, record)
                    # A replayed record was forwarded already: the worker writes a batch's
                    # changelog only once its forwards are acked.
                    if fresh:
                        meta.rerouted += 1
                        out.forwards.append(forward)
                    continue
            except Rejected as exc:
                if fresh:
                    meta.rejected[exc.reason] = meta.rejected.get(exc.reason, 0) + 1
                    out.deadletters.append(
                        DeadLetter(
                            topic,
                            partition,
                            offset,
                            record.key,
                            record.value,
                            exc.reason,
                            exc.detail,
                        )
                    )
                continue
            kind = raw["type"]
            hour = t // HOUR
            late = hour < oldest_hour
            # An id seen within retention is a duplicate whatever this copy's time.
            if seen.offered(hour, raw["event_id"], offset, late) < offset:
                # A close forwarded again (its worker stopped before its changelog) is no
                # duplicate of the source: that one was counted where it was sent.
                if fresh and not closes:
                    meta.duplicates += 1
                continue
            data = raw["data"]
            if closes:  # counted once, as the deal it is, where it was sent
                event = Event(kind, t, offset, data, late, False, True)
                for kpi in dispatch.get(kind, ()):
                    kpi.apply(kpi_states[kpi.name], event, ctx)
                continue
            repeat = False
            if outcomes is not None:
                # An outcome first applied at a lower offset (within the memory, late or not)
                # is a duplicate whatever its event id and time; a response is a repeat.
                name, tag = COUNTED_ONCE[kind]
                once = data.get(name)
                if once is not None and outcomes.offered(hour, tag + once, offset, hour < forgotten) < offset:
                    if kind != "survey.answered":
                        if fresh:
                            meta.duplicates += 1
                        continue
                    repeat = True
            if fresh:
                meta.events[kind] = meta.events.get(kind, 0) + 1
                if late:
                    meta.late[kind] = meta.late.get(kind, 0) + 1
                meta.newest = max(meta.newest, t)
            money = MONEY_FIELDS.get(kind)
            if money is not None:
                rounded = normalize(data, money)
                if fresh:
                    currency = data["currency"]
                    if rounded:
                        label = self.fold("currency", currency)
                        meta.rounded[label] = meta.rounded.get(label, 0) + 1
                    if self.fx.unconverted(kind, currency, t):
                        label = self.fold("currency", currency)
                        meta.unconverted[label] = meta.unconverted.get(label, 0) + 1
            if kind == "survey.answered":
                self._cut_comment(data, meta if fresh else None)
            event = Event(kind, t, offset, data, late, repeat)
            for kpi in dispatch.get(kind, ()):
                kpi.apply(kpi_states[kpi.name], event, ctx)
            if fresh:
                to = close_routes.get(kind)
                if to is not None and to[1] in data:
                    self._forward_close(raw, topic, partition, record, out)
                if written is not None:
                    timestamps.append(written)
        last = records[-1].offset
        meta.offset = max(meta.offset, last)
        seen.expire(oldest_hour)
        out.changelog = list(self._changelog(state, topic, last, clock))
        return out

    def forgotten_hour(self, clock: Clock) -> int:
        """The oldest event-time hour whose outcomes are still remembered at ``clock``."""
        return clock.hour - self.outcome_hours + 1

    def _close_routes(self, only: Kpi | None) -> dict[str, tuple[str, str]]:
        """The closes to forward (their topic and key field): those a KPI in play takes on the
        topic they are forwarded to."""
        return {
            kind: to
            for kind, to in CLOSES.items()
            if any(only is None or kpi is only for kpi in self.dispatch[to[0]][kind])
        }

    def _forward_close(
        self, event: dict[str, Any], topic: str, partition: int, record: Record, out: Output
    ) -> None:
        """Forward a deal that names its opportunity to the opportunity's partition: unchanged,
        keyed by the opportunity, with where it was applied as its forwarded-from header."""
        to = close_route(event)
        if to is None:
            return
        to_topic, key = to
        headers = [(k, v if v is not None else b"") for k, v in record.headers if k != FORWARDED_FROM]
        headers.append((FORWARDED_FROM, f"{topic}/{partition}/{record.offset}".encode()))
        right = partition_for(key, self.partition_counts.get(to_topic, 1))
        out.forwards.append(Forward(to_topic, right, key, record.value, record.timestamp, headers))

    @staticmethod
    def _cut_comment(data: dict[str, Any], meta: TopicMeta | None) -> None:
        """Cut a long survey comment (counted once, when ``meta`` is given)."""
        comment = data.get("comment")
        if comment is not None and len(comment) > COMMENT_CHARS:
            data["comment"] = comment[:COMMENT_CHARS]
            if meta is not None:
                meta.truncated += 1

    @staticmethod
    def _forward(topic: str, partition: int, right: int, partitions: int, record: Record) -> Forward:
        """The forward of a record on the wrong partition; a second hop is refused."""
        headers = [(k, v if v is not None else b"") for k, v in record.headers]
        came_from = next((v.decode(errors="replace") for k, v in headers if k == FORWARDED_FROM), None)
        if came_from is not None:
            raise Rejected(
                "wrong_partition",
                f"forwarded from {came_from} to {topic}/{partition}, but its key belongs on partition"
                f" {right} of {partitions}: the partition count changed under it",
            )
        headers.append((FORWARDED_FROM, f"{topic}/{partition}/{record.offset}".encode()))
        assert record.key is not None
        return Forward(topic, right, record.key, record.value, record.timestamp, headers)

    def _changelog(
        self, state: PartitionState, topic: str, last: int, clock: Clock
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """The batch's changelog records: what changed, and a tombstone for what expired."""
        p = state.partition
        dumps = _encode
        for kpi in self.by_topic.get(topic, ()):
            # Keys share their first three items: encode those once, not once per record.
            # The bytes are those of dumps([topic, p, kpi.name, *suffix]) (no spaces).
            head = dumps([topic, p, kpi.name])[:-1] + b","
            for suffix, rec in state.kpis[kpi.name].drain(topic, last, clock):
                yield head + dumps(suffix)[1:], None if rec is None else dumps(rec)
        for key, chunk in state.seen[topic].drain():
            yield dumps([topic, p, "seen", key]), None if chunk is None else dumps(chunk)
        outcomes = state.outcomes.get(topic)
        if outcomes is not None:
            for tag, number, triples in outcomes.drain():
                yield dumps([topic, p, "outcomes", tag, number]), None if triples is None else dumps(triples)
        yield dumps([topic, p, "meta"]), dumps(state.meta[topic].encode())

    # -- recovery --------------------------------------------------------------------
    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record read back by faust's recovery; a tombstone (``None``)
        removes what its key held, so a full replay ends where its compacted copy starts."""
        k = _decode(key)
        v = None if value is None else _decode(value)
        topic, partition, kind = k[0], k[1], k[2]
        state = self.state(partition)
        ctx = self.context()
        if kind == "meta":
            restored = None if v is None else TopicMeta.decode(v)
            if restored is not None and restored.offset >= state.meta[topic].offset:
                state.meta[topic] = restored
        elif kind == "seen":
            state.seen[topic].restore(k[3], v, ctx.clock.oldest_hour)
        elif kind == "outcomes":
            state.outcomes[topic].restore_record(k[3], k[4], v, self.forgotten_hour(ctx.clock))
        else:
            state.kpis[kind].restore(topic, k[3:], v, ctx)

    # -- export ----------------------------------------------------------------------
    # Reads: each computes from the state and changes none of it (nor the changelog).

    def read_clock(self, at: int | None = None) -> Clock:
        """The clock a read is answered at: the worker's, or ``at`` (epoch seconds) within
        the retention and at most ``max_clock_skew`` ahead; :class:`ReadRefused` otherwise."""
        clock = self.clock()
        if at is None:
            return clock
        if at > clock.now + self.max_clock_skew:
            raise ReadRefused(
                f"at={at} ({format_time(at)}) is {at - clock.now}s after the worker's clock"
                f" ({format_time(clock.now)}); at most {self.max_clock_skew}s"
                " (SALESPULSE_MAX_CLOCK_SKEW) ahead can be read"
            )
        if clock.is_late(at):
            raise ReadRefused(
                f"at={at} ({format_time(at)}) is before the 62-day retention: the oldest clock"
                f" that can be read is {clock.oldest_hour * HOUR} ({format_time(clock.oldest_hour * HOUR)})"
            )
        return Clock(at)

    def samples(self, partitions: Iterable[int], at: int | None = None) -> Iterator[Sample]:
        """Gauge samples for the given (actively owned) partitions, now or at another clock
        (:meth:`read_clock`)."""
        owned = [self.partitions[p] for p in sorted(partitions) if p in self.partitions]
        ctx = ExportContext(self.read_clock(at), self.targets, self.fx, self.fold)
        for kpi in self.kpis:
            yield from kpi.samples([s.kpis[kpi.name] for s in owned], ctx)

    def counters(self, partitions: Iterable[int]) -> dict[str, Any]:
        """Event counters for the given partitions, every label initialised to 0.

        Labelled counters are maps from label value to count; ``duplicates`` has no label
        and is a plain number.
        """
        totals: dict[str, dict[str, int]] = {
            "events": dict.fromkeys(EVENT_TYPES, 0),
            "late": dict.fromkeys(EVENT_TYPES, 0),
            "rejected": dict.fromkeys(REASONS, 0),
            "rerouted": dict.fromkeys(INPUT_TOPICS, 0),
            "rounded": {},
            "unconverted": {},
        }
        duplicates = truncated = 0
        for p in partitions:
            state = self.partitions.get(p)
            if state is None:
                continue
            for topic, meta in state.meta.items():
                if meta.rerouted:
                    totals["rerouted"][topic] = totals["rerouted"].get(topic, 0) + meta.rerouted
                for name, counts in (
                    ("events", meta.events),
                    ("late", meta.late),
                    ("rejected", meta.rejected),
                    ("rounded", meta.rounded),
                    ("unconverted", meta.unconverted),
                ):
                    for label, n in counts.items():
                        totals[name][label] = totals[name].get(label, 0) + n
                duplicates += meta.duplicates
                truncated += meta.truncated
        return {**totals, "duplicates": duplicates, "comments_truncated": truncated}

    def progress(self, partitions: Iterable[int]) -> dict[str, Any]:
        """Cheap to compute: what has been applied, for polling during loads and tests."""
        parts = sorted(partitions)
        counters = self.counters(parts)
        applied = {
            f"{topic}/{p}": meta.offset
            for p in parts
            if p in self.partitions
            for topic, meta in self.partitions[p].meta.items()
        }
        return {
            "partitions": parts,
            "applied_offsets": applied,
            "events": sum(counters["events"].values()),
            "duplicates": counters["duplicates"],
            "rejected": sum(counters["rejected"].values()),
        }

    def kpis_view(self, partitions: Iterable[int], at: int | None = None) -> dict[str, Any]:
        """This worker's share: the raw series plus every KPI summarised per window.

        ``at`` looks back to an earlier clock using the retained buckets (62 days), which
        is how the digest gets previous periods and trends: hour resolution, except the
        ``1h`` window within the last two hours, and known customers are today's.
        """
        parts = sorted(partitions)
        clock = self.read_clock(at)
        series = Series()
        for name, labels, value in self.samples(parts, clock.now):
            series.add(name, labels, value)
        return {
            "clock": clock.now,
            "partitions": parts,
            "counters": self.counters(parts),
            "series": [[n, lab, v] for n, lab, v in series.rows()],
            "windows": summarize(series, self.kpis),
        }

    def profile(self, customer: str, partitions: Iterable[int]) -> dict[str, Any] | None:
        """A customer's profile: known, latest touches and latest NPS answer."""
        for p in partitions:
            state = self.partitions.get(p)
            row = -1 if state is None else state.customers.peek(customer)
            if state is None or row < 0:
                continue
            engagement: Any = state.kpis.get("engagement")
            nps: Any = state.kpis.get("nps")
            detractors: Any = state.kpis.get("detractors")
            touched = engagement is not None and (
                engagement.activity.at_row(row) is not None or engagement.deal.at_row(row) is not None
            )
            answer = None if nps is None else nps.latest.at_row(row)
            if touched or answer is not None:
                profile: dict[str, Any] = {"customer_id": customer, "partition": p}
                profile.update(engagement.profile(customer))
                if answer is not None:
                    profile["nps"] = {"score": answer[2], "occurred_at": answer[0]}
                    note = None if detractors is None else detractors.note(row)
                    if note is not None:
                        profile["nps"]["comment"], profile["nps"]["response_id"] = note
                return profile
        return None

    def forecast(self, partitions: Iterable[int], params: Mapping[str, str]) -> dict[str, Any]:
        """This worker's share of ``GET /forecast`` (``period``, ``by``, ``as_of``, ``from``,
        ``to``); :class:`ReadRefused` says what is wrong with a query it cannot answer."""
        kpi = next((k for k in self.kpis if isinstance(k, ForecastKpi)), None)
        if kpi is None:
            raise ReadRefused("this worker keeps no forecast")
        now = self.clock().now
        try:
            query = parse_query(kpi.policy.calendar, params, now, self.max_clock_skew)
        except QueryError as exc:
            raise ReadRefused(str(exc)) from None
        parts = sorted(partitions)
        states: list[Any] = [self.partitions[p].kpis[kpi.name] for p in parts if p in self.partitions]
        return share(states, kpi.plan, query, now, parts)

    def detractors(
        self, partitions: Iterable[int], status: str = "open", window: str = "30d"
    ) -> dict[str, Any]:
        """This worker's detractor cases (``GET /detractors``), open ones oldest first."""
        clock = self.clock()
        cases = []
        for p in sorted(partitions):
            state = self.partitions.get(p)
            kpi_state: Any = None if state is None else state.kpis.get("detractors")
            if kpi_state is not None:
                cases += [case.view(clock.now) for case in kpi_state.listed(clock, window, status)]
        return {"clock": clock.now, "window": window, "status": status, "cases": order_cases(cases)}


def summarize(series: Series, kpis: Sequence[Kpi] = KPIS) -> dict[str, dict[str, Any]]:
    """Headline numbers and ratios per window and KPI, from merged series."""
    return {w: {kpi.name: kpi.summarize(series, w) for kpi in kpis} for w in WINDOW_NAMES}
