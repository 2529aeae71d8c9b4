"""Build the SalesPulse Grafana dashboards (dashboards/*.json) from this file.

    pip install '.[dashboards]'                    # grafana-foundation-sdk, in the test extra too
    python dashboards/build_dashboards.py          # rewrite the JSON files
    python dashboards/build_dashboards.py --check  # exit 1 if they are out of date

The JSON files are what Grafana provisions and what the tests read; this script is
their source. Edit the panels here and re-run it, rather than editing the JSON (or
export from Grafana and port the change back here). tests/test_dashboards_static.py
fails when the JSON and this script disagree, and when the JSON holds a key Grafana's
schema does not.

The panels are made with grafana-foundation-sdk's typed builders, the build for the
Grafana that docker-compose.yml runs (pinned in pyproject's ``dashboards`` extra). They
are generated from Grafana's own schemas, so every option is a method and every choice an
enum that mypy checks (``make typecheck``): a misspelled option or value does not build.

Conventions:
- Every panel and target uses the datasource uid ``salespulse-prometheus``.
- Ratios come from the recording rules (``salespulse:<kpi>:<kind>``,
  prometheus/rules/recording.yml). A headline that must follow the ``region``/``rep``
  filters divides two recorded sums instead, since the recorded ratio has no such labels.
- Template variables: ``$window`` (1h, 24h, 7d, 30d), ``$region`` and ``$rep`` (multi,
  All = ``.*``); always matched with ``=~`` for region and rep.
- Panels that belong to an alert link to its runbook: docs/alerts.md#<alertname lower case>.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypedDict

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as options
from grafana_foundation_sdk.builders import dashboard as build
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

HERE = Path(__file__).resolve().parent
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="salespulse-prometheus")
RUNBOOK = "https://github.com/salespulse/salespulse/blob/main/docs/alerts.md#"
WINDOWS = ("1h", "24h", "7d", "30d")

# Filters as they appear in the queries.
W = 'window="$window"'
WR = 'window="$window", region=~"$region"'
WRR = 'window="$window", region=~"$region", rep=~"$rep"'
WON = 'type="deal.won"'
#: The forecast has no window: the current fiscal quarter.
CURRENT = 'period="current"'

Panel = stat.Panel | bargauge.Panel | timeseries.Panel
Section = tuple[str | None, list[Panel]]


class Percent(TypedDict):
    unit: str
    decimals: int


#: A 0..1 ratio shown as a percentage with one decimal.
PCT: Percent = {"unit": "percentunit", "decimals": 1}


def runbook(alert: str) -> build.DashboardLink:
    return build.DashboardLink(f"Runbook: {alert}").url(RUNBOOK + alert.lower()).target_blank(True)


def steps(*pairs: tuple[str, float | None]) -> build.ThresholdsConfig:
    return (
        build.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(color=color, value=value) for color, value in pairs])
    )


NEUTRAL = steps(("blue", None))
# 0..1 ratios where more is better
HIGHER_IS_BETTER = steps(("red", None), ("orange", 0.5), ("green", 0.8))
# NPS-style scores, -100..100
SCORE = steps(("red", None), ("orange", 0), ("green", 30))


def target(expr: str, legend: str = "", ref: int = 0, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + ref))
    query = query.datasource(DATASOURCE)
    return query.instant() if instant else query.range()


def last_value() -> options.ReduceDataOptions:
    return options.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat_panel() -> stat.Panel:
    return (
        stat.Panel()
        .reduce_options(last_value())
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .text_mode(common.BigValueTextMode.AUTO)
    )


def bargauge_panel() -> bargauge.Panel:
    return (
        bargauge.Panel()
        .reduce_options(last_value())
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .value_mode(common.BarGaugeValueMode.COLOR)
        .min_viz_height(16)
        .min_viz_width(8)
        .max_viz_height(300)
        .name_placement(common.BarGaugeNamePlacement.AUTO)
        .sizing(common.BarGaugeSizing.AUTO)
    )


def timeseries_panel() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .draw_style(common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .thresholds_style(options.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.OFF))
        .legend(
            options.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            options.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


KINDS: dict[str, Callable[[], Panel]] = {
    "stat": stat_panel,
    "bargauge": bargauge_panel,
    "timeseries": timeseries_panel,
}


def panel(
    kind: Literal["stat", "bargauge", "timeseries"],
    title: str,
    exprs: list[tuple[str, str]],
    *,
    unit: str,
    description: str,
    w: int,
    h: int = 7,
    thresholds: build.ThresholdsConfig = NEUTRAL,
    decimals: int | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    links: list[build.DashboardLink] | None = None,
) -> Panel:
    instant = kind == "bargauge"  # a bar per series, of its latest value
    colors = (
        model.FieldColorModeId.PALETTE_CLASSIC if kind == "timeseries" else model.FieldColorModeId.THRESHOLDS
    )
    made = (
        KINDS[kind]()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(w)
        .height(h)
        .targets([target(expr, legend, i, instant) for i, (expr, legend) in enumerate(exprs)])
        .unit(unit)
        .thresholds(thresholds)
        .color_scheme(build.FieldColor().mode(colors))
        .mappings([])
        .links(list(links or []))
    )
    if decimals is not None:
        made = made.decimals(decimals)
    if vmin is not None:
        made = made.min(vmin)
    if vmax is not None:
        made = made.max(vmax)
    return made


def layout(board: build.Dashboard, sections: Sequence[Section]) -> build.Dashboard:
    """Place panels left to right in rows of 24 columns, under their row; give each an id."""
    y, next_id = 0, 1
    for title, panels in sections:
        if title is not None:
            board = board.with_row(build.Row(title).id(next_id).grid_pos(model.GridPos(h=1, w=24, x=0, y=y)))
            next_id, y = next_id + 1, y + 1
        x, row_h = 0, 0
        for made in panels:
            size = made.build().grid_pos  # what span() and height() set
            assert size is not None
            if x + size.w > 24:
                x, y, row_h = 0, y + row_h, 0
            board = board.with_panel(made.id(next_id).grid_pos(model.GridPos(h=size.h, w=size.w, x=x, y=y)))
            next_id, x, row_h = next_id + 1, x + size.w, max(row_h, size.h)
        y += row_h
    return board


def query_variable(name: str, label: str, query: str) -> build.QueryVariable:
    return (
        build.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .regex("")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .options([])
        .hide(model.VariableHide.DONT_HIDE)
    )


def window_variable() -> build.CustomVariable:
    return (
        build.CustomVariable("window")
        .label("Window")
        .values(",".join(WINDOWS))
        .current(model.VariableOption(selected=True, text="24h", value="24h"))
        .options([model.VariableOption(selected=w == "24h", text=w, value=w) for w in WINDOWS])
        .multi(False)
        .include_all(False)
        .hide(model.VariableHide.DONT_HIDE)
        .description("Rolling KPI window, ending now (event time).")
    )


def dashboard_links(alerts: list[str]) -> list[Builder[model.DashboardLink]]:
    boards = (
        build.DashboardLink("SalesPulse dashboards")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags(["salespulse"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
        .icon("external link")
        .target_blank(False)
    )
    return [
        boards,
        *(
            runbook(alert)
            .type(model.DashboardLinkType.LINK)
            .icon("doc")
            .tooltip(f"What {alert} means and what to do")
            .as_dropdown(False)
            .include_vars(False)
            .keep_time(False)
            .tags([])
            for alert in alerts
        ),
    ]


def dashboard(
    uid: str,
    title: str,
    description: str,
    sections: Sequence[Section],
    *,
    alerts: list[str],
    variables: Sequence[build.QueryVariable | build.CustomVariable] = (),
    since: str = "now-24h",
    refresh: str = "1m",
) -> model.Dashboard:
    grafana_annotations = (
        build.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )
    board = (
        build.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["salespulse"])
        .timezone("browser")
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .time(since, "now")
        .refresh(refresh)
        .annotation(grafana_annotations)
        .variables(list(variables))
        .links(dashboard_links(alerts))
    )
    return layout(board, sections).build()


# --------------------------------------------------------------------- KPI board


def kpi_dashboard() -> model.Dashboard:
    sections: list[Section] = [
        (
            "1. New leads and opportunities",
            [
                panel(
                    "stat",
                    "Leads ($window)",
                    [(f"sum(salespulse:leads:sum{{{WRR}}})", "")],
                    unit="short",
                    w=4,
                    description="Leads created in the window, selected regions and reps.",
                ),
                panel(
                    "stat",
                    "Opportunities ($window)",
                    [(f"sum(salespulse:opportunities:sum{{{WRR}}})", "")],
                    unit="short",
                    w=4,
                    description="Opportunities created in the window, selected regions and reps.",
                ),
                panel(
                    "stat",
                    "Lead target attainment ($window)",
                    [
                        (
                            f"sum(salespulse:attainment:leads{{{WRR}}})"
                            f" / (sum(salespulse:lead_target:max{{{WRR}}}) > 0)",
                            "",
                        )
                    ],
                    w=4,
                    thresholds=steps(("red", None), ("orange", 0.7), ("green", 1)),
                    description="Leads / lead target prorated to the window "
                    "(monthly target x window / 30d), over the selected (region, rep) pairs "
                    "that have a target.",
                    links=[runbook("SalesPulseLeadsBelowTarget")],
                    **PCT,
                ),
                panel(
                    "bargauge",
                    "Attainment by rep and region ($window)",
                    [
                        (
                            f"salespulse:attainment:ratio{{{WRR}}}",
                            "{{rep}} ({{region}})",
                        )
                    ],
                    w=12,
                    h=10,
                    vmin=0,
                    vmax=1.5,
                    thresholds=steps(("red", None), ("orange", 0.7), ("green", 1)),
                    description="salespulse:attainment:ratio. SalesPulseLeadsBelowTarget "
                    "fires below 70% over 7 days.",
                    links=[runbook("SalesPulseLeadsBelowTarget")],
                    **PCT,
                ),
                panel(
                    "timeseries",
                    "Leads by source ($window window)",
                    [(f"sum by (source) (salespulse:leads:sum{{{WRR}}})", "{{source}}")],
                    unit="short",
                    w=12,
                    description="Leads in the rolling window, by lead source.",
                ),
                panel(
                    "timeseries",
                    "Opportunities by region ($window window)",
                    [
                        (
                            f"sum by (region) (salespulse:opportunities:sum{{{WRR}}})",
                            "{{region}}",
                        )
                    ],
                    unit="short",
                    w=12,
                    description="Opportunities in the rolling window, by region.",
                ),
            ],
        ),
        (
            "2. Customer acquisition rate and cost",
            [
                panel(
                    "stat",
                    "Customers acquired ($window)",
                    [(f"sum(salespulse:customers_acquired:sum{{{WRR}}})", "")],
                    unit="short",
                    w=4,
                    description="deal.won of kind new, selected regions and reps.",
                ),
                panel(
                    "stat",
                    "Conversion ($window)",
                    [
                        (
                            f"sum(salespulse:customers_acquired:sum{{{WRR}}})"
                            f" / (sum(salespulse:leads:sum{{{WRR}}}) > 0)",
                            "",
                        )
                    ],
                    w=4,
                    thresholds=HIGHER_IS_BETTER,
                    description="Customers acquired / leads in the window, selected regions and reps.",
                    **PCT,
                ),
                panel(
                    "stat",
                    "CAC, all channels ($window)",
                    [(f"salespulse:cac:ratio_org{{{W}}}", "{{currency}}")],
                    unit="short",
                    decimals=2,
                    w=4,
                    description="Customer acquisition cost: all marketing spend / all "
                    "customers acquired, per spend currency (salespulse:cac:ratio_org).",
                ),
                panel(
                    "bargauge",
                    "Conversion by rep ($window)",
                    [(f'salespulse:conversion:ratio{{{W}, rep=~"$rep"}}', "{{rep}}")],
                    w=6,
                    h=10,
                    vmin=0,
                    vmax=1,
                    thresholds=HIGHER_IS_BETTER,
                    description="salespulse:conversion:ratio, all regions. "
                    "SalesPulseConversionOutlier fires for a rep below half of all reps "
                    "together over 30 days.",
                    links=[runbook("SalesPulseConversionOutlier")],
                    **PCT,
                ),
                panel(
                    "bargauge",
                    "Conversion by source ($window)",
                    [(f"salespulse:conversion:ratio_by_source{{{W}}}", "{{source}}")],
                    w=6,
                    h=10,
                    vmin=0,
                    vmax=1,
                    thresholds=HIGHER_IS_BETTER,
                    description="salespulse:conversion:ratio_by_source, all regions and reps.",
                    **PCT,
                ),
                panel(
                    "bargauge",
                    "CAC by channel, reporting currency ($window)",
                    [(f"salespulse:cac_reporting:ratio{{{W}}}", "{{channel}}")],
                    unit="short",
                    decimals=2,
                    w=12,
                    h=10,
                    description="Spend of a channel in the reporting currency (each spend at its day's "
                    "rate; salespulse_reporting_currency_info names it) / customers acquired from that "
                    "channel (salespulse:cac_reporting:ratio). Spend with no rate is left out.",
                ),
                panel(
                    "bargauge",
                    "CAC by channel ($window)",
                    [(f"salespulse:cac:ratio{{{W}}}", "{{channel}} ({{currency}})")],
                    unit="short",
                    decimals=2,
                    w=12,
                    h=10,
                    description="Spend of a channel / customers acquired whose lead source "
                    "is that channel (salespulse:cac:ratio). No bar: no customer yet.",
                ),
                panel(
                    "timeseries",
                    "Marketing spend by channel ($window window)",
                    [
                        (
                            f"sum by (channel, currency) (salespulse:marketing_spend:sum{{{W}}})",
                            "{{channel}} ({{currency}})",
                        )
                    ],
                    unit="short",
                    w=12,
                    h=10,
                    description="Marketing spend in the rolling window, in each currency's units.",
                ),
            ],
        ),
        (
            "3. Sales volume by region",
            [
                panel(
                    "stat",
                    "Deals won ($window)",
                    [(f"sum(salespulse:deals_won:sum{{{WR}}})", "")],
                    unit="short",
                    w=4,
                    description="Deals won in the window, selected regions.",
                ),
                panel(
                    "stat",
                    "Win rate ($window)",
                    [
                        (
                            f"sum(salespulse:deals_won:sum_by_region{{{WR}}})"
                            f" / (sum(salespulse:deals_closed:sum_by_region{{{WR}}}) > 0)",
                            "",
                        )
                    ],
                    w=4,
                    thresholds=HIGHER_IS_BETTER,
                    description="Won / (won + lost) in the window, selected regions.",
                    **PCT,
                ),
                panel(
                    "stat",
                    "Amount won, reporting currency ($window)",
                    [(f"sum(salespulse:sales_amount_reporting:sum{{{WR}}})", "")],
                    unit="short",
                    w=4,
                    description="Deals won in the window, selected regions, added up in the reporting "
                    "currency (salespulse_reporting_currency_info), each day's at that day's rate. "
                    "Deals in a currency with no rate are not in it: see the panel of deals with no rate.",
                ),
                panel(
                    "stat",
                    "Effect of rate changes ($window)",
                    [(f"salespulse:fx_rate_effect:sum_org{{{W}}}", "")],
                    unit="short",
                    w=4,
                    description="The window's sales at their own days' rates less the same sales at "
                    "the rates in force when the previous period ended (salespulse:fx_rate_effect:sum_org): "
                    "what rate changes alone did to the reporting-currency total.",
                ),
                panel(
                    "stat",
                    "Won deals with no exchange rate ($window)",
                    [
                        (
                            f"sum by (currency) (salespulse:fx_unconverted_events:sum{{{W}, {WON}}})",
                            "{{currency}}",
                        ),
                        (
                            "sum by (currency) (increase(salespulse:fx_unconverted:sum_max2m[1h]))",
                            "{{currency}} applied in the last hour",
                        ),
                    ],
                    unit="short",
                    w=4,
                    thresholds=steps(("green", None), ("orange", 1)),
                    description="Deals won in the window whose currency has no rate on or before their "
                    "day: left out of the reporting-currency totals, never taken at 1.0. Add their "
                    "rates to SALESPULSE_FX_RATES. Also the money events (deals, spend, prices) "
                    "applied in the last hour with no rate (salespulse_fx_unconverted_total).",
                    links=[runbook("SalesPulseFxRateMissing")],
                ),
                panel(
                    "stat",
                    "Amount won ($window)",
                    [
                        (
                            f"sum by (currency) (salespulse:sales_amount:sum{{{WR}}})",
                            "{{currency}}",
                        )
                    ],
                    unit="short",
                    w=4,
                    description="Amount of deals won in the window, per currency, selected regions.",
                ),
                panel(
                    "bargauge",
                    "Win rate by region ($window)",
                    [(f"salespulse:win_rate:ratio{{{WR}}}", "{{region}}")],
                    w=12,
                    h=10,
                    vmin=0,
                    vmax=1,
                    thresholds=HIGHER_IS_BETTER,
                    description="salespulse:win_rate:ratio: won / (won + lost).",
                    **PCT,
                ),
                panel(
                    "timeseries",
                    "Amount won by region ($window window)",
                    [
                        (
                            f"salespulse:sales_amount:sum{{{WR}}}",
                            "{{region}} ({{currency}})",
                        )
                    ],
                    unit="short",
                    w=12,
                    description="Amount won in the rolling window, by region and currency.",
                ),
                panel(
                    "bargauge",
                    "Deals won by kind ($window)",
                    [(f"sum by (kind) (salespulse:deals_won:sum{{{WR}}})", "{{kind}}")],
                    unit="short",
                    w=6,
                    description="new, upsell, cross_sell, renewal; selected regions.",
                ),
                panel(
                    "bargauge",
                    "Deals lost by region ($window)",
                    [(f"salespulse:deals_lost:sum{{{WR}}}", "{{region}}")],
                    unit="short",
                    w=6,
                    description="Deals lost in the window, by region.",
                ),
            ],
        ),
        (
            "4. Competitor pricing",
            [
                panel(
                    "bargauge",
                    "Price index: our list price / competitor price",
                    [
                        (
                            "salespulse:price_index:ratio",
                            "{{product}} vs {{competitor}} ({{currency}})",
                        )
                    ],
                    unit="percentunit",
                    decimals=0,
                    w=12,
                    h=12,
                    vmin=0.5,
                    vmax=1.5,
                    thresholds=steps(("green", None), ("orange", 1), ("red", 1 / 0.9)),
                    description="Latest list price / latest competitor price, same product "
                    "and currency. Above 100% we are more expensive; from 111% the "
                    "competitor is at least 10% cheaper (SalesPulseCompetitorUndercut).",
                    links=[runbook("SalesPulseCompetitorUndercut")],
                ),
                panel(
                    "timeseries",
                    "Competitor prices (latest)",
                    [
                        (
                            "salespulse:competitor_price:max",
                            "{{product}} {{competitor}} ({{currency}})",
                        )
                    ],
                    unit="short",
                    w=6,
                    h=12,
                    description="Latest observed competitor price by event time.",
                ),
                panel(
                    "timeseries",
                    "Our list prices (latest)",
                    [("salespulse:list_price:max", "{{product}} ({{currency}})")],
                    unit="short",
                    w=6,
                    h=12,
                    description="Latest list price by event time.",
                ),
            ],
        ),
        (
            "5. Engagement of existing customers",
            [
                panel(
                    "stat",
                    "Customers engaged ($window)",
                    [(f"sum(salespulse:customers_engaged:sum{{{W}}})", "")],
                    unit="short",
                    w=4,
                    description="Distinct customers with at least one activity in the window.",
                ),
                panel(
                    "stat",
                    "Known customers",
                    [("sum(salespulse:customers_known:sum)", "")],
                    unit="short",
                    w=4,
                    description="Customers with at least one deal won, of any age.",
                ),
                panel(
                    "stat",
                    "Customers at risk",
                    [("salespulse:customers_at_risk:ratio", "")],
                    w=4,
                    thresholds=steps(("green", None), ("orange", 0.1), ("red", 0.2)),
                    description="Share of known customers with no activity and no deal "
                    "won in 30 days. SalesPulseCustomersAtRisk fires above 20%.",
                    links=[runbook("SalesPulseCustomersAtRisk")],
                    **PCT,
                ),
                panel(
                    "bargauge",
                    "Activities by channel ($window)",
                    [
                        (
                            f"sum by (channel) (salespulse:customer_activities:sum{{{W}}})",
                            "{{channel}}",
                        )
                    ],
                    unit="short",
                    w=12,
                    description="Customer activities in the window, by channel.",
                ),
                panel(
                    "timeseries",
                    "Engaged and at-risk customers",
                    [
                        (f"sum(salespulse:customers_engaged:sum{{{W}}})", "engaged ($window)"),
                        ("sum(salespulse:customers_at_risk:sum)", "at risk"),
                    ],
                    unit="short",
                    w=24,
                    description="Engaged customers in the window and customers at risk.",
                    links=[runbook("SalesPulseCustomersAtRisk")],
                ),
            ],
        ),
        (
            "6. Employee satisfaction (eNPS)",
            [
                panel(
                    "stat",
                    "eNPS, org-wide ($window)",
                    [(f'salespulse:enps:score{{{W}, team="all"}}', "")],
                    unit="short",
                    decimals=0,
                    vmin=-100,
                    vmax=100,
                    w=6,
                    thresholds=SCORE,
                    description="100 x (promoters - detractors) / responses. Exported only "
                    "for windows with at least 5 answers.",
                    links=[runbook("SalesPulseENPSLow")],
                ),
                panel(
                    "stat",
                    "eNPS answers, org-wide ($window)",
                    [(f'salespulse:enps:responses{{{W}, team="all"}}', "")],
                    unit="short",
                    w=6,
                    description="eNPS answers in the window.",
                ),
                panel(
                    "bargauge",
                    "eNPS by team (30 days)",
                    [('salespulse:enps:score{window="30d", team!="all"}', "{{team}}")],
                    unit="short",
                    decimals=0,
                    vmin=-100,
                    vmax=100,
                    w=12,
                    h=10,
                    thresholds=SCORE,
                    description="Per-team eNPS exists only for 30 days and only for teams "
                    "with at least 5 answers (anonymity). Do not compare it over time to "
                    "narrow down single answers.",
                ),
                panel(
                    "timeseries",
                    "eNPS answers by category ($window window)",
                    [
                        (
                            f'sum by (category) (salespulse:enps_responses:sum{{{W}, team="all"}})',
                            "{{category}}",
                        )
                    ],
                    unit="short",
                    w=12,
                    description="Promoters (9-10), passives (7-8), detractors (0-6), org-wide.",
                ),
            ],
        ),
        (
            "7. Upsell and cross-sell",
            [
                panel(
                    "stat",
                    "Expansion rate ($window)",
                    [(f"salespulse:expansion_rate:ratio{{{W}}}", "")],
                    w=6,
                    thresholds=NEUTRAL,
                    description="(upsell + cross_sell deals) / all deals won "
                    "(salespulse:expansion_rate:ratio).",
                    **PCT,
                ),
                panel(
                    "bargauge",
                    "Expansion rate by kind ($window)",
                    [(f"salespulse:expansion_rate:ratio_by_kind{{{W}}}", "{{kind}}")],
                    w=6,
                    vmin=0,
                    vmax=1,
                    description="Share of all deals won that are upsell or cross_sell.",
                    **PCT,
                ),
                panel(
                    "stat",
                    "Expansion amount, reporting currency ($window)",
                    [(f"sum by (kind) (salespulse:expansion_amount_reporting:sum{{{W}}})", "{{kind}}")],
                    unit="short",
                    w=6,
                    description="Upsell and cross-sell amounts in the reporting currency, each day's at "
                    "that day's rate (salespulse:expansion_amount_reporting:sum).",
                ),
                panel(
                    "timeseries",
                    "Expansion amount by kind ($window window)",
                    [
                        (
                            f"sum by (kind, currency) (salespulse:expansion_amount:sum{{{W}}})",
                            "{{kind}} ({{currency}})",
                        )
                    ],
                    unit="short",
                    w=12,
                    description="Amount of upsell and cross-sell deals won, per currency.",
                ),
            ],
        ),
        (
            "8. Net Promoter Score",
            [
                panel(
                    "stat",
                    "NPS, org-wide ($window)",
                    [(f"salespulse:nps:score_org{{{W}}}", "")],
                    unit="short",
                    decimals=0,
                    vmin=-100,
                    vmax=100,
                    w=6,
                    thresholds=SCORE,
                    description="100 x (promoters - detractors) / responses, all regions "
                    "and products (salespulse:nps:score_org).",
                    links=[runbook("SalesPulseNPSLow")],
                ),
                panel(
                    "bargauge",
                    "NPS by region and product ($window)",
                    [(f"salespulse:nps:score{{{WR}}}", "{{region}} / {{product}}")],
                    unit="short",
                    decimals=0,
                    vmin=-100,
                    vmax=100,
                    w=18,
                    h=10,
                    thresholds=SCORE,
                    description="salespulse:nps:score. SalesPulseNPSLow fires below 0 over "
                    "7 days with at least 30 answers.",
                    links=[runbook("SalesPulseNPSLow")],
                ),
                panel(
                    "timeseries",
                    "Detractor share",
                    [
                        ("salespulse:nps:detractor_share_org", "{{window}}"),
                        (
                            "salespulse:nps:detractor_share_baseline_org",
                            "7 days before the last hour",
                        ),
                    ],
                    w=12,
                    description="Share of detractors per window, org-wide. "
                    "SalesPulseDetractorSpike compares the 1h share with the 7 days "
                    "before that hour.",
                    links=[runbook("SalesPulseDetractorSpike")],
                    **PCT,
                ),
                panel(
                    "timeseries",
                    "NPS answers by category ($window window)",
                    [
                        (
                            f"sum by (category) (salespulse:nps_responses:sum{{{WR}}})",
                            "{{category}}",
                        )
                    ],
                    unit="short",
                    w=12,
                    description="Promoters (9-10), passives (7-8), detractors (0-6), selected regions.",
                ),
                # Detractor follow-up: who to call, who was called, and how fast.
                panel(
                    "stat",
                    "Open detractor cases",
                    [
                        ("sum(salespulse:detractors_open:sum_org) or vector(0)", "open"),
                        ("sum(salespulse:detractors_overdue:sum) or vector(0)", "overdue"),
                    ],
                    unit="short",
                    decimals=0,
                    w=6,
                    thresholds=steps(("green", None), ("red", 1)),
                    description="Detractors whose latest answer is not yet followed up by a call, "
                    "email, meeting or support contact, and those open longer than the target "
                    "(SALESPULSE_DETRACTOR_SLA). The list: GET /detractors or `salespulse detractors`.",
                    links=[runbook("SalesPulseDetractorsUnanswered")],
                ),
                panel(
                    "bargauge",
                    "Open detractor cases by owner",
                    [
                        (
                            'sum by (owner) (salespulse:detractors_open:sum{region=~"$region"})',
                            "{{owner}}",
                        )
                    ],
                    unit="short",
                    decimals=0,
                    w=8,
                    description="Open cases per owner (the rep of the customer's latest deal won, "
                    "or unassigned), selected regions.",
                ),
                panel(
                    "timeseries",
                    "Detractor follow-up rate ($window, by answer time)",
                    [
                        (f"salespulse:detractors:follow_up_rate{{{W}}}", "followed up"),
                        (f"salespulse:detractors:follow_up_in_target_rate{{{W}}}", "within the target"),
                    ],
                    w=10,
                    description="Of the detractor cases answered in the window, the share followed "
                    "up at all and within the target (salespulse:detractors:follow_up_rate).",
                    links=[runbook("SalesPulseDetractorsUnanswered")],
                    **PCT,
                ),
            ],
        ),
        (
            "9. Pipeline forecast against quota (this fiscal quarter)",
            [
                panel(
                    "bargauge",
                    "Forecast this quarter by measure",
                    [
                        (
                            "sum by (measure, currency) (salespulse:forecast_amount:sum"
                            f'{{{CURRENT}, region=~"$region", rep=~"$rep"}})',
                            "{{measure}} {{currency}}",
                        )
                    ],
                    unit="short",
                    w=8,
                    description="Closed won, commit (closed won + open commit), best case, open "
                    "pipeline and weighted pipeline expected to close in the current fiscal quarter, "
                    "selected regions and reps. Past days and the waterfall: `salespulse forecast`.",
                ),
                panel(
                    "bargauge",
                    "Commit against quota",
                    [
                        (
                            f'salespulse:forecast_commit:ratio{{{CURRENT}, rep=~"$rep"}}',
                            "{{rep}} {{currency}}",
                        )
                    ],
                    w=8,
                    thresholds=HIGHER_IS_BETTER,
                    description="Per rep with an amount quota: commit / quota "
                    "(salespulse:forecast_commit:ratio).",
                    links=[runbook("SalesPulseForecastBelowQuota")],
                    **PCT,
                ),
                panel(
                    "timeseries",
                    "Pipeline coverage of what is still to win",
                    [
                        (
                            f'salespulse:forecast_coverage_remaining:ratio{{{CURRENT}, rep=~"$rep"}}',
                            "{{rep}} {{currency}}",
                        )
                    ],
                    unit="short",
                    decimals=2,
                    w=8,
                    description="Open pipeline / (quota - closed won), per rep; none once the quota "
                    "is reached (salespulse:forecast_coverage_remaining:ratio).",
                    links=[runbook("SalesPulseForecastBelowQuota")],
                ),
            ],
        ),
    ]
    return dashboard(
        "salespulse-kpis",
        "SalesPulse - Sales KPIs",
        "The eight sales KPIs, cluster-wide, from the SalesPulse recording rules.",
        sections,
        variables=[
            window_variable(),
            query_variable("region", "Region", 'label_values(salespulse_leads{window="$window"}, region)'),
            query_variable(
                "rep",
                "Rep",
                'label_values(salespulse_leads{window="$window", region=~"$region"}, rep)',
            ),
        ],
        alerts=[
            "SalesPulseFxRateMissing",
            "SalesPulseLeadsBelowTarget",
            "SalesPulseConversionOutlier",
            "SalesPulseCompetitorUndercut",
            "SalesPulseCustomersAtRisk",
            "SalesPulseENPSLow",
            "SalesPulseNPSLow",
            "SalesPulseDetractorSpike",
            "SalesPulseDetractorsUnanswered",
            "SalesPulseForecastBelowQuota",
        ],
    )


# ---------------------------------------------------------------- pipeline board


def pipeline_dashboard() -> model.Dashboard:
    sections: list[Section] = [
        (
            "Workers",
            [
                panel(
                    "stat",
                    "Workers up",
                    [('sum(up{job="salespulse"})', "")],
                    unit="short",
                    w=6,
                    h=5,
                    thresholds=steps(("red", None), ("green", 1)),
                    description="Workers Prometheus scraped successfully. "
                    "SalesPulseWorkerDown fires at 0 for a minute.",
                    links=[runbook("SalesPulseWorkerDown")],
                ),
                panel(
                    "stat",
                    "Partitions owned",
                    [("sum(salespulse_partitions_owned)", "")],
                    unit="short",
                    w=6,
                    h=5,
                    description="Partitions actively owned (and exported) by all workers. "
                    "Should equal SALESPULSE_PARTITIONS.",
                ),
                panel(
                    "stat",
                    "Events/s",
                    [("sum(salespulse:events:rate5m)", "")],
                    unit="cps",
                    decimals=1,
                    w=6,
                    h=5,
                    description="Events applied per second over 5 minutes (duplicates excluded).",
                ),
                panel(
                    "stat",
                    "Dead letters (last 10 minutes)",
                    [("sum(increase(salespulse:events_rejected:sum_max2m[10m]))", "")],
                    unit="short",
                    decimals=0,
                    w=6,
                    h=5,
                    thresholds=steps(("green", None), ("red", 0.5)),
                    description="Events rejected to crm.deadletter in the last 10 minutes. "
                    "SalesPulseDeadLetters fires above 0.",
                    links=[runbook("SalesPulseDeadLetters")],
                ),
                panel(
                    "timeseries",
                    "Workers up and partitions owned",
                    [
                        ('sum(up{job="salespulse"})', "workers up"),
                        ("salespulse_partitions_owned", "partitions on {{instance}}"),
                    ],
                    unit="short",
                    w=24,
                    description="A rebalance shows as partitions moving between workers.",
                    links=[runbook("SalesPulseWorkerDown")],
                ),
            ],
        ),
        (
            "Throughput",
            [
                panel(
                    "timeseries",
                    "Events/s by type",
                    [("salespulse:events:rate5m", "{{type}}")],
                    unit="cps",
                    w=12,
                    description="Events applied per second over 5 minutes, cluster-wide "
                    "(salespulse:events:rate5m; rebalances do not show as bursts).",
                ),
                panel(
                    "timeseries",
                    "Rejected events/s by reason",
                    [("salespulse:events_rejected:rate5m", "{{reason}}")],
                    unit="cps",
                    w=6,
                    description="Messages sent to crm.deadletter, by reason.",
                    links=[runbook("SalesPulseDeadLetters")],
                ),
                panel(
                    "timeseries",
                    "Late events/s by type",
                    [("salespulse:events_late:rate5m", "{{type}}")],
                    unit="cps",
                    w=6,
                    description="Events older than the 62-day bucket retention: not in any "
                    "windowed count (latest-value state still takes them).",
                ),
            ],
        ),
        (
            "Backlog and latency",
            [
                panel(
                    "timeseries",
                    "Consumer lag by topic",
                    [("salespulse:consumer_lag:sum_by_topic", "{{topic}}")],
                    unit="short",
                    w=8,
                    thresholds=steps(("green", None), ("red", 10000)),
                    description="Events behind the high watermarks, summed over partitions. "
                    "SalesPulseConsumerLagHigh fires above 10000 for 5 minutes.",
                    links=[runbook("SalesPulseConsumerLagHigh")],
                ),
                panel(
                    "timeseries",
                    "Consumer lag by partition",
                    [("salespulse:consumer_lag:max", "{{topic}}/{{partition}}")],
                    unit="short",
                    w=8,
                    description="One stuck partition points at the worker that owns it.",
                    links=[runbook("SalesPulseConsumerLagHigh")],
                ),
                panel(
                    "timeseries",
                    "Event-to-state latency",
                    [
                        (
                            "histogram_quantile(0.5, sum by (le) "
                            "(rate(salespulse_event_to_state_seconds_bucket[5m])))",
                            "p50",
                        ),
                        (
                            "histogram_quantile(0.99, sum by (le) "
                            "(rate(salespulse_event_to_state_seconds_bucket[5m])))",
                            "p99",
                        ),
                    ],
                    unit="s",
                    w=8,
                    description="From the Kafka record timestamp to the moment the table "
                    "applied the event, over 5 minutes. Gaps: no event in 5 minutes.",
                ),
            ],
        ),
        (
            "Connectors",
            [
                panel(
                    "stat",
                    "Since the last successful poll",
                    [
                        (
                            "time() - max by (connector) "
                            "(salespulse_connector_last_success_timestamp_seconds)",
                            "{{connector}}",
                        )
                    ],
                    unit="s",
                    decimals=0,
                    w=8,
                    thresholds=steps(("green", None), ("orange", 300), ("red", 600)),
                    description="Seconds since a connector (vtiger) last finished a poll or a page. "
                    "A poll that finds nothing new counts, so a quiet CRM stays green. "
                    "SalesPulseConnectorStalled fires above 600.",
                    links=[runbook("SalesPulseConnectorStalled")],
                ),
                panel(
                    "timeseries",
                    "Connector polls, errors and events/s",
                    [
                        (
                            "sum by (connector, outcome) (rate(salespulse_connector_polls_total[5m]))",
                            "{{connector}} polls: {{outcome}}",
                        ),
                        (
                            "sum by (connector, reason) (rate(salespulse_connector_errors_total[5m]))",
                            "{{connector}} errors: {{reason}}",
                        ),
                        (
                            "sum by (connector) (rate(salespulse_connector_events_total[5m]))",
                            "{{connector}} events produced",
                        ),
                        (
                            "sum by (connector, reason) (rate(salespulse_connector_records_dead_total[5m]))",
                            "{{connector}} records dead-lettered: {{reason}}",
                        ),
                    ],
                    unit="cps",
                    w=16,
                    description="Polls by outcome, failed polls by cause (unreachable, auth, query, "
                    "unexpected_field, broker), events produced, and CRM records sent to the dead "
                    "letters by the vtiger connector and the webhooks, per second over 5 minutes.",
                    links=[runbook("SalesPulseConnectorStalled"), runbook("SalesPulseConnectorDeadLetters")],
                ),
            ],
        ),
    ]
    return dashboard(
        "salespulse-pipeline",
        "SalesPulse - Pipeline health",
        "Workers, throughput, dead letters, consumer lag and latency of the SalesPulse stream processors, "
        "and the CRM connectors that feed them.",
        sections,
        since="now-6h",
        refresh="30s",
        alerts=[
            "SalesPulseWorkerDown",
            "SalesPulseConsumerLagHigh",
            "SalesPulseDeadLetters",
            "SalesPulseConnectorStalled",
        ],
    )


BOARDS = {
    "salespulse-kpis.json": kpi_dashboard,
    "salespulse-pipeline.json": pipeline_dashboard,
}


def render(make: Callable[[], model.Dashboard]) -> str:
    return json.dumps(make(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, make in BOARDS.items():
        path = HERE / name
        text = render(make)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python dashboards/build_dashboards.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
