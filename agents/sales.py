"""KPI 3: sales volume by region: amount and count won, and the win rate.

Win rate = won / (won + lost). Deals won are counted per (region, kind) so the expansion
KPI and the region board read one consistent source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from salespulse.agents.base import (
    ApplyContext,
    CountersState,
    Event,
    ExportContext,
    Sample,
    Series,
    in_window,
    micros,
    ratio,
    window_samples,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import WindowedCounter
from salespulse.schemas.topics import DEALS

KINDS = ("new", "upsell", "cross_sell", "renewal")
KIND_INDEX = {kind: i for i, kind in enumerate(KINDS)}


class SalesKpi:
    name = "sales"
    title = "Sales volume by region"
    event_types = frozenset({"deal.won", "deal.lost"})
    topics = frozenset({DEALS})

    def new_state(self, customers: CustomerIndex) -> CountersState:
        return CountersState(
            (DEALS, WindowedCounter("won", ("region",), len(KINDS))),
            (DEALS, WindowedCounter("lost", ("region",), 1)),
            (DEALS, WindowedCounter("amount", ("region", "currency"), 1)),
        )

    def apply(self, state: CountersState, event: Event, ctx: ApplyContext) -> None:
        if event.late:
            return
        d = event.data
        region = ctx.fold("region", d["region"])
        c = state.counters
        if event.type == "deal.lost":
            c["lost"].add(event.t, (region,), [1], event.offset, ctx.clock)
            return
        vec = [0] * len(KINDS)
        vec[KIND_INDEX[d["kind"]]] = 1
        c["won"].add(event.t, (region,), vec, event.offset, ctx.clock)
        labels = (region, ctx.fold("currency", d["currency"]))
        c["amount"].add(event.t, labels, [micros(d["amount"])], event.offset, ctx.clock)

    def samples(self, states: Sequence[CountersState], ctx: ExportContext) -> Iterator[Sample]:
        yield from window_samples(
            [s.counters["won"] for s in states],
            "salespulse_deals_won",
            ("region",),
            [({"kind": kind}, i, 1) for i, kind in enumerate(KINDS)],
            ctx.clock,
        )
        yield from window_samples(
            [s.counters["lost"] for s in states],
            "salespulse_deals_lost",
            ("region",),
            [({}, 0, 1)],
            ctx.clock,
        )
        yield from window_samples(
            [s.counters["amount"] for s in states],
            "salespulse_sales_amount",
            ("region", "currency"),
            [({}, 0, 1_000_000)],
            ctx.clock,
        )

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        won = series.total("salespulse_deals_won", w)
        lost = series.total("salespulse_deals_lost", w)
        won_by_region = series.group("salespulse_deals_won", "region", w)
        lost_by_region = series.group("salespulse_deals_lost", "region", w)
        regions = sorted(set(won_by_region) | set(lost_by_region))
        amount: dict[str, dict[str, float]] = {}
        cells = series.pairs("salespulse_sales_amount", "region", "currency", w)
        for (region, currency), value in sorted(cells.items()):
            amount.setdefault(region, {})[currency] = value
        return {
            "deals_won": won,
            "deals_lost": lost,
            "win_rate": ratio(won, won + lost),
            "amount_by_currency": series.group("salespulse_sales_amount", "currency", w),
            "amount_by_region": amount,
            "won_by_region": won_by_region,
            "win_rate_by_region": {
                r: ratio(
                    won_by_region.get(r, 0.0),
                    won_by_region.get(r, 0.0) + lost_by_region.get(r, 0.0),
                )
                for r in regions
            },
        }


KPI: SalesKpi = SalesKpi()
