"""KPI 1: new leads and opportunities, and attainment against prorated targets.

Leads count per (region, source, rep), opportunities per (region, rep). Targets are
monthly numbers per (region, rep) from ``SALESPULSE_TARGETS``, exported by every worker
as a static series (rules aggregate it with ``max``).
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
    prorate,
    ratio,
    window_samples,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import WINDOW_NAMES, WindowedCounter
from salespulse.schemas.topics import LEADS

LEAD_LABELS = ("region", "source", "rep")
OPPORTUNITY_LABELS = ("region", "rep")


class LeadsKpi:
    name = "leads"
    title = "New leads and opportunities"
    event_types = frozenset({"lead.created", "opportunity.created"})
    topics = frozenset({LEADS})

    def new_state(self, customers: CustomerIndex) -> CountersState:
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
        """Attainment counts only the leads of (region, rep) pairs that have a target.

        That is what ``salespulse:attainment:ratio`` does too: a rep with no target in a
        region must not inflate the attainment of the reps that have one.
        """
        w = in_window(window)
        leads = series.pairs("salespulse_leads", "region", "rep", w)
        targets = series.pairs("salespulse_lead_target", "region", "rep", w)
        by_rep: dict[str, list[float]] = {}
        for (region, rep), target in targets.items():
            acc = by_rep.setdefault(rep, [0.0, 0.0])
            acc[0] += leads.get((region, rep), 0.0)
            acc[1] += target
        covered = sum(acc[0] for acc in by_rep.values())
        target_total = sum(targets.values())
        return {
            "leads": series.total("salespulse_leads", w),
            "opportunities": series.total("salespulse_opportunities", w),
            "lead_target": target_total,
            "attainment": ratio(covered, target_total),
            "leads_by_source": series.group("salespulse_leads", "source", w),
            "leads_by_region": series.group("salespulse_leads", "region", w),
            "attainment_by_rep": {rep: ratio(n, t) for rep, (n, t) in sorted(by_rep.items())},
        }


KPI: LeadsKpi = LeadsKpi()
