"""What every KPI module provides, and the small helpers they share.

A KPI is a pure object: it knows which event types feed it, how one event changes its
per-partition state, which gauge samples that state exports, and how its headline numbers
and ratios follow from merged samples. The plumbing in ``streams/`` decodes, dedupes,
persists and serves; it never knows what a KPI computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from salespulse.agents.customers import CustomerIndex
from salespulse.agents.money import DAY, EXACT, Rates, major
from salespulse.agents.rolling import (
    HOUR,
    MINUTE,
    WINDOW_AT,
    WINDOW_NAMES,
    WINDOW_SECONDS,
    WINDOWS,
    Clock,
    Labels,
    Vector,
    WindowedCounter,
    add_into,
)

#: An exported value: a float, or an exact ``Decimal`` for money (``/metrics`` shows it as a
#: float, ``/kpis`` as a decimal string).
Value = float | Decimal
#: One exported gauge sample: metric name, sorted label pairs, value.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]
Sample = tuple[str, dict[str, str], Value]

#: The info series naming the reporting currency (value 1; static, aggregated with ``max``).
REPORTING_INFO = "salespulse_reporting_currency_info"
#: Events in a window whose amount has no rate, and that amount (``type``, ``currency``).
UNCONVERTED_EVENTS = "salespulse_fx_unconverted_events"
UNCONVERTED_AMOUNT = "salespulse_fx_unconverted_amount"


class Event:
    """A decoded, validated event as the KPIs see it.

    Built once per event, so a hand-written ``__init__``: mypyc compiles it, where a
    dataclass's generated one would run as interpreted Python (about 2,000 instructions).
    Windowed numbers skip a ``late`` event (older than retention) and a ``repeat`` (a
    survey answer whose ``response_id`` was already counted); profile state takes both. A
    ``closes`` event is a ``deal.won``/``deal.lost`` forwarded to its opportunity's partition
    of ``crm.leads``, which only the forecast takes.
    """

    __slots__ = ("closes", "data", "late", "offset", "repeat", "t", "type")

    def __init__(
        self,
        type: str,
        t: int,
        offset: int,
        data: dict[str, Any],
        late: bool,
        repeat: bool = False,
        closes: bool = False,
    ) -> None:
        self.type = type
        self.t = t
        self.offset = offset
        self.data = data
        self.late = late
        self.repeat = repeat
        self.closes = closes


@dataclass
class LabelFolder:
    """Caps distinct values per label (per worker); overflow folds into ``other``."""

    cap: int = 50
    seen: dict[str, dict[str, None]] = field(default_factory=dict)

    def __call__(self, label: str, value: str) -> str:
        values = self.seen.get(label)
        if values is None:
            values = self.seen[label] = {}
        if value in values:
            return value
        if len(values) < self.cap:
            values[value] = None
            return value
        return "other"

    def register(self, label: str, value: str) -> None:
        """Reserve a slot for a value that comes back from the changelog."""
        self(label, value)

    def peek(self, label: str, value: str) -> str:
        """The value as folded, for a read: a value the cap has not taken is ``other``, and
        nothing is taken (a read never writes)."""
        return value if value in self.seen.get(label, ()) else "other"


@dataclass
class ApplyContext:
    """What one batch is applied with: the clock and the label folder."""

    clock: Clock
    fold: LabelFolder


@dataclass
class ExportContext:
    """What an export is computed with."""

    clock: Clock
    targets: Mapping[tuple[str, str], float] = field(default_factory=dict)
    #: The reporting currency and its rates, applied as windows are read.
    fx: Rates = field(default_factory=Rates)
    #: The worker's label folder, for labels a KPI keeps unfolded (the forecast's reps).
    fold: LabelFolder | None = None


class KpiState(Protocol):
    """One partition's state for one KPI."""

    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[Any] | None]]:
        """Records of ``topic``'s families touched since the last drain, and a tombstone
        (``None``) for each of their keys whose state expired or closed since; families
        that expire by time are moved to the batch's ``clock`` first, touched or not."""
        ...

    def restore(self, topic: str, key: list[Any], rec: list[Any] | None, ctx: ApplyContext) -> None:
        """Apply one record read back from the changelog; ``None`` is a tombstone."""
        ...


