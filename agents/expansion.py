"""KPI 7: upsell and cross-sell rate.

Expansion rate = (upsell + cross_sell deals) / all deals won, in the same window; the
expansion amount is the money those deals brought, per kind and currency (in minor units,
by UTC day), and in the reporting currency at each day's rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from salespulse.agents.base import (
    ApplyContext,
    CountersState,
    Event,
    ExportContext,
    Sample,
    Series,
    in_window,
    ratio,
    reporting_samples,
    window_samples,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.money import digits, quantized
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
            # Minor units, upsell and cross-sell ("amount" held micro-units before).
            (DEALS, WindowedCounter("money", ("currency",), 2, by_day=True)),
        )

    def apply(self, state: CountersState, event: Event, ctx: ApplyContext) -> None:
        if event.late:
            return
        d = event.data
        kind = d["kind"]
        vec = [int(kind == "upsell"), int(kind == "cross_sell"), 1]
        state.counters["deals"].add(event.t, (), vec, event.offset, ctx.clock)
        if kind in EXPANSION_KINDS:
            amount = d["amount"]
            vec = [amount if kind == "upsell" else 0, amount if kind == "cross_sell" else 0]
            labels = (ctx.fold("currency", d["currency"]),)
            state.counters["money"].add(event.t, labels, vec, event.offset, ctx.clock)

    def samples(self, states: Sequence[CountersState], ctx: ExportContext) -> Iterator[Sample]:
        yield from window_samples(
            [s.counters["deals"] for s in states],
            "salespulse_expansion_deals",
            (),
            [({"kind": "upsell"}, 0, 1), ({"kind": "cross_sell"}, 1, 1), ({"kind": "all"}, 2, 1)],
            ctx.clock,
        )
        money = [s.counters["money"] for s in states]
        yield from window_samples(
            money,
            "salespulse_expansion_amount",
            ("currency",),
            [({"kind": "upsell"}, 0, 0), ({"kind": "cross_sell"}, 1, 0)],
            ctx.clock,
        )
        yield from reporting_samples(
            money,
            "salespulse_expansion_amount_reporting",
            [({"kind": "upsell"}, 0), ({"kind": "cross_sell"}, 1)],
            ctx,
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
            "expansion_amount": {
                c: v
                for (c,), v in sorted(series.money("salespulse_expansion_amount", ("currency",), w).items())
            },
            **self._reporting(series, w),
        }

    @staticmethod
    def _reporting(series: Series, w: Callable[[dict[str, str]], bool]) -> dict[str, Any]:
        currency = series.reporting_currency()
        if currency is None:
            return {}
        total = series.money("salespulse_expansion_amount_reporting", (), w).get((), Decimal(0))
        return {"expansion_amount_reporting": quantized(total, digits(currency))}


KPI: ExpansionKpi = ExpansionKpi()
