"""The eight KPI sections of the digest, built from the merged cluster views.

This is where each KPI is chosen, labelled, compared with the previous period and given
its charts and tables. It is the part that changes when the digest's content changes,
so it is kept apart from fetching, rendering and delivery. Its words come from the
catalogue by key (``locales/<code>.toml``): a new label is a new key in every catalogue.
"""

from __future__ import annotations

import statistics
from decimal import Decimal
from typing import Any

from salespulse.streams.report.catalogue import Catalogue
from salespulse.streams.report.charts import (
    chart_bars,
    chart_conversion_by_rep,
    chart_counts_trend,
    chart_nps_trend,
    chart_price_index,
    chart_sales_by_region,
)
from salespulse.streams.report.formatting import (
    BLUE,
    COUNT,
    INDEX,
    MONEY,
    PERCENT,
    SCORE,
    format_money,
    format_value,
    unit_name,
)
from salespulse.streams.report.model import Metric, Section, cid


def _sections(
    window: str,
    current: dict[str, Any],
    previous: dict[str, Any],
    trend: list[tuple[int, dict[str, Any]]],
    cat: Catalogue,
) -> tuple[list[Section], dict[str, bytes]]:
    now, before = current["windows"][window], previous["windows"][window]
    charts: dict[str, bytes] = {}
    t, sep, span = cat.t, cat.t("list_separator"), cat.window(window)

    def metric(label: str, kpi: str, key: str, kind: str = COUNT, **kw: Any) -> Metric:
        return Metric(t(label), now[kpi][key], before[kpi][key], kind, **kw)

    def per_currency(label: str, kpi: str, key: str) -> list[Metric]:
        cur, prev = now[kpi][key], before[kpi][key]
        return [
            Metric(
                t("with_currency", label=t(label), currency=unit_name(currency, cat)),
                cur[currency],
                prev.get(currency, Decimal(0)),
                MONEY,
                currency=currency,
            )
            for currency in sorted(cur)
        ]

    def reporting(label: str, kpi: str, key: str) -> list[Metric]:
        """The reporting-currency total first, when the workers convert to one."""
        currency = now["sales"]["reporting_currency"]
        if currency is None:
            return []
        name = t("with_currency", label=t(label), currency=unit_name(currency, cat))
        return [Metric(name, now[kpi][key], before[kpi].get(key), MONEY, currency=currency)]

    def rate_effect() -> list[Metric]:
        """This period's sales at the previous period's rates, and what rates changed; and the
        amounts with no rate, which are in no reporting total."""
        sales = now["sales"]
        currency = sales["reporting_currency"]
        if currency is None:
            return []
        unit = unit_name(currency, cat)
        out = [
            Metric(
                t("with_currency", label=t("sales.previous_rates"), currency=unit),
                sales["amount_reporting_previous_rates"],
                kind=MONEY,
                compare=False,
                currency=currency,
            ),
            Metric(
                t("with_currency", label=t("sales.rate_effect"), currency=unit),
                sales["rate_effect"],
                kind=MONEY,
                compare=False,
                currency=currency,
            ),
        ]
        missing = sales["unconverted"]
        if missing:
            events = sum(row["events"] for row in missing.values())
            out.append(Metric(t("sales.unconverted"), float(events), compare=False, higher_is_better=False))
        # salespulse_fx_unconverted_total: every money event applied with no rate, ever.
        applied = sum(current["counters"].get("unconverted", {}).values())
        if applied:
            out.append(
                Metric(t("sales.unconverted_total"), float(applied), compare=False, higher_is_better=False)
            )
        return out

    def unconverted_note() -> str:
        missing = now["sales"]["unconverted"] if now["sales"]["reporting_currency"] else {}
        amounts = sep.join(
            f"{format_money(row['amount'], c, cat)} {unit_name(c, cat)}" for c, row in missing.items()
        )
        return t("sales.unconverted_note", amounts=amounts) if missing else ""

    def value(kind: str, number: float | None) -> str:
        return format_value(kind, number, cat)

    sections: list[Section] = []

    # 1. Leads and opportunities.
    leads = now["leads"]
    charts[cid("leads-by-source")] = chart_bars(
        leads["leads_by_source"], t("leads.chart_by_source", window=span), cat, color=BLUE
    )
    charts[cid("leads-trend")] = chart_counts_trend(window, trend, cat)
    sections.append(
        Section(
            1,
            "leads",
            t("leads.title"),
            metric("leads.leads", "leads", "leads"),
            (
                metric("leads.opportunities", "leads", "opportunities"),
                *(
                    (
                        metric("leads.target", "leads", "lead_target", compare=False),
                        metric("leads.attainment", "leads", "attainment", PERCENT),
                    )
                    if leads["lead_target"]
                    else ()
                ),
            ),
            (
                (cid("leads-by-source"), t("leads.alt_by_source")),
                (cid("leads-trend"), t("leads.alt_trend")),
            ),
            note="" if leads["lead_target"] else t("leads.no_targets"),
        )
    )

    # 2. Customer acquisition: spend and CAC in the reporting currency first, then per currency.
    acq = now["acquisition"]
    reporting_currency = now["sales"]["reporting_currency"] or ""
    charts[cid("conversion-by-rep")] = chart_conversion_by_rep(
        acq["conversion_by_rep"], acq["conversion"], window, cat
    )
    sections.append(
        Section(
            2,
            "acquisition",
            t("acquisition.title"),
            metric("acquisition.customers", "acquisition", "customers_acquired"),
            (metric("acquisition.conversion", "acquisition", "conversion", PERCENT),),
            ((cid("conversion-by-rep"), t("acquisition.alt_conversion")),),
            table_head=(
                t("acquisition.head_channel"),
                t("acquisition.head_spend"),
                t("acquisition.head_cac"),
            ),
            table=(
                *(
                    (
                        t(
                            "with_currency",
                            label=cat.term(channel),
                            currency=unit_name(reporting_currency, cat),
                        ),
                        format_money(spend, reporting_currency, cat),
                        value(MONEY, acq["cac_reporting"][channel]),
                    )
                    for channel, spend in acq.get("marketing_spend_reporting", {}).items()
                    if spend
                ),
                *(
                    (
                        t("with_currency", label=cat.term(channel), currency=unit_name(currency, cat)),
                        format_money(acq["marketing_spend"][key], currency, cat),
                        value(MONEY, cac),
                    )
                    for key, cac in acq["cac"].items()
                    if acq["marketing_spend"][key]
                    for channel, _, currency in [key.partition("/")]
                ),
            ),
            note=t("acquisition.note"),
        )
    )

    # 3. Sales volume by region.
    sales = now["sales"]
    charts[cid("sales-by-region")] = chart_sales_by_region(
        sales["won_by_region"], sales["amount_by_region"], window, cat
    )
    sections.append(
        Section(
            3,
            "sales",
            t("sales.title"),
            metric("sales.won", "sales", "deals_won"),
            (
                metric("sales.lost", "sales", "deals_lost", higher_is_better=False),
                metric("sales.win_rate", "sales", "win_rate", PERCENT),
                *reporting("sales.amount", "sales", "amount_reporting"),
                *rate_effect(),
                *per_currency("sales.amount", "sales", "amount_by_currency"),
            ),
            ((cid("sales-by-region"), t("sales.alt_by_region")),),
            table_head=(
                t("sales.head_region"),
                t("sales.head_won"),
                t("sales.head_win_rate"),
                t("sales.head_amount"),
            ),
            table=tuple(
                (
                    region,
                    value(COUNT, sales["won_by_region"].get(region, 0.0)),
                    value(PERCENT, rate),
                    sep.join(
                        f"{unit_name(c, cat)} {format_money(v, c, cat)}"
                        for c, v in sales["amount_by_region"].get(region, {}).items()
                    )
                    or t("empty_cell"),
                )
                for region, rate in sales["win_rate_by_region"].items()
            ),
            note=unconverted_note(),
        )
    )

    # 4. Competitor pricing (latest prices only: there is no history to compare with).
    rows = now["pricing"]["prices"]
    indexes = [r["price_index"] for r in rows if r["price_index"] is not None]
    charts[cid("price-index")] = chart_price_index(rows, cat)
    dearer = sum(i > 1 for i in indexes)
    sections.append(
        Section(
            4,
            "pricing",
            t("pricing.title"),
            Metric(
                t("pricing.median"),
                statistics.median(indexes) if indexes else None,
                kind=INDEX,
                compare=False,
            ),
            (
                Metric(t("pricing.dearer"), float(dearer), compare=False),
                Metric(t("pricing.pairs"), float(len(indexes)), compare=False),
            ),
            ((cid("price-index"), t("pricing.alt_heat_map")),),
            card_note=t("pricing.card_note", dearer=cat.num(str(dearer)), pairs=cat.num(str(len(indexes)))),
            note=t("pricing.note"),
        )
    )

    # 5. Engagement.
    eng = now["engagement"]
    sections.append(
        Section(
            5,
            "engagement",
            t("engagement.title"),
            metric("engagement.engaged", "engagement", "customers_engaged"),
            (
                metric("engagement.activities", "engagement", "activities"),
                metric("engagement.known", "engagement", "customers_known", compare=False),
                metric(
                    "engagement.at_risk",
                    "engagement",
                    "customers_at_risk",
                    higher_is_better=False,
                    compare=False,
                ),
                metric("engagement.at_risk_share", "engagement", "at_risk_share", PERCENT, compare=False),
            ),
            table_head=(t("engagement.head_channel"), t("engagement.head_activities")),
            table=tuple(
                (cat.term(ch), value(COUNT, n))
                for ch, n in sorted(eng["activities_by_channel"].items(), key=lambda kv: -kv[1])
            ),
            note=t("engagement.note"),
        )
    )

    # 6. eNPS (anonymity: org-wide needs 5 responses, per team only for 30d).
    enps = now["enps"]
    sections.append(
        Section(
            6,
            "enps",
            t("enps.title"),
            metric("enps.enps", "enps", "enps", SCORE),
            (metric("enps.responses", "enps", "responses", higher_is_better=None),),
            table_head=(t("enps.head_team"), t("enps.head_enps")) if enps["enps_by_team"] else (),
            table=tuple((team, value(SCORE, v)) for team, v in enps["enps_by_team"].items()),
            note=t("enps.note"),
        )
    )

    # 7. Upsell and cross-sell.
    sections.append(
        Section(
            7,
            "expansion",
            t("expansion.title"),
            metric("expansion.rate", "expansion", "expansion_rate", PERCENT),
            (
                metric("expansion.upsell", "expansion", "upsell"),
                metric("expansion.cross_sell", "expansion", "cross_sell"),
                *reporting("expansion.amount", "expansion", "expansion_amount_reporting"),
                *per_currency("expansion.amount", "expansion", "expansion_amount"),
            ),
            note=t("expansion.note"),
        )
    )

    # 8. NPS.
    nps = now["nps"]
    charts[cid("nps-trend")] = chart_nps_trend(window, trend, cat)
    sections.append(
        Section(
            8,
            "nps",
            t("nps.title"),
            metric("nps.nps", "nps", "nps", SCORE),
            (
                metric("nps.responses", "nps", "responses", higher_is_better=None),
                metric("nps.promoters", "nps", "promoters"),
                metric("nps.passives", "nps", "passives", higher_is_better=None),
                metric("nps.detractors", "nps", "detractors", higher_is_better=False),
            ),
            ((cid("nps-trend"), t("nps.alt_trend")),),
            table_head=(t("nps.head_region"), t("nps.head_nps")),
            table=tuple((r, value(SCORE, v)) for r, v in nps["nps_by_region"].items()),
        )
    )
    return sections, charts