class Kpi(Protocol):
    """One of the eight KPIs."""

    name: str
    title: str
    event_types: frozenset[str]
    topics: frozenset[str]

    def new_state(self, customers: CustomerIndex) -> KpiState:
        """A partition's empty state; ``customers`` is the partition's customer rows, which
        every per-customer column of its KPIs is indexed by (KPIs of counts ignore it)."""

    def apply(self, state: Any, event: Event, ctx: ApplyContext) -> None: ...

    def samples(self, states: Sequence[Any], ctx: ExportContext) -> Iterator[Sample]: ...

    def summarize(self, series: Series, window: str) -> dict[str, Any]: ...


def merged_window(counters: Iterable[WindowedCounter], window: str, clock: Clock) -> dict[Labels, Vector]:
    """Sum one window, at ``clock``, over several partitions' counters."""
    total: dict[Labels, Vector] = {}
    for counter in counters:
        for labels, vec in counter.window_at(clock, window).items():
            add_into(total, labels, vec)
    return total


def _seen(counters: Iterable[WindowedCounter], clock: Clock) -> set[Labels]:
    seen: set[Labels] = set()
    for counter in counters:
        seen |= counter.labels_seen(clock)
    return seen


def window_samples(
    counters: Sequence[WindowedCounter],
    metric: str,
    label_names: Sequence[str],
    columns: Sequence[tuple[dict[str, str], int, float]],
    clock: Clock,
) -> Iterator[Sample]:
    """Gauge samples for every window and every label tuple ever seen (0 when idle).

    ``columns`` maps vector positions to samples: (extra labels, index, scale). A scale of 0
    marks money: integer units of the ``currency`` label's currency, exported as an exact
    ``Decimal`` of its major unit.
    """
    sums_by_window = {w: merged_window(counters, w, clock) for w in WINDOW_NAMES}
    seen = _seen(counters, clock)
    currency = list(label_names).index("currency") if "currency" in label_names else -1
    for window, sums in sums_by_window.items():
        for labels in seen:
            vec = sums.get(labels)
            base = dict(zip(label_names, labels, strict=True))
            base["window"] = window
            for extra, index, scale in columns:
                value: Value
                if scale:
                    value = vec[index] / scale if vec else 0.0
                else:
                    value = major(vec[index] if vec else 0, labels[currency])
                yield metric, {**base, **extra}, value


def window_start(clock: Clock, window: str) -> int:
    """The first second of ``window`` at ``clock`` (its oldest bucket's start)."""
    _, size, minute = WINDOWS[WINDOW_AT[window]]
    return (clock.minute - size + 1) * MINUTE if minute else (clock.hour - size + 1) * HOUR


