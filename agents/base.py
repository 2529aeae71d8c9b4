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
from typing import Any, Protocol

from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import (
    WINDOW_NAMES,
    WINDOW_SECONDS,
    Clock,
    Labels,
    Vector,
    WindowedCounter,
    add_into,
)

#: Amounts and prices are kept as integer micro-units so sums are exact in any order.
MICROS = 1_000_000

#: One exported gauge sample: metric name, sorted label pairs, value.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]
Sample = tuple[str, dict[str, str], float]


def micros(amount: float) -> int:
    return round(amount * MICROS)


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


def window_samples(
    counters: Sequence[WindowedCounter],
    metric: str,
    label_names: Sequence[str],
    columns: Sequence[tuple[dict[str, str], int, float]],
    clock: Clock,
) -> Iterator[Sample]:
    """Gauge samples for every window and every label tuple ever seen (0 when idle).

    ``columns`` maps vector positions to samples: (extra labels, index, scale).
    """
    sums_by_window = {w: merged_window(counters, w, clock) for w in WINDOW_NAMES}
    seen: set[Labels] = set()
    for counter in counters:
        seen |= counter.labels_seen(clock)
    for window, sums in sums_by_window.items():
        for labels in seen:
            vec = sums.get(labels)
            base = dict(zip(label_names, labels, strict=True))
            base["window"] = window
            for extra, index, scale in columns:
                value = vec[index] / scale if vec else 0.0
                yield metric, {**base, **extra}, value


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
    {"salespulse_lead_target", "salespulse_forecast_quota", "salespulse_forecast_period_left_ratio"}
)


class Series:
    """Merged gauge samples, summed over workers (``max`` for static series)."""

    STATIC = STATIC_SERIES

    def __init__(self) -> None:
        self.values: dict[SampleKey, float] = {}
        self._by_name: dict[str, list[tuple[dict[str, str], float]]] | None = None

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        key = (name, tuple(sorted(labels.items())))
        old = self.values.get(key)
        if old is None:
            self.values[key] = value
        elif name in self.STATIC:
            self.values[key] = max(old, value)
        else:
            self.values[key] = old + value
        self._by_name = None

    def named(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every (labels, value) of one metric; the index is built once per set of adds."""
        if self._by_name is None:
            index: dict[str, list[tuple[dict[str, str], float]]] = {}
            for (n, lab), v in self.values.items():
                index.setdefault(n, []).append((dict(lab), v))
            self._by_name = index
        return self._by_name.get(name, [])

    # Sums use math.fsum: exactly rounded, so a worker's own view and a merged one agree to
    # the last bit whatever order the series arrive in.
    def total(self, name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
        return math.fsum(v for labels, v in self.named(name) if where(labels))

    def group(
        self, name: str, by: str, where: Callable[[dict[str, str]], bool] = lambda _: True
    ) -> dict[str, float]:
        parts: dict[str, list[float]] = {}
        for labels, v in self.named(name):
            if where(labels):
                parts.setdefault(labels[by], []).append(v)
        return {key: math.fsum(values) for key, values in parts.items()}

    def pairs(
        self, name: str, a: str, b: str, where: Callable[[dict[str, str]], bool] = lambda _: True
    ) -> dict[tuple[str, str], float]:
        """Totals by two labels, e.g. (region, category)."""
        parts: dict[tuple[str, str], list[float]] = {}
        for labels, v in self.named(name):
            if where(labels):
                parts.setdefault((labels[a], labels[b]), []).append(v)
        return {key: math.fsum(values) for key, values in parts.items()}

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
        counter = self.counters[family]
        for name, value in zip(counter.label_names, labels, strict=True):
            ctx.fold.register(name, value)
        counter.restore(res, bucket, tuple(labels), rec, ctx.clock)
