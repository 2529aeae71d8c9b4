"""KPI 6: employee satisfaction (eNPS), with the anonymity rules.

eNPS = 100 * (promoters - detractors) / responses. No employee id is ever kept. Per-team
numbers are exported only for the ``30d`` window and only for teams with at least 5
responses there; the org-wide numbers (``team="all"``) only for windows with at least 5.
A worker applies the rule to its own share, so a small share is never exported on its own.
Residual risk: differences between exports over time can still narrow an answer down.
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
    merged_window,
    nps_category,
    score,
)
from salespulse.agents.customers import CustomerIndex
from salespulse.agents.rolling import WINDOW_NAMES, WindowedCounter
from salespulse.schemas.topics import SURVEYS

MIN_RESPONSES = 5
TEAM_WINDOW = "30d"


class EnpsKpi:
    name = "enps"
    title = "Employee satisfaction (eNPS)"
    event_types = frozenset({"survey.answered"})
    topics = frozenset({SURVEYS})

    def new_state(self, customers: CustomerIndex) -> CountersState:
        return CountersState((SURVEYS, WindowedCounter("responses", ("team",), 3)))

    def apply(self, state: CountersState, event: Event, ctx: ApplyContext) -> None:
        d = event.data
        if d["survey"] != "enps" or event.late or event.repeat:
            return
        vec = [0, 0, 0]
        vec[nps_category(d["score"])] = 1
        labels = (ctx.fold("team", d["team"]),)
        state.counters["responses"].add(event.t, labels, vec, event.offset, ctx.clock)

    def samples(self, states: Sequence[CountersState], ctx: ExportContext) -> Iterator[Sample]:
        counters = [s.counters["responses"] for s in states]
        for window in WINDOW_NAMES:
            sums = merged_window(counters, window, ctx.clock)
            org = [sum(vec[i] for vec in sums.values()) for i in range(3)]
            if sum(org) >= MIN_RESPONSES:
                for i, category in enumerate(NPS_CATEGORIES):
                    labels = {"window": window, "team": "all", "category": category}
                    yield "salespulse_enps_responses", labels, float(org[i])
            if window != TEAM_WINDOW:
                continue
            for (team,), vec in sorted(sums.items()):
                if sum(vec) >= MIN_RESPONSES and team != "all":
                    for i, category in enumerate(NPS_CATEGORIES):
                        labels = {"window": window, "team": team, "category": category}
                        yield "salespulse_enps_responses", labels, float(vec[i])

    def summarize(self, series: Series, window: str) -> dict[str, Any]:
        w = in_window(window)
        org = series.group(
            "salespulse_enps_responses", "category", lambda lab: w(lab) and lab["team"] == "all"
        )
        p, pa, d = (org.get(c, 0.0) for c in NPS_CATEGORIES)
        teams: dict[str, float | None] = {}
        if window == TEAM_WINDOW:
            cells = series.pairs("salespulse_enps_responses", "team", "category", w)
            for team, n in sorted(series.group("salespulse_enps_responses", "team", w).items()):
                if team != "all":
                    teams[team] = score(
                        cells.get((team, "promoter"), 0.0), cells.get((team, "detractor"), 0.0), n
                    )
        return {
            "responses": p + pa + d,
            "promoters": p,
            "passives": pa,
            "detractors": d,
            "enps": score(p, d, p + pa + d),
            "enps_by_team": teams,
        }


KPI: EnpsKpi = EnpsKpi()