def reporting_samples(
    counters: Sequence[WindowedCounter],
    metric: str,
    columns: Sequence[tuple[dict[str, str], int]],
    ctx: ExportContext,
    *,
    counted: tuple[str, int] | None = None,
    previous: str = "",
) -> Iterator[Sample]:
    """``metric`` in the reporting currency for every window: the per-currency sums of ``by_day``
    counters (labels ending with ``currency``) converted day by day at each day's rate, summed
    over the other labels' values (0 when idle). Nothing without a reporting currency.

    ``columns``: (extra labels, vector index) of the amounts. ``counted``: (event type, index
    of the event count), to export the events and amount in each window that have no rate
    (:data:`UNCONVERTED_EVENTS`, :data:`UNCONVERTED_AMOUNT`, by currency; 0 when all convert).
    ``previous``: also export the same sums at the rates in force at the last second before each
    window, when the previous period ended (a currency with no rate then keeps its own: it
    shows no rate effect), under that name.
    """
    fx = ctx.fx
    if not fx.enabled:
        return
    clock = ctx.clock
    names = counters[0].label_names if counters else ("currency",)
    at = names.index("currency")
    keep = [i for i in range(len(names)) if i != at]
    seen = _seen(counters, clock)
    kept = {tuple(labels[i] for i in keep) for labels in seen}
    currencies = {labels[at] for labels in seen}
    zero = Decimal(0)
    for window in WINDOW_NAMES:
        by_day: dict[tuple[Labels, int], Vector] = {}
        for counter in counters:
            for key, vec in counter.window_days_at(clock, window).items():
                add_into(by_day, key, vec)
        before = (window_start(clock, window) - 1) // DAY
        totals: dict[tuple[Labels, int], Decimal] = {}
        prior: dict[tuple[Labels, int], Decimal] = {}
        missing: dict[str, list[int]] = {c: [0, 0] for c in currencies}
        for (labels, day), vec in by_day.items():
            currency = labels[at]
            out = tuple(labels[i] for i in keep)
            for c, (_, index) in enumerate(columns):
                value = fx.to_reporting(vec[index], currency, day)
                if value is None:
                    continue
                totals[out, c] = EXACT.add(totals.get((out, c), zero), value)
                if previous:
                    then = fx.to_reporting(vec[index], currency, before)
                    prior[out, c] = EXACT.add(prior.get((out, c), zero), value if then is None else then)
            if counted is not None and fx.rate(currency, day) is None:
                missing[currency][0] += vec[counted[1]]
                missing[currency][1] += vec[columns[0][1]]
        for out in kept:
            base = dict(zip((names[i] for i in keep), out, strict=True))
            base["window"] = window
            for c, (extra, _) in enumerate(columns):
                yield metric, {**base, **extra}, totals.get((out, c), zero)
                if previous:
                    yield previous, {**base, **extra}, prior.get((out, c), zero)
        if counted is not None:
            for currency, (events, units) in missing.items():
                tags = {"window": window, "type": counted[0], "currency": currency}
                yield UNCONVERTED_EVENTS, tags, float(events)
                yield UNCONVERTED_AMOUNT, tags, major(units, currency)


def prorate(monthly: float, window: str) -> float:
    """A window's share of a monthly target: x window / 30 days."""
    return monthly * WINDOW_SECONDS[window] / WINDOW_SECONDS["30d"]


def ratio(numerator: float, denominator: float) -> float | None:
    """A ratio, or None where the denominator is zero (never NaN or Inf)."""
    return numerator / denominator if denominator else None


def score(promoters: float, detractors: float, responses: float) -> float | None:
    """NPS-style score, -100..100, None without responses."""
    r = ratio(100.0 * (promoters - detractors), responses)
    return None if r is None else round(r, 6)


#: Series every worker exports whole (targets, quotas, the quarter's clock): merged by max.
STATIC_SERIES: frozenset[str] = frozenset(
    {
        "salespulse_lead_target",
        REPORTING_INFO,
        "salespulse_forecast_quota",
        "salespulse_forecast_period_left_ratio",
    }
)


