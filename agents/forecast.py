"""The pipeline forecast against quota (issue 31), as a KPI: which events feed its state
(``forecast_state.py``) and what it exports (``forecast_numbers.py``); read by period through
``GET /forecast`` rather than by window (docs/forecast.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from salespulse.agents.base import ApplyContext, Event, ExportContext, LabelFolder, Sample, Series
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.forecast_numbers import prometheus_samples
from salespulse.agents.forecast_plan import Plan
from salespulse.agents.forecast_state import ForecastPolicy, ForecastState, register
from salespulse.schemas.topics import DEALS, LEADS


class ForecastKpi:
    """The forecast: read by period through ``GET /forecast``, not by window."""

    name = "forecast"
    title = "Pipeline forecast against quota"
    event_types = frozenset({"opportunity.created", "opportunity.updated", "deal.won", "deal.lost"})
    topics = frozenset({LEADS, DEALS})

    def __init__(self, policy: ForecastPolicy | None = None, plan: Plan | None = None) -> None:
        self.policy = policy or ForecastPolicy()
        self.plan = plan or Plan(self.policy.calendar, {}, {})

    def new_state(self, customers: CustomerIndex) -> ForecastState:
        return ForecastState(self.policy)

    def apply(self, state: ForecastState, event: Event, ctx: ApplyContext) -> None:
        d = event.data
        kind = event.type
        if event.closes:
            state.close(d["opportunity_id"], event.t, event.offset, kind == "deal.won")
        elif kind == "deal.won":
            register(ctx.fold, d["rep_id"], d["region"], d["currency"])
            rid = state.rid(d["rep_id"], d["region"], d["currency"])
            state.add_won(rid, event.t, event.offset, d["amount"])
        elif kind != "deal.lost":
            register(ctx.fold, d["rep_id"], d["region"], d["currency"])
            state.offer(d["opportunity_id"], state.version(event.t, event.offset, d))

    def samples(self, states: Sequence[ForecastState], ctx: ExportContext) -> Iterator[Sample]:
        """The current and next quarter per rep, region and currency, and the reps' quotas."""
        fold = ctx.fold.peek if ctx.fold is not None else LabelFolder()
        return prometheus_samples(states, self.plan, ctx.clock.now, fold)

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        return {}


KPI: ForecastKpi = ForecastKpi()
