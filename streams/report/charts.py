"""The PNG charts embedded in the digest, drawn with matplotlib.

Mail clients cannot run scripts, so every chart is rendered server-side to a PNG that is
attached inline to the mail and embedded as a ``data:`` URI in the HTML file. Only the
object-oriented matplotlib API is used (no pyplot), so no GUI backend is involved; the one
global it needs, the font of a language, is set by ``fonts.chart_fonts`` around the drawing.
Every text comes from the catalogue. matplotlib (3.11 and later, through libraqm) joins
Arabic-script letters and orders right-to-left text itself, so Persian goes in as written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from io import BytesIO
from typing import Any

from matplotlib.category import StrCategoryFormatter
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, Formatter, PercentFormatter

from salespulse.streams.report.catalogue import Catalogue
from salespulse.streams.report.formatting import (
    BLUE,
    COUNT,
    GREEN,
    GREY,
    INK,
    ORANGE,
    PERCENT,
    SCORE,
    _compact,
    format_value,
    shown_money,
)

DPI = 150


def _nums(values: Mapping[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v is not None}


def _figure(width: float = 6.0, height: float = 3.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig.patch.set_facecolor("white")
    return fig


class _LocalDigits(Formatter):
    """Tick labels of another formatter, in the catalogue's digits."""

    def __init__(self, inner: Formatter, cat: Catalogue) -> None:
        self.inner, self.cat = inner, cat

    def set_axis(self, axis: Any) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def format_ticks(self, values: Any) -> list[str]:
        return [self.cat.num(label) for label in self.inner.format_ticks(values)]

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.cat.num(self.inner(x, pos))

    def get_offset(self) -> str:
        return self.cat.num(self.inner.get_offset())


def _png(fig: Figure, cat: Catalogue) -> bytes:
    if cat.numerals:  # numbers on the axes that matplotlib formats itself; labels stay as given
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                formatter = axis.get_major_formatter()
                if not isinstance(formatter, StrCategoryFormatter | FixedFormatter):
                    axis.set_major_formatter(_LocalDigits(formatter, cat))
    out = BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _style(ax: Any, title: str, cat: Catalogue, grid: bool = True) -> None:
    ax.set_title(title, loc=cat.start, fontsize=10, color=INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8, colors=INK)
    if grid:
        ax.grid(axis="y", color="#e2e8f0", linewidth=0.6)
        ax.set_axisbelow(True)


def _legend(ax: Any, cat: Catalogue) -> None:
    """Above the plot, on the side the title does not start on, so it hides neither."""
    ax.legend(
        fontsize=8,
        frameon=False,
        loc=f"lower {cat.end}",
        bbox_to_anchor=(1.0 if cat.end == "right" else 0.0, 1.0),
        ncols=2,
        markerfirst=not cat.rtl,  # a right-to-left reader meets the marker first on the right
    )


def _empty(title: str, cat: Catalogue, width: float = 6.0, height: float = 2.0) -> bytes:
    fig = _figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, loc=cat.start, fontsize=10, color=INK)
    ax.text(0.5, 0.5, cat.t("chart.empty"), ha="center", va="center", color=GREY, transform=ax.transAxes)
    return _png(fig, cat)


def chart_bars(values: Mapping[str, float], title: str, cat: Catalogue, color: str = BLUE) -> bytes:
    """Horizontal bars, largest first; bar names are terms of the catalogue (lead sources)."""
    items = sorted(((k, v) for k, v in values.items() if v), key=lambda kv: kv[1])
    if not items:
        return _empty(title, cat)
    fig = _figure(6.0, max(2.2, 0.32 * len(items) + 0.9))
    ax = fig.add_subplot()
    bars = ax.barh([cat.term(k) for k, _ in items], [v for _, v in items], color=color)
    ax.bar_label(bars, labels=[format_value(COUNT, v, cat) for _, v in items], padding=3, fontsize=8)
    ax.margins(x=0.12)
    _style(ax, title, cat, grid=False)
    return _png(fig, cat)


def chart_conversion_by_rep(
    by_rep: Mapping[str, float | None], team: float | None, window: str, cat: Catalogue
) -> bytes:
    title = cat.t("chart.conversion_by_rep", window=cat.window(window))
    values = _nums(by_rep)
    if not values:
        return _empty(title, cat)
    reps = sorted(values)
    fig = _figure(6.0, 3.0)
    ax = fig.add_subplot()
    colors = [GREEN if team is not None and values[r] >= team else BLUE for r in reps]
    ax.bar(reps, [values[r] for r in reps], color=colors)
    if team is not None:
        ax.axhline(
            team,
            color=ORANGE,
            linewidth=1.2,
            linestyle="--",
            label=cat.t("chart.team", value=format_value(PERCENT, team, cat)),
        )
        _legend(ax, cat)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.tick_params(axis="x", labelrotation=70)
    _style(ax, title, cat)
    return _png(fig, cat)


