"""The PNG charts embedded in the digest, drawn with matplotlib.

Mail clients cannot run scripts, so every chart is rendered server-side to a PNG that is
attached inline to the mail and embedded as a ``data:`` URI in the HTML file. Only the
object-oriented matplotlib API is used (no pyplot), so no global state or GUI backend is
involved and the schedule can draw charts from any thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

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
)

DPI = 150


def _nums(values: Mapping[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v is not None}


def _figure(width: float = 6.0, height: float = 3.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig.patch.set_facecolor("white")
    return fig


def _png(fig: Figure) -> bytes:
    out = BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _style(ax: Any, title: str, grid: bool = True) -> None:
    ax.set_title(title, loc="left", fontsize=10, color=INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8, colors=INK)
    if grid:
        ax.grid(axis="y", color="#e2e8f0", linewidth=0.6)
        ax.set_axisbelow(True)


def _legend(ax: Any) -> None:
    """Above the plot, right-aligned, so it never hides data."""
    ax.legend(fontsize=8, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2)


def _empty(title: str, width: float = 6.0, height: float = 2.0) -> bytes:
    fig = _figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontsize=10, color=INK)
    ax.text(0.5, 0.5, "no data in this period", ha="center", va="center", color=GREY, transform=ax.transAxes)
    return _png(fig)


def chart_bars(values: Mapping[str, float], title: str, color: str = BLUE) -> bytes:
    """Horizontal bars, largest first."""
    items = sorted(((k, v) for k, v in values.items() if v), key=lambda kv: kv[1])
    if not items:
        return _empty(title)
    fig = _figure(6.0, max(2.2, 0.32 * len(items) + 0.9))
    ax = fig.add_subplot()
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color=color)
    ax.bar_label(bars, labels=[format_value(COUNT, v) for _, v in items], padding=3, fontsize=8)
    ax.margins(x=0.12)
    _style(ax, title, grid=False)
    return _png(fig)


def chart_conversion_by_rep(by_rep: Mapping[str, float | None], team: float | None, window: str) -> bytes:
    title = f"Lead conversion by rep, last {window}"
    values = _nums(by_rep)
    if not values:
        return _empty(title)
    reps = sorted(values)
    fig = _figure(6.0, 3.0)
    ax = fig.add_subplot()
    colors = [GREEN if team is not None and values[r] >= team else BLUE for r in reps]
    ax.bar(reps, [values[r] for r in reps], color=colors)
    if team is not None:
        ax.axhline(
            team, color=ORANGE, linewidth=1.2, linestyle="--", label=f"team {format_value(PERCENT, team)}"
        )
        _legend(ax)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.tick_params(axis="x", labelrotation=70)
    _style(ax, title)
    return _png(fig)


def chart_sales_by_region(
    won: Mapping[str, float], amounts: Mapping[str, Mapping[str, float]], window: str
) -> bytes:
    title = f"Deals won by region, last {window} (label: amount won)"
    items = sorted(((r, n) for r, n in won.items() if n), key=lambda kv: kv[1])
    if not items:
        return _empty(title)
    fig = _figure(6.0, max(2.2, 0.34 * len(items) + 0.9))
    ax = fig.add_subplot()
    bars = ax.barh([r for r, _ in items], [n for _, n in items], color=BLUE)
    labels = []
    for region, n in items:
        money = " + ".join(f"{c} {_compact(v)}" for c, v in sorted(amounts.get(region, {}).items()))
        labels.append(f"{format_value(COUNT, n)}  ({money})" if money else format_value(COUNT, n))
    ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
    ax.margins(x=0.35)
    _style(ax, title, grid=False)
    return _png(fig)


def chart_price_index(rows: Sequence[Mapping[str, Any]]) -> bytes:
    title = "Price index: our list price / competitor price (latest)"
    cells = {
        (f"{r['product']} ({r['currency']})", r["competitor"]): float(r["price_index"])
        for r in rows
        if r["price_index"] is not None
    }
    if not cells:
        return _empty(title)
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
                    j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else INK
                )
    ax.tick_params(labelsize=8, length=0)
    ax.set_title(title, loc="left", fontsize=10, color=INK)
    fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    return _png(fig)


def _trend_axis(ax: Any, trend: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """One tick per point, labelled with the day its window ends."""
    labels = [datetime.fromtimestamp(at, UTC).strftime("%d %b") for at, _ in trend]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("window ending", fontsize=8, color=GREY)


def chart_nps_trend(window: str, trend: Sequence[tuple[int, dict[str, Any]]]) -> bytes:
    title = f"NPS and eNPS per {window} window"
    nps = [v["windows"][window]["nps"]["nps"] for _, v in trend]
    enps = [v["windows"][window]["enps"]["enps"] for _, v in trend]
    if all(x is None for x in nps + enps):
        return _empty(title)
    fig = _figure(6.0, 3.0)
    ax = fig.add_subplot()
    xs = range(len(trend))
    ax.plot(xs, [math.nan if v is None else v for v in nps], marker="o", color=BLUE, label="NPS")
    ax.plot(
        xs,
        [math.nan if v is None else v for v in enps],
        marker="s",
        color=ORANGE,
        linestyle="--",
        label="eNPS",
    )
    ax.axhline(0, color=GREY, linewidth=0.8)
    last = nps[-1]
    if last is not None:
        ax.annotate(
            format_value(SCORE, last),
            (xs[-1], last),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
            color=BLUE,
        )
    _trend_axis(ax, trend)
    values = [v for v in nps + enps if v is not None]
    ax.set_ylim(min(-10.0, min(values) - 10), max(10.0, max(values) + 10))
    _legend(ax)
    _style(ax, title)
    return _png(fig)


def chart_counts_trend(window: str, trend: Sequence[tuple[int, dict[str, Any]]]) -> bytes:
    title = f"Leads and deals won per {window} window"
    leads = [v["windows"][window]["leads"]["leads"] for _, v in trend]
    won = [v["windows"][window]["sales"]["deals_won"] for _, v in trend]
    if not any(leads) and not any(won):
        return _empty(title)
    fig = _figure(6.0, 2.8)
    ax = fig.add_subplot()
    xs = list(range(len(trend)))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], leads, width, color=BLUE, label="Leads")
    ax.bar([x + width / 2 for x in xs], won, width, color=GREEN, label="Deals won")
    _trend_axis(ax, trend)
    _legend(ax)
    _style(ax, title)
    return _png(fig)
