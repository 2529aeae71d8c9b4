"""KPI 2: customer acquisition rate and cost.

A customer is acquired by a ``deal.won`` of kind ``new``, counted under its lead source
(``unknown`` when absent). Conversion = acquired / leads; CAC = spend / acquired, per
channel (spend channel and lead source share one vocabulary) and currency, and in the
reporting currency: spend converts at the rate of its own UTC day.
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
from salespulse.schemas.topics import DEALS, MARKET

ACQUIRED_LABELS = ("region", "source", "rep")
SPEND_LABELS = ("channel", "currency")


class AcquisitionKpi:
    name = "acquisition"
    title = "Customer acquisition rate and cost"
    event_types = frozenset({"deal.won", "marketing.spend"})
    topics = frozenset({DEALS, MARKET})

    def new_state(self, customers: CustomerIndex) -> CountersState:
        return CountersState(
            (DEALS, WindowedCounter("acquired", ACQUIRED_LABELS, 1)),
            # [minor units, events] ("spend" held micro-units before).
            (MARKET, WindowedCounter("spend_money", SPEND_LABELS, 2, by_day=True)),
        )

    def apply(self, state: CountersState, event: Event, ctx: ApplyContext) -> None:
        d = event.data
        if event.late:
            return
        if event.type == "marketing.spend":
            spend = (ctx.fold("channel", d["channel"]), ctx.fold("currency", d["currency"]))
            state.counters["spend_money"].add(event.t, spend, [d["amount"], 1], event.offset, ctx.clock)
        elif d["kind"] == "new":
            labels = (
                ctx.fold("region", d["region"]),
                ctx.fold("source", d.get("source") or "unknown"),
                ctx.fold("rep", d["rep_id"]),
            )
            state.counters["acquired"].add(event.t, labels, [1], event.offset, ctx.clock)

    def samples(self, states: Sequence[CountersState], ctx: ExportContext) -> Iterator[Sample]:
        yield from window_samples(
            [s.counters["acquired"] for s in states],
            "salespulse_customers_acquired",
            ACQUIRED_LABELS,
            [({}, 0, 1)],
            ctx.clock,
        )
        spend = [s.counters["spend_money"] for s in states]
        yield from window_samples(spend, "salespulse_marketing_spend", SPEND_LABELS, [({}, 0, 0)], ctx.clock)
        yield from reporting_samples(
            spend, "salespulse_marketing_spend_reporting", [({}, 0)], ctx, counted=("marketing.spend", 1)
        )

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        acquired = series.total("salespulse_customers_acquired", w)
        leads = series.total("salespulse_leads", w)
        acquired_by_source = series.group("salespulse_customers_acquired", "source", w)
        leads_by_rep = series.group("salespulse_leads", "rep", w)
        acquired_by_rep = series.group("salespulse_customers_acquired", "rep", w)
        cac: dict[str, float | None] = {}
        spend: dict[str, Decimal] = {}
        for (channel, currency), value in series.money(
            "salespulse_marketing_spend", ("channel", "currency"), w
        ).items():
            key = f"{channel}/{currency}"
            spend[key] = value
            cac[key] = ratio(float(value), acquired_by_source.get(channel, 0.0))
        return {
            "customers_acquired": acquired,
            "leads": leads,
            "conversion": ratio(acquired, leads),
            "conversion_by_rep": {
                rep: ratio(acquired_by_rep.get(rep, 0.0), n) for rep, n in sorted(leads_by_rep.items())
            },
            "acquired_by_source": acquired_by_source,
            "marketing_spend": dict(sorted(spend.items())),
            "cac": dict(sorted(cac.items())),
            **self._reporting(series, w, acquired_by_source),
        }

    @staticmethod
    def _reporting(
        series: Series, w: Callable[[dict[str, str]], bool], acquired: dict[str, float]
    ) -> dict[str, Any]:
        """Spend and CAC per channel in the reporting currency, and spend with no rate."""
        currency = series.reporting_currency()
        if currency is None:
            return {}
        places = digits(currency)
        spend = series.money("salespulse_marketing_spend_reporting", ("channel",), w)
        unconverted = series.group(
            "salespulse_fx_unconverted_events",
            "currency",
            lambda lab: w(lab) and lab["type"] == "marketing.spend",
        )
        return {
            "marketing_spend_reporting": {c: quantized(v, places) for (c,), v in sorted(spend.items())},
            "cac_reporting": {c: ratio(float(v), acquired.get(c, 0.0)) for (c,), v in sorted(spend.items())},
            "spend_unconverted_events": {c: n for c, n in sorted(unconverted.items()) if n},
        }


KPI: AcquisitionKpi = AcquisitionKpi()
