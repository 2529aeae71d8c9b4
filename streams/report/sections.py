"""The eight KPI sections of the digest, built from the merged cluster views.

This is where each KPI is chosen, labelled, compared with the previous period and given
its charts and tables. It is the part that changes when the digest's content changes,
so it is kept apart from fetching, rendering and delivery.
"""

from __future__ import annotations

import statistics
from typing import Any

from salespulse.streams.report.charts import (
    chart_bars,
    chart_conversion_by_rep,
    chart_counts_trend,
    chart_nps_trend,
    chart_price_index,
    chart_sales_by_region,
)
from salespulse.streams.report.formatting import BLUE, COUNT, INDEX, MONEY, PERCENT, SCORE, format_value
from salespulse.streams.report.model import Metric, Section, cid


def _sections(
    window: str,
    current: dict[str, Any],
    previous: dict[str, Any],
    trend: list[tuple[int, dict[str, Any]]],
) -> tuple[list[Section], dict[str, bytes]]:
    now, before = current["windows"][window], previous["windows"][window]
    charts: dict[str, bytes] = {}

    def metric(label: str, kpi: str, key: str, kind: str = COUNT, **kw: Any) -> Metric:
        return Metric(label, now[kpi][key], before[kpi][key], kind, **kw)

    def per_currency(label: str, kpi: str, key: str) -> list[Metric]:
        cur, prev = now[kpi][key], before[kpi][key]
        return [
            Metric(f"{label} ({currency})", cur[currency], prev.get(currency, 0.0), MONEY)
            for currency in sorted(cur)
        ]

    sections: list[Section] = []

    # 1. Leads and opportunities.
    leads = now["leads"]
    charts[cid("leads-by-source")] = chart_bars(
        leads["leads_by_source"], f"Leads by source, last {window}", color=BLUE
    )
    charts[cid("leads-trend")] = chart_counts_trend(window, trend)
    sections.append(
        Section(
            1,
            "leads",
            "New leads and opportunities",
            metric("Leads", "leads", "leads"),
            (
                metric("Opportunities", "leads", "opportunities"),
                *(
                    (
                        metric("Lead target", "leads", "lead_target", compare=False),
                        metric("Lead attainment", "leads", "attainment", PERCENT),
                    )
                    if leads["lead_target"]
                    else ()
                ),
            ),
            (
                (cid("leads-by-source"), "Bar chart of leads by lead source"),
                (cid("leads-trend"), "Bar chart of leads and deals won per period"),
            ),
            note="" if leads["lead_target"] else "No lead targets configured (SALESPULSE_TARGETS).",
        )
    )

    # 2. Customer acquisition.
    acq = now["acquisition"]
    charts[cid("conversion-by-rep")] = chart_conversion_by_rep(
        acq["conversion_by_rep"], acq["conversion"], window
    )
    cac_rows = tuple(
        (key.replace("/", " ("), format_value(MONEY, acq["marketing_spend"][key]), format_value(MONEY, value))
        for key, value in acq["cac"].items()
        if acq["marketing_spend"][key]
    )
    sections.append(
        Section(
            2,
            "acquisition",
            "Customer acquisition rate and cost",
            metric("Customers acquired", "acquisition", "customers_acquired"),
            (metric("Lead conversion", "acquisition", "conversion", PERCENT),),
            ((cid("conversion-by-rep"), "Bar chart of lead conversion per rep, team conversion as a line"),),
            table_head=("Channel (currency)", "Marketing spend", "CAC"),
            table=tuple((a + ")", b, c) for a, b, c in cac_rows),
            note="CAC = spend on a channel / customers acquired from that lead source, same window.",
        )
    )

    # 3. Sales volume by region.
    sales = now["sales"]
    charts[cid("sales-by-region")] = chart_sales_by_region(
        sales["won_by_region"], sales["amount_by_region"], window
    )
    sections.append(
        Section(
            3,
            "sales",
            "Sales volume by region",
            metric("Deals won", "sales", "deals_won"),
            (
                metric("Deals lost", "sales", "deals_lost", higher_is_better=False),
                metric("Win rate", "sales", "win_rate", PERCENT),
                *per_currency("Sales amount", "sales", "amount_by_currency"),
            ),
            ((cid("sales-by-region"), "Bar chart of deals won per region, labelled with the amount won"),),
            table_head=("Region", "Deals won", "Win rate", "Amount won"),
            table=tuple(
                (
                    region,
                    format_value(COUNT, sales["won_by_region"].get(region, 0.0)),
                    format_value(PERCENT, rate),
                    ", ".join(
                        f"{c} {format_value(MONEY, v)}"
                        for c, v in sales["amount_by_region"].get(region, {}).items()
                    )
                    or "-",
                )
                for region, rate in sales["win_rate_by_region"].items()
            ),
        )
    )

    # 4. Competitor pricing (latest prices only: there is no history to compare with).
    rows = now["pricing"]["prices"]
    indexes = [r["price_index"] for r in rows if r["price_index"] is not None]
    charts[cid("price-index")] = chart_price_index(rows)
    sections.append(
        Section(
            4,
            "pricing",
            "Competitor pricing",
            Metric(
                "Median price index",
                statistics.median(indexes) if indexes else None,
                kind=INDEX,
                compare=False,
            ),
            (
                Metric("Pairs where we are dearer", float(sum(i > 1 for i in indexes)), compare=False),
                Metric("Pairs compared", float(len(indexes)), compare=False),
            ),
            ((cid("price-index"), "Heat map of the price index per product and competitor"),),
            card_note=f"{sum(i > 1 for i in indexes)} of {len(indexes)} pairs: we are dearer; no history",
            note="Price index = our list price / competitor price, same currency, latest observation "
            "of each (any age); above 1.000 we are dearer. Prices keep no history, so no change is shown.",
        )
    )

    # 5. Engagement.
    eng = now["engagement"]
    sections.append(
        Section(
            5,
            "engagement",
            "Engagement of existing customers",
            metric("Customers engaged", "engagement", "customers_engaged"),
            (
                metric("Activities", "engagement", "activities"),
                metric("Customers known", "engagement", "customers_known", compare=False),
                metric(
                    "Customers at risk",
                    "engagement",
                    "customers_at_risk",
                    higher_is_better=False,
                    compare=False,
                ),
                metric("At-risk share", "engagement", "at_risk_share", PERCENT, compare=False),
            ),
            table_head=("Channel", "Activities"),
            table=tuple(
                (ch, format_value(COUNT, n))
                for ch, n in sorted(eng["activities_by_channel"].items(), key=lambda kv: -kv[1])
            ),
            note="Known and at-risk customers are today's counts (at risk: no activity or won deal "
            "for 30 days).",
        )
    )

    # 6. eNPS (anonymity: org-wide needs 5 responses, per team only for 30d).
    enps = now["enps"]
    sections.append(
        Section(
            6,
            "enps",
            "Employee satisfaction (eNPS)",
            metric("eNPS", "enps", "enps", SCORE),
            (metric("Responses", "enps", "responses", higher_is_better=None),),
            table_head=("Team", "eNPS") if enps["enps_by_team"] else (),
            table=tuple((t, format_value(SCORE, v)) for t, v in enps["enps_by_team"].items()),
            note="Shown only with at least 5 responses; per-team numbers only for the 30d window "
            "and for teams with at least 5 responses.",
        )
    )

    # 7. Upsell and cross-sell.
    sections.append(
        Section(
            7,
            "expansion",
            "Upsell and cross-sell",
            metric("Expansion rate", "expansion", "expansion_rate", PERCENT),
            (
                metric("Upsell deals", "expansion", "upsell"),
                metric("Cross-sell deals", "expansion", "cross_sell"),
                *per_currency("Expansion amount", "expansion", "expansion_amount"),
            ),
            note="Expansion rate = (upsell + cross-sell deals) / all deals won.",
        )
    )

    # 8. NPS.
    nps = now["nps"]
    charts[cid("nps-trend")] = chart_nps_trend(window, trend)
    sections.append(
        Section(
            8,
            "nps",
            "Net Promoter Score",
            metric("NPS", "nps", "nps", SCORE),
            (
                metric("Responses", "nps", "responses", higher_is_better=None),
                metric("Promoters", "nps", "promoters"),
                metric("Passives", "nps", "passives", higher_is_better=None),
                metric("Detractors", "nps", "detractors", higher_is_better=False),
            ),
            ((cid("nps-trend"), "Line chart of NPS and eNPS per period"),),
            table_head=("Region", "NPS"),
            table=tuple((r, format_value(SCORE, v)) for r, v in nps["nps_by_region"].items()),
        )
    )
    return sections, charts
