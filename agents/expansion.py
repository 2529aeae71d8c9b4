"""KPI 7: upsell and cross-sell rate.

Expansion rate = (upsell + cross_sell deals) / all deals won, in the same window; the
expansion amount is the money those deals brought, per kind and currency.
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

EXPANSION_KINDS = ("upsell", "cross_sell")


class ExpansionKpi:
    name = "expansion"
    title = "Upsell and cross-sell rate"
    event_types = frozenset({"deal.won"})
    topics = frozenset({DEALS})

    def new_state(self, customers: CustomerIndex) -> CountersState:
        return CountersState(
            (DEALS, WindowedCounter("deals", (), 3)),
            (DEALS, WindowedCounter("amount", ("currency",), 2)),
        )

    def apply(self, state: CountersState, event: Event, ctx: ApplyContext) -> None:
        if event.late:
            return
        d = event.data
        kind = d["kind"]
        vec = [int(kind == "upsell"), int(kind == "cross_sell"), 1]
        state.counters["deals"].add(event.t, (), vec, event.offset, ctx.clock)
        if kind in EXPANSION_KINDS:
            amount = micros(d["amount"])
            vec = [amount if kind == "upsell" else 0, amount if kind == "cross_sell" else 0]
            labels = (ctx.fold("currency", d["currency"]),)
            state.counters["amount"].add(event.t, labels, vec, event.offset, ctx.clock)

    def samples(self, states: Sequence[CountersState], ctx: ExportContext) -> Iterator[Sample]:
        yield from window_samples(
            [s.counters["deals"] for s in states],
            "salespulse_expansion_deals",
            (),
            [({"kind": "upsell"}, 0, 1), ({"kind": "cross_sell"}, 1, 1), ({"kind": "all"}, 2, 1)],
            ctx.clock,
        )
        yield from window_samples(
            [s.counters["amount"] for s in states],
            "salespulse_expansion_amount",
            ("currency",),
            [({"kind": "upsell"}, 0, 1_000_000), ({"kind": "cross_sell"}, 1, 1_000_000)],
            ctx.clock,
        )

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        by_kind = series.group("salespulse_expansion_deals", "kind", w)
        expansion = by_kind.get("upsell", 0.0) + by_kind.get("cross_sell", 0.0)
        return {
            "upsell": by_kind.get("upsell", 0.0),
            "cross_sell": by_kind.get("cross_sell", 0.0),
            "deals_won": by_kind.get("all", 0.0),
            "expansion_rate": ratio(expansion, by_kind.get("all", 0.0)),
            "expansion_amount": series.group("salespulse_expansion_amount", "currency", w),
        }


KPI: ExpansionKpi = ExpansionKpi()