def chart_sales_by_region(
    won: Mapping[str, float], amounts: Mapping[str, Mapping[str, Decimal]], window: str, cat: Catalogue
) -> bytes:
    title = cat.t("chart.sales_by_region", window=cat.window(window))
    items = sorted(((r, n) for r, n in won.items() if n), key=lambda kv: kv[1])
    if not items:
        return _empty(title, cat)
    fig = _figure(6.0, max(2.2, 0.34 * len(items) + 0.9))
    ax = fig.add_subplot()
    bars = ax.barh([r for r, _ in items], [n for _, n in items], color=BLUE)
    labels = []
    for region, n in items:
        shown = [shown_money(v, c, cat) for c, v in sorted(amounts.get(region, {}).items())]
        money = " + ".join(f"{unit} {_compact(float(amount), cat)}" for amount, unit, _ in shown)
        count = format_value(COUNT, n, cat)
        labels.append(cat.t("chart.won_and_amount", count=count, money=money) if money else count)
    ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
    ax.margins(x=0.35)
    _style(ax, title, cat, grid=False)
    return _png(fig, cat)


def chart_price_index(rows: Sequence[Mapping[str, Any]], cat: Catalogue) -> bytes:
    title = cat.t("chart.price_index")
    cells = {
        (f"{r['product']} ({r['currency']})", r["competitor"]): float(r["price_index"])
        for r in rows
        if r["price_index"] is not None
    }
    if not cells:
        return _empty(title, cat)
    products = sorted({p for p, _ in cells})
    competitors = sorted({c for _, c in cells})
    grid = [[cells.get((p, c), math.nan) for c in competitors] for p in products]
    finite = [v for v in cells.values()]
    spread = max(0.05, max(abs(v - 1.0) for v in finite))
    fig = _figure(6.0, max(2.5, 0.28 * len(products) + 1.2))
    ax = fig.add_subplot()
    image = ax.imshow(
        grid,
        cmap="RdYlGn_r",
        norm=TwoSlopeNorm(vcenter=1.0, vmin=1.0 - spread, vmax=1.0 + spread),
        aspect="auto",
    )
    ax.set_xticks(range(len(competitors)), competitors)
    ax.set_yticks(range(len(products)), products)
    ax.xaxis.tick_top()
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if not math.isnan(v):
                dark = abs(v - 1.0) > 0.6 * spread
                ax.text(
                    j,
                    i,
                    cat.num(f"{v:.2f}"),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else INK,
                )
    ax.tick_params(labelsize=8, length=0)
    ax.set_title(title, loc=cat.start, fontsize=10, color=INK)
    fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    return _png(fig, cat)


def _trend_axis(ax: Any, trend: Sequence[tuple[int, dict[str, Any]]], cat: Catalogue) -> None:
    """One tick per point, labelled with the day its window ends."""
    labels = [cat.day(at) for at, _ in trend]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(cat.t("chart.window_ending"), fontsize=8, color=GREY)


def chart_nps_trend(window: str, trend: Sequence[tuple[int, dict[str, Any]]], cat: Catalogue) -> bytes:
    title = cat.t("chart.nps_trend", window=cat.window(window))
    nps = [v["windows"][window]["nps"]["nps"] for _, v in trend]
    enps = [v["windows"][window]["enps"]["enps"] for _, v in trend]
    if all(x is None for x in nps + enps):
        return _empty(title, cat)
    fig = _figure(6.0, 3.0)
    ax = fig.add_subplot()
    xs = range(len(trend))
    ax.plot(xs, [math.nan if v is None else v for v in nps], marker="o", color=BLUE, label=cat.t("chart.nps"))
    ax.plot(
        xs,
        [math.nan if v is None else v for v in enps],
        marker="s",
        color=ORANGE,
        linestyle="--",
        label=cat.t("chart.enps"),
    )
    ax.axhline(0, color=GREY, linewidth=0.8)
    last = nps[-1]
    if last is not None:
        ax.annotate(
            format_value(SCORE, last, cat),
            (xs[-1], last),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
            color=BLUE,
        )
    _trend_axis(ax, trend, cat)
    values = [v for v in nps + enps if v is not None]
    ax.set_ylim(min(-10.0, min(values) - 10), max(10.0, max(values) + 10))
    _legend(ax, cat)
    _style(ax, title, cat)
    return _png(fig, cat)


def chart_counts_trend(window: str, trend: Sequence[tuple[int, dict[str, Any]]], cat: Catalogue) -> bytes:
    title = cat.t("chart.counts_trend", window=cat.window(window))
    leads = [v["windows"][window]["leads"]["leads"] for _, v in trend]
    won = [v["windows"][window]["sales"]["deals_won"] for _, v in trend]
    if not any(leads) and not any(won):
        return _empty(title, cat)
    fig = _figure(6.0, 2.8)
    ax = fig.add_subplot()
    xs = list(range(len(trend)))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], leads, width, color=BLUE, label=cat.t("chart.leads"))
    ax.bar([x + width / 2 for x in xs], won, width, color=GREEN, label=cat.t("chart.deals_won"))
    _trend_axis(ax, trend, cat)
    _legend(ax, cat)
    _style(ax, title, cat)
    return _png(fig, cat)
