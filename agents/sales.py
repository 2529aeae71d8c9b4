"""KPI 3: sales volume by region: amount and count won, and the win rate.

Win rate = won / (won + lost). Deals won are counted per (region, kind) so the expansion
KPI and the region board read one consistent source. Amounts are kept per (region,
currency) in minor units with the number of deals, by UTC day, and are worth their sum in
the reporting currency at each day's rate (``agents/money.py``) when read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from salespulse.agents.base import (
    REPORTING_INFO,
    UNCONVERTED_AMOUNT,
    UNCONVERTED_EVENTS,
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
from salespulse.agents.money import EXACT, digits, quantized
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
            # [minor units, deals]: "money", not "amount", which held micro-units before.
            (DEALS, WindowedCounter("money", ("region", "currency"), 2, by_day=True)),
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
        c["money"].add(event.t, labels, [d["amount"], 1], event.offset, ctx.clock)

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
        money = [s.counters["money"] for s in states]
        yield from window_samples(
            money, "salespulse_sales_amount", ("region", "currency"), [({}, 0, 0)], ctx.clock
        )
        if ctx.fx.enabled:
            yield REPORTING_INFO, {"currency": ctx.fx.currency}, 1.0
        yield from reporting_samples(
            money,
            "salespulse_sales_amount_reporting",
            [({}, 0)],
            ctx,
            counted=("deal.won", 1),
            previous="salespulse_sales_amount_reporting_previous_rates",
        )

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        won = series.total("salespulse_deals_won", w)
        lost = series.total("salespulse_deals_lost", w)
        won_by_region = series.group("salespulse_deals_won", "region", w)
        lost_by_region = series.group("salespulse_deals_lost", "region", w)
        regions = sorted(set(won_by_region) | set(lost_by_region))
        amount: dict[str, dict[str, Decimal]] = {}
        cells = series.money("salespulse_sales_amount", ("region", "currency"), w)
        for (region, currency), value in sorted(cells.items()):
            amount.setdefault(region, {})[currency] = value
        return {
            "deals_won": won,
            "deals_lost": lost,
            "win_rate": ratio(won, won + lost),
            "amount_by_currency": {
                c: v for (c,), v in sorted(series.money("salespulse_sales_amount", ("currency",), w).items())
            },
            "amount_by_region": amount,
            **reporting_summary(series, w),
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


def reporting_summary(series: Series, w: Callable[[dict[str, str]], bool]) -> dict[str, Any]:
    """Sales in the reporting currency, rounded to its minor unit once summed: the total, by
    region, at the previous period's rates and the rate effect between the two, and what has
    no rate (per currency: events and amount)."""
    currency = series.reporting_currency()
    if currency is None:
        return {"reporting_currency": None}
    places = digits(currency)
    total = series.money("salespulse_sales_amount_reporting", (), w).get((), Decimal(0))
    before = series.money("salespulse_sales_amount_reporting_previous_rates", (), w).get((), Decimal(0))
    by_region = series.money("salespulse_sales_amount_reporting", ("region",), w)
    events = series.group(UNCONVERTED_EVENTS, "currency", lambda lab: w(lab) and lab["type"] == "deal.won")
    amounts = series.money(
        UNCONVERTED_AMOUNT, ("currency",), lambda lab: w(lab) and lab["type"] == "deal.won"
    )
    return {
        "reporting_currency": currency,
        "amount_reporting": quantized(total, places),
        "amount_reporting_by_region": {r: quantized(v, places) for (r,), v in sorted(by_region.items())},
        "amount_reporting_previous_rates": quantized(before, places),
        "rate_effect": quantized(EXACT.subtract(total, before), places),
        "unconverted": {
            c: {"events": n, "amount": amounts.get((c,), Decimal(0))} for c, n in sorted(events.items()) if n
        },
    }