class Series:
    """Merged gauge samples, summed over workers (``max`` for static series); money (``Decimal``)
    is summed exactly."""

    STATIC = STATIC_SERIES

    def __init__(self) -> None:
        self.values: dict[SampleKey, Value] = {}
        self._by_name: dict[str, list[tuple[dict[str, str], Value]]] | None = None

    def add(self, name: str, labels: Mapping[str, str], value: Value | str) -> None:
        """Add a sample; a string is an exact amount as ``/kpis`` writes it."""
        if isinstance(value, str):
            value = Decimal(value)
        key = (name, tuple(sorted(labels.items())))
        old = self.values.get(key)
        if old is None:
            self.values[key] = value
        elif name in self.STATIC:
            self.values[key] = max(old, value)
        elif isinstance(old, Decimal) and isinstance(value, Decimal):
            self.values[key] = EXACT.add(old, value)
        else:
            self.values[key] = float(old) + float(value)
        self._by_name = None

    def named(self, name: str) -> list[tuple[dict[str, str], Value]]:
        """Every (labels, value) of one metric; the index is built once per set of adds."""
        if self._by_name is None:
            index: dict[str, list[tuple[dict[str, str], Value]]] = {}
            for (n, lab), v in self.values.items():
                index.setdefault(n, []).append((dict(lab), v))
            self._by_name = index
        return self._by_name.get(name, [])

    # Sums use math.fsum: exactly rounded, so a worker's own view and a merged one agree to
    # the last bit whatever order the series arrive in.
    def total(self, name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
        return math.fsum(float(v) for labels, v in self.named(name) if where(labels))

    def group(
        self, name: str, by: str, where: Callable[[dict[str, str]], bool] = lambda _: True
    ) -> dict[str, float]:
        parts: dict[str, list[float]] = {}
        for labels, v in self.named(name):
            if where(labels):
                parts.setdefault(labels[by], []).append(float(v))
        return {key: math.fsum(values) for key, values in parts.items()}

    def pairs(
        self, name: str, a: str, b: str, where: Callable[[dict[str, str]], bool] = lambda _: True
    ) -> dict[tuple[str, str], float]:
        """Totals by two labels, e.g. (region, category)."""
        parts: dict[tuple[str, str], list[float]] = {}
        for labels, v in self.named(name):
            if where(labels):
                parts.setdefault((labels[a], labels[b]), []).append(float(v))
        return {key: math.fsum(values) for key, values in parts.items()}

    def money(
        self, name: str, by: Sequence[str], where: Callable[[dict[str, str]], bool] = lambda _: True
    ) -> dict[tuple[str, ...], Decimal]:
        """Exact totals of a money metric by the given labels (``()``: one grand total)."""
        totals: dict[tuple[str, ...], Decimal] = {}
        for labels, v in self.named(name):
            if where(labels):
                key = tuple(labels[b] for b in by)
                totals[key] = EXACT.add(totals.get(key, Decimal(0)), Decimal(v))
        return totals

    def reporting_currency(self) -> str | None:
        """The reporting currency the workers convert to, if one is configured."""
        named = self.named(REPORTING_INFO)
        return named[0][0]["currency"] if named else None

    def rows(self) -> Iterator[Sample]:
        for (name, labels), value in sorted(self.values.items()):
            yield name, dict(labels), value


def in_window(window: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get("window") == window


NPS_CATEGORIES = ("promoter", "passive", "detractor")


def nps_category(score_value: int) -> int:
    """Index into NPS_CATEGORIES: promoter 9-10, passive 7-8, detractor 0-6."""
    if score_value >= 9:
        return 0
    if score_value >= 7:
        return 1
    return 2


class CountersState:
    """A KPI state made only of persisted windowed counters, each fed by one topic."""

    def __init__(self, *feeds: tuple[str, WindowedCounter]) -> None:
        self.topic_of = {counter.family: topic for topic, counter in feeds}
        self.counters = {counter.family: counter for _, counter in feeds}

    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[int] | None]]:
        for family, counter in self.counters.items():
            if self.topic_of[family] == topic:
                counter.refresh(clock)  # a counter no event of the batch touched expires too
                yield from counter.drain_dirty()

    def restore(self, topic: str, key: list[Any], rec: list[int] | None, ctx: ApplyContext) -> None:
        family, res, bucket, *labels = key
        counter = self.counters.get(family)
        if counter is None:  # a family no longer kept: micro-unit amounts from before exact money
            return
        for name, value in zip(counter.label_names, labels, strict=True):
            ctx.fold.register(name, value)
        counter.restore(res, bucket, tuple(labels), rec, ctx.clock)
