"""KPI 1: new leads and opportunities, and attainment against prorated targets.

Leads count per (region, source, rep), opportunities per (region, rep). Targets are
monthly numbers per (region, rep) from ``SALESPULSE_TARGETS``, exported by every worker
as a static series (rules aggregate it with ``max``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from agents.base import (
    ApplyContext,
    CountersState,
    Event,
    ExportContext,
    Sample,
    Series,
    in_window,
    prorate,
    ratio,
    window_samples,
)
from agents.rolling import WINDOW_NAMES, WindowedCounter
from streams.topics import LEADS

LEAD_LABELS = ("region", "source", "rep")
OPPORTUNITY_LABELS = ("region", "rep")


class LeadsKpi:
    name = "leads"
    title = "New leads and opportunities"
    event_types = frozenset({"lead.created", "opportunity.created"})
    topics = frozenset({LEADS})

    def new_state(self) -> CountersState:
        return CountersState(
            (LEADS, WindowedCounter("leads", LEAD_LABELS, 1)),
            (LEADS, WindowedCounter("opportunities", OPPORTUNITY_LABELS, 1)),
        )

    def apply(self, state: CountersState, event: Event, ctx: ApplyContext) -> None:
        if event.late:
            return
        d = event.data
        region, rep = ctx.fold("region", d["region"]), ctx.fold("rep", d["rep_id"])
        if event.type == "lead.created":
            labels = (region, ctx.fold("source", d["source"]), rep)
            state.counters["leads"].add(event.t, labels, [1], event.offset, ctx.clock)
        else:
            state.counters["opportunities"].add(event.t, (region, rep), [1], event.offset, ctx.clock)

    def samples(self, states: Sequence[CountersState], ctx: ExportContext) -> Iterator[Sample]:
        yield from window_samples(
            [s.counters["leads"] for s in states],
            "salespulse_leads",
            LEAD_LABELS,
            [({}, 0, 1)],
            ctx.clock,
        )
        yield from window_samples(
            [s.counters["opportunities"] for s in states],
            "salespulse_opportunities",
            OPPORTUNITY_LABELS,
            [({}, 0, 1)],
            ctx.clock,
        )
        for (region, rep), monthly in sorted(ctx.targets.items()):
            for window in WINDOW_NAMES:
                labels = {"window": window, "region": region, "rep": rep}
                yield "salespulse_lead_target", labels, prorate(monthly, window)

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        leads = series.total("salespulse_leads", w)
        target = series.total("salespulse_lead_target", w)
        by_rep = series.group("salespulse_leads", "rep", w)
        targets_by_rep = series.group("salespulse_lead_target", "rep", w)
        return {
            "leads": leads,
            "opportunities": series.total("salespulse_opportunities", w),
            "lead_target": target,
            "attainment": ratio(leads, target),
            "leads_by_source": series.group("salespulse_leads", "source", w),
            "leads_by_region": series.group("salespulse_leads", "region", w),
            "attainment_by_rep": {
                rep: ratio(by_rep.get(rep, 0.0), t) for rep, t in sorted(targets_by_rep.items())
            },
        }


KPI = LeadsKpi()
