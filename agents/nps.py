"""KPI 8: Net Promoter Score, plus each customer's latest score in their profile.

Promoter 9-10, passive 7-8, detractor 0-6; NPS = 100 * (P - D) / responses. The latest
score per customer is the answer with the greatest ``occurred_at`` (offset breaks ties),
never the last to arrive; ``salespulse_nps_customers`` counts customers by that category.
A re-answer (same ``response_id``) updates the latest answer but is not counted again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from salespulse.agents.base import (
    NPS_CATEGORIES,
    ApplyContext,
    CountersState,
    Event,
    ExportContext,
    Sample,
    Series,
    in_window,
    nps_category,
    score,
    window_samples,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import Clock, LatestAnswer, WindowedCounter
from salespulse.schemas.topics import SURVEYS

NPS_LABELS = ("region", "product")


class NpsState(CountersState):
    """Windowed answers plus the latest answer per customer."""

    def __init__(self, customers: CustomerIndex) -> None:
        super().__init__((SURVEYS, WindowedCounter("responses", NPS_LABELS, 3)))
        self.latest = LatestAnswer("latest", customers)
        self.by_category = [0, 0, 0]

    def offer_latest(self, customer: str, t: int, offset: int, score_value: int) -> None:
        self._recount(self.latest.offer(customer, t, offset, score_value), score_value)

    def _recount(self, old_score: int | None, score_value: int) -> None:
        if old_score is None:
            return
        if old_score >= 0:
            self.by_category[nps_category(old_score)] -= 1
        self.by_category[nps_category(score_value)] += 1

    def drain(self, topic: str, offset: int, clock: Clock) -> Iterator[tuple[list[object], list[int] | None]]:
        yield from super().drain(topic, offset, clock)
        if topic == SURVEYS:
            yield from self.latest.drain_dirty()

    def restore(self, topic: str, key: list[Any], rec: list[int] | None, ctx: ApplyContext) -> None:
        if key[0] != "latest":
            super().restore(topic, key, rec, ctx)
        elif rec is not None:  # latest answers never expire, so they never get a tombstone
            self._recount(self.latest.restore(key[1], rec), rec[2])


class NpsKpi:
    name = "nps"
    title = "Net Promoter Score"
    event_types = frozenset({"survey.answered"})
    topics = frozenset({SURVEYS})

    def new_state(self, customers: CustomerIndex) -> NpsState:
        return NpsState(customers)

    def apply(self, state: NpsState, event: Event, ctx: ApplyContext) -> None:
        d = event.data
        if d["survey"] != "nps":
            return
        state.offer_latest(d["customer_id"], event.t, event.offset, d["score"])
        if event.late or event.repeat:
            return
        vec = [0, 0, 0]
        vec[nps_category(d["score"])] = 1
        labels = (ctx.fold("region", d["region"]), ctx.fold("product", d["product"]))
        state.counters["responses"].add(event.t, labels, vec, event.offset, ctx.clock)

    def samples(self, states: Sequence[NpsState], ctx: ExportContext) -> Iterator[Sample]:
        yield from window_samples(
            [s.counters["responses"] for s in states],
            "salespulse_nps_responses",
            NPS_LABELS,
            [({"category": c}, i, 1) for i, c in enumerate(NPS_CATEGORIES)],
            ctx.clock,
        )
        for i, category in enumerate(NPS_CATEGORIES):
            total = sum(s.by_category[i] for s in states)
            yield "salespulse_nps_customers", {"category": category}, float(total)

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        cats = series.group("salespulse_nps_responses", "category", w)
        p, pa, d = (cats.get(c, 0.0) for c in NPS_CATEGORIES)
        regions = series.group("salespulse_nps_responses", "region", w)
        cells = series.pairs("salespulse_nps_responses", "region", "category", w)
        by_region = {
            r: score(cells.get((r, "promoter"), 0.0), cells.get((r, "detractor"), 0.0), n)
            for r, n in sorted(regions.items())
        }
        latest = series.group("salespulse_nps_customers", "category")
        return {
            "responses": p + pa + d,
            "promoters": p,
            "passives": pa,
            "detractors": d,
            "nps": score(p, d, p + pa + d),
            "nps_by_region": by_region,
            "customers_by_latest_category": latest,
        }


KPI: NpsKpi = NpsKpi()
