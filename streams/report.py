"""The periodic KPI digest: an HTML report with charts, sent by email on a schedule.

Sales managers do not watch Grafana. They read a weekly mail. This module turns the
cluster view of ``/kpis`` into that mail. For each of the eight KPIs it shows the headline
number, the change against the previous period, and a chart. Previous periods and trend
points come from the workers' retained hour buckets, through ``/kpis?at=<epoch seconds>``
(62 days, hour resolution), so the digest needs no database of its own.

Every number is read straight from the merged view (``view["windows"][window]``), so the
digest always agrees with ``salespulse kpis`` and ``/kpis``.

Delivery uses only the standard library (``email`` and ``smtplib``). A failed send is
retried with backoff and logged. A message that still cannot be sent stays in
``<out>/outbox`` and is sent again on the next run. Nothing is lost silently.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import re
import signal
import smtplib
import socket
import ssl
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from io import BytesIO
from pathlib import Path
from types import FrameType
from typing import Any

from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from agents.rolling import HOUR, RETENTION_HOURS, WINDOW_SECONDS
from streams.cluster import WorkerUnreachable, cluster_view
from streams.settings import Settings, SettingsError

log = logging.getLogger("salespulse.report")

DAY = 24 * HOUR
#: Windows a digest can cover, each with its trend: (step between points, number of points).
#: ``1h`` is left out on purpose. Earlier clocks have hour resolution, so a "previous hour"
#: would mostly be the current one.
TREND: dict[str, tuple[int, int]] = {
    "24h": (DAY, 8),
    "7d": (7 * DAY, 8),
    "30d": (7 * DAY, 5),
}
DIGEST_WINDOWS = tuple(TREND)


def oldest_reach(window: str) -> int:
    """Seconds before the clock that the oldest bucket the digest reads starts at.

    It must stay within the 62-day bucket retention (``RETENTION_SECONDS``).
    """
    step, points = TREND[window]
    length = WINDOW_SECONDS[window]
    return max(step * (points - 1), length) + length


RETENTION_SECONDS = RETENTION_HOURS * HOUR
CID_DOMAIN = "salespulse"
DPI = 150
OUTBOX = "outbox"

# Colours: one palette for charts and HTML.
BLUE, ORANGE, GREEN, RED, GREY, INK = "#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#718096", "#1a202c"


class ReportError(RuntimeError):
    """A problem the user can fix (workers down, bad option, SMTP unreachable): no traceback."""


class DigestDeliveryError(ReportError):
    """The digest could not be handed to the SMTP server."""

    def __init__(self, message: str, *, attempts: int, permanent: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.permanent = permanent


# -- settings ---------------------------------------------------------------------------


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not 0 or 1")


def _number(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> Any:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class SmtpSettings:
    """Where the digest is sent from: the ``SALESPULSE_SMTP_*`` variables."""

    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    timeout: float = 30.0

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "password" and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"SmtpSettings({', '.join(shown)})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def from_address(self) -> str:
        return self.sender or f"salespulse@{socket.gethostname()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        """Read ``SALESPULSE_SMTP_{HOST,PORT,STARTTLS,USER,PASSWORD,FROM,TIMEOUT}``."""
        env = os.environ if env is None else env
        port = _number(env, "SALESPULSE_SMTP_PORT", 25, int)
        if port > 65535:
            raise SettingsError(f"SALESPULSE_SMTP_PORT={port} is not a port")
        return cls(
            host=env.get("SALESPULSE_SMTP_HOST", "").strip() or "localhost",
            port=port,
            starttls=_flag(env, "SALESPULSE_SMTP_STARTTLS", False),
            user=env.get("SALESPULSE_SMTP_USER", ""),
            password=env.get("SALESPULSE_SMTP_PASSWORD", ""),
            sender=env.get("SALESPULSE_SMTP_FROM", "").strip(),
            timeout=float(_number(env, "SALESPULSE_SMTP_TIMEOUT", 30.0, float)),
        )


# -- formatting (shared by the text and HTML versions, and by the tests) -----------------

COUNT, PERCENT, SCORE, MONEY, INDEX = "count", "percent", "score", "money", "index"


def format_value(kind: str, value: float | None) -> str:
    """How the digest prints a number of the given kind; ``n/a`` when there is none."""
    if value is None:
        return "n/a"
    if kind == COUNT:
        return f"{value:,.0f}"
    if kind == PERCENT:
        return f"{value:.1%}"
    if kind == SCORE:
        return f"{value:+.1f}"
    if kind == MONEY:
        return f"{value:,.2f}"
    if kind == INDEX:
        return f"{value:.3f}"
    raise ValueError(f"unknown kind {kind!r}")


def format_change(kind: str, value: float | None, previous: float | None) -> str:
    """The change against the previous period: absolute (and relative for counts)."""
    if value is None:
        return ""
    if previous is None:
        return "no previous value"  # shown as "no value for the previous <window>"
    delta = value - previous
    if delta == 0:
        return "no change"
    if kind == PERCENT:
        return f"{delta * 100:+.1f} pp"
    if kind == SCORE:
        return f"{delta:+.1f} pts"
    if kind == INDEX:
        return f"{delta:+.3f}"
    text = f"{delta:+,.0f}" if kind == COUNT else f"{delta:+,.2f}"
    return f"{text} ({delta / previous:+.1%})" if previous else f"{text} (new)"


def _compact(value: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%a %d %b %Y %H:%M UTC")


# -- the digest -------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One number of the digest, with its value for the previous period."""

    label: str
    value: float | None
    previous: float | None = None
    kind: str = COUNT
    #: True when up is good, False when down is good, None when neither (colour only).
    higher_is_better: bool | None = True
    #: False for numbers that have no history (latest prices, today's known customers).
    compare: bool = True

    @property
    def text(self) -> str:
        return format_value(self.kind, self.value)

    @property
    def change(self) -> str:
        return format_change(self.kind, self.value, self.previous) if self.compare else ""

    def change_sentence(self, window: str) -> str:
        """The change with its reference period, or "" for numbers without a comparison."""
        if not self.change:
            return ""
        if self.previous is None:
            return f"no value for the previous {window}"
        return f"{self.change} vs previous {window}"

    @property
    def mood(self) -> str:
        """good, bad or neutral: how the change reads."""
        if not self.compare or self.value is None or self.previous is None:
            return "neutral"
        if self.value == self.previous or self.higher_is_better is None:
            return "neutral"
        return "good" if (self.value > self.previous) == self.higher_is_better else "bad"


@dataclass(frozen=True)
class Section:
    """One KPI: headline, details, an optional chart and an optional table."""

    number: int
    kpi: str
    title: str
    headline: Metric
    details: tuple[Metric, ...] = ()
    #: (Content-ID, alt text) of each chart, in display order.
    charts: tuple[tuple[str, str], ...] = ()
    table_head: tuple[str, ...] = ()
    table: tuple[tuple[str, ...], ...] = ()
    note: str = ""
    #: A short grey line under the headline in the summary grid, for numbers without a change.
    card_note: str = ""


@dataclass(frozen=True)
class Digest:
    """A built digest: the email HTML (``cid:`` images), the file HTML (``data:`` URIs),
    the plain text with the same numbers, and the PNG charts keyed by Content-ID."""

    subject: str
    html: str
    html_file: str
    text: str
    images: dict[str, bytes]
    window: str
    clock: int
    previous_clock: int
    sections: tuple[Section, ...]
    view: dict[str, Any] = field(repr=False)


def cid(name: str) -> str:
    return f"{name}@{CID_DOMAIN}"


def _nums(values: Mapping[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v is not None}


class _Views:
    """Cluster views by clock, fetched once each."""

    def __init__(self, workers: Sequence[str], timeout: float) -> None:
        self.workers = list(workers)
        self.timeout = timeout
        self.cache: dict[int | None, dict[str, Any]] = {}

    def get(self, at: int | None) -> dict[str, Any]:
        if at not in self.cache:
            try:
                self.cache[at] = cluster_view(self.workers, self.timeout, at)
            except WorkerUnreachable as exc:
                raise ReportError(str(exc)) from None
        return self.cache[at]


def build_digest(
    workers: Sequence[str], window: str = "7d", now: int | None = None, timeout: float = 10.0
) -> Digest:
    """Fetch the current view, the previous period and a trend; return the digest.

    ``now`` (epoch seconds) reports as of an earlier clock. By default the clock is the
    workers' own, and the numbers are exactly what ``/kpis`` shows.
    """
    if window not in TREND:
        raise ReportError(f"window {window!r} is not one of {', '.join(DIGEST_WINDOWS)}")
    if not workers:
        raise ReportError("no workers to ask: give --workers or set SALESPULSE_WORKERS")
    views = _Views(workers, timeout)
    current = views.get(now)
    clock = int(current["clock"])
    length = WINDOW_SECONDS[window]
    previous_clock = clock - length
    step, points = TREND[window]
    earliest_at = clock - max(length, step * (points - 1))  # /kpis?at= takes no negative clock
    if earliest_at < 0:
        raise ReportError(
            f"the workers' clock ({clock}) is too early for a {window} digest "
            "(with --clock stream, a worker that has applied no events is at 0)"
        )
    previous = views.get(previous_clock)
    trend_clocks = [clock - k * step for k in reversed(range(points))]
    trend = [(at, views.get(at if at != clock else now)) for at in trend_clocks]
    sections, charts = _sections(window, current, previous, trend)
    text = _render_text(window, current, previous_clock, sections)
    mail_html = _render_html(window, current, previous_clock, sections, lambda c: f"cid:{c}")
    file_html = _render_html(
        window,
        current,
        previous_clock,
        sections,
        lambda c: "data:image/png;base64," + base64.b64encode(charts[c]).decode(),
    )
    w = current["windows"][window]
    subject = (
        f"SalesPulse {window} digest to {datetime.fromtimestamp(clock, UTC):%d %b %Y %H:%M} UTC: "
        f"{format_value(COUNT, w['leads']['leads'])} leads, "
        f"{format_value(COUNT, w['sales']['deals_won'])} deals won, "
        f"NPS {format_value(SCORE, w['nps']['nps'])}"
    )
    return Digest(
        subject=subject,
        html=mail_html,
        html_file=file_html,
        text=text,
        images=charts,
        window=window,
        clock=clock,
        previous_clock=previous_clock,
        sections=tuple(sections),
        view=current,
    )


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


# -- charts -----------------------------------------------------------------------------


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


# -- rendering --------------------------------------------------------------------------


def _coverage(view: dict[str, Any]) -> str:
    parts = view.get("partitions", [])
    text = f"{view.get('workers', 0)} worker(s), partitions {', '.join(map(str, parts)) or 'none'}"
    twice = view.get("partitions_exported_twice") or []
    if twice:
        text += f"; WARNING: partitions {', '.join(map(str, twice))} exported by two workers"
    return text


def _render_text(window: str, view: dict[str, Any], previous_clock: int, sections: Sequence[Section]) -> str:
    lines = [
        f"SalesPulse KPI digest: last {window} to {_stamp(view['clock'])}",
        f"Changes compare with the previous {window} (to {_stamp(previous_clock)}).",
        "",
    ]
    for s in sections:
        lines.append(f"{s.number}. {s.title}")
        for m in (s.headline, *s.details):
            sentence = m.change_sentence(window)
            change = f"  ({sentence})" if sentence else ""
            lines.append(f"   {m.label}: {m.text}{change}")
        if s.table:
            lines.append("   " + " | ".join(s.table_head))
            lines.extend("     " + " | ".join(row) for row in s.table)
        if s.note:
            lines.append(f"   Note: {s.note}")
        lines.append("")
    lines += [
        f"Source: /kpis of {_coverage(view)}.",
        "Previous periods and trends come from the workers' retained hour buckets (/kpis?at=, 62 days).",
        "",
    ]
    return "\n".join(lines)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_MOOD = {"good": GREEN, "bad": RED, "neutral": GREY}


def _arrow(m: Metric) -> str:
    if not m.change or m.value is None or m.previous is None or m.value == m.previous:
        return ""
    return "&#9650; " if m.value > m.previous else "&#9660; "


def _change_html(m: Metric, window: str) -> str:
    if not m.change:
        return ""
    if m.previous is None:
        return f'<span style="color:{GREY};font-size:12px">{_e(m.change_sentence(window))}</span>'
    return (
        f'<span style="color:{_MOOD[m.mood]};font-size:12px">{_arrow(m)}{_e(m.change)}'
        f' <span style="color:{GREY}">vs previous {_e(window)}</span></span>'
    )


def _render_html(
    window: str,
    view: dict[str, Any],
    previous_clock: int,
    sections: Sequence[Section],
    src: Callable[[str], str],
) -> str:
    font = "font-family:Helvetica,Arial,sans-serif;color:" + INK
    cards = []
    for s in sections:
        cards.append(
            f'<td width="50%" valign="top" style="padding:6px">'
            f'<div style="border:1px solid #e2e8f0;border-radius:6px;padding:10px 12px;background:#f8fafc">'
            f'<div style="font-size:12px;color:{GREY}">{s.number}. {_e(s.title)}</div>'
            f'<div style="font-size:13px;margin-top:4px">{_e(s.headline.label)}</div>'
            f'<div style="font-size:26px;font-weight:bold;margin:2px 0">{_e(s.headline.text)}</div>'
            f"{_change_html(s.headline, window)}"
            + (f'<span style="color:{GREY};font-size:12px">{_e(s.card_note)}</span>' if s.card_note else "")
            + "</div></td>"
        )
    grid = "".join(
        f"<tr>{cards[i]}{cards[i + 1] if i + 1 < len(cards) else ''}</tr>" for i in range(0, len(cards), 2)
    )
    blocks = []
    for s in sections:
        rows = "".join(
            f'<tr><td style="padding:3px 8px 3px 0">{_e(m.label)}</td>'
            f'<td align="right" style="padding:3px 8px;font-weight:bold;white-space:nowrap">{_e(m.text)}</td>'
            f'<td style="padding:3px 0">{_change_html(m, window)}</td></tr>'
            for m in (s.headline, *s.details)
        )
        parts = [
            f'<h2 style="font-size:17px;margin:26px 0 8px;border-bottom:2px solid {BLUE};padding-bottom:4px">'
            f"{s.number}. {_e(s.title)}</h2>",
            f'<table cellpadding="0" cellspacing="0" style="font-size:14px">{rows}</table>',
        ]
        for chart, alt in s.charts:
            parts.append(
                f'<p style="margin:12px 0"><img src="{_e(src(chart))}" alt="{_e(alt)}" width="600" '
                'style="display:block;width:100%;max-width:600px;height:auto;border:0"></p>'
            )
        if s.table:
            head = "".join(
                f'<th align="{"left" if i == 0 else "right"}" style="padding:4px 8px;border-bottom:1px solid '
                f'#cbd5e0;font-size:12px;color:{GREY}">{_e(h)}</th>'
                for i, h in enumerate(s.table_head)
            )
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td align="{"left" if i == 0 else "right"}" style="padding:3px 8px;'
                    f'border-bottom:1px solid #edf2f7">{_e(c)}</td>'
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in s.table
            )
            parts.append(
                f'<table cellpadding="0" cellspacing="0" style="font-size:13px;margin-top:8px;'
                f'border-collapse:collapse"><tr>{head}</tr>{body}</table>'
            )
        if s.note:
            parts.append(f'<p style="font-size:12px;color:{GREY};margin:8px 0 0">{_e(s.note)}</p>')
        blocks.append("".join(parts))
    title = f"SalesPulse KPI digest: last {window} to {_stamp(view['clock'])}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title></head>"
        f'<body style="margin:0;padding:0;background:#edf2f7;{font}">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="background:#edf2f7"><tr><td align="center" style="padding:20px 8px">'
        '<table role="presentation" width="680" cellpadding="0" cellspacing="0" '
        'style="max-width:680px;width:100%;background:#ffffff;border-radius:8px">'
        f'<tr><td style="padding:22px 28px 8px;{font}">'
        f'<div style="font-size:12px;letter-spacing:1px;color:{BLUE};font-weight:bold">SALESPULSE</div>'
        f'<h1 style="font-size:22px;margin:4px 0 2px">KPI digest: last {_e(window)}</h1>'
        f'<div style="font-size:13px;color:{GREY}">to {_e(_stamp(view["clock"]))}; changes compare '
        f"with the previous {_e(window)} (to {_e(_stamp(previous_clock))})</div>"
        f'</td></tr><tr><td style="padding:8px 22px">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0">{grid}</table>'
        f'</td></tr><tr><td style="padding:0 28px 24px;{font}">{"".join(blocks)}'
        f'<p style="font-size:11px;color:{GREY};margin-top:28px;border-top:1px solid #e2e8f0;'
        'padding-top:8px">'
        f"Source: /kpis of {_e(_coverage(view))}. Previous periods and trends come from the "
        "workers' retained hour buckets (/kpis?at=, 62 days, hour resolution).</p>"
        "</td></tr></table></td></tr></table></body></html>\n"
    )


# -- files ------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def image_filename(content_id: str) -> str:
    return content_id.split("@", 1)[0] + ".png"


def write_digest(digest: Digest, out_dir: Path) -> Path:
    """Write ``digest.html`` (self-contained), ``digest.txt`` and the PNGs; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for content_id, png in digest.images.items():
        _write_atomic(out_dir / image_filename(content_id), png)
    _write_atomic(out_dir / "digest.txt", digest.text.encode())
    page = out_dir / "digest.html"
    _write_atomic(page, digest.html_file.encode())
    return page


# -- email ------------------------------------------------------------------------------


def build_message(digest: Digest, to: Sequence[str], sender: str) -> EmailMessage:
    """multipart/alternative: text/plain, then multipart/related (text/html + inline PNGs).

    This nesting is the one the ``email`` docs show and every major client renders: a
    text-only reader picks the plain part, an HTML reader resolves ``cid:`` inside the
    related part.
    """
    msg = EmailMessage()
    msg["Subject"] = digest.subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or CID_DOMAIN)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-SalesPulse-Window"] = digest.window
    msg.set_content(digest.text)
    msg.add_alternative(digest.html, subtype="html")
    html_part = next(p for p in msg.iter_parts() if p.get_content_type() == "text/html")
    for content_id, png in digest.images.items():
        html_part.add_related(
            png,
            maintype="image",
            subtype="png",
            cid=f"<{content_id}>",
            disposition="inline",
            filename=image_filename(content_id),
        )
    return msg


def _permanent(exc: BaseException) -> bool:
    """A 5xx answer (bad recipient, bad credentials) will not get better by retrying."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + "; ".join(
            f"{addr} ({code} {msg.decode(errors='replace')})" for addr, (code, msg) in exc.recipients.items()
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return f"{exc.smtp_code} {text}"
    return str(exc) or type(exc).__name__


def _send_once(msg: EmailMessage, smtp: SmtpSettings) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
        client.ehlo()
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if smtp.user:
            client.login(smtp.user, smtp.password)
        refused = client.send_message(msg)
    for address, (code, answer) in refused.items():
        # The others got it; retrying would send them a second copy.
        log.error("the SMTP server refused %s: %d %s", address, code, answer.decode(errors="replace"))


def deliver(
    msg: EmailMessage,
    smtp: SmtpSettings,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """Send ``msg``, trying up to ``retries`` times (waits ``backoff``, 2x``backoff``, ...).

    Returns the number of attempts used. Raises :class:`DigestDeliveryError` when every
    attempt failed, or at once on a permanent (5xx) refusal.
    """
    if smtp.user and not smtp.starttls and smtp.host not in {"localhost", "127.0.0.1", "::1"}:
        log.warning("sending SMTP credentials to %s without STARTTLS", smtp.address)
    to = str(msg["To"])
    attempts = max(1, retries)
    for attempt in range(1, attempts + 1):
        try:
            _send_once(msg, smtp)
            if attempt > 1:
                log.info("digest delivered to %s on attempt %d", to, attempt)
            return attempt
        except (OSError, smtplib.SMTPException) as exc:
            reason = _reason(exc)
            permanent = _permanent(exc)
            log.warning(
                "digest delivery attempt %d/%d to %s via %s failed: %s",
                attempt,
                attempts,
                to,
                smtp.address,
                reason,
            )
            if permanent or attempt == attempts:
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                raise DigestDeliveryError(
                    f"could not deliver the digest to {to} via {smtp.address} after {tries}: {reason}"
                    + (" (permanent refusal, not retried)" if permanent and attempt < attempts else ""),
                    attempts=attempt,
                    permanent=permanent,
                ) from None
            sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def send_digest(
    digest: Digest,
    to: Sequence[str],
    smtp: SmtpSettings,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """Email the digest (HTML with inline charts, plain-text alternative); return attempts used."""
    if not to:
        raise ReportError("no recipients for the digest")
    return deliver(build_message(digest, to, smtp.from_address), smtp, retries, backoff, sleep)


# -- outbox and schedule ----------------------------------------------------------------


def queue_message(msg: EmailMessage, out_dir: Path) -> Path:
    """Keep a message in ``out_dir/outbox`` until it has been delivered."""
    box = out_dir / OUTBOX
    box.mkdir(parents=True, exist_ok=True)
    path = box / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{msg['X-SalesPulse-Window']}.eml"
    _write_atomic(path, msg.as_bytes(policy=policy.SMTP))
    return path


def pending_messages(out_dir: Path) -> list[Path]:
    """Unsent digests, oldest first."""
    box = out_dir / OUTBOX
    return sorted(box.glob("*.eml")) if box.is_dir() else []


@dataclass
class OutboxResult:
    delivered: list[Path] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)
    attempts: int = 0
    error: DigestDeliveryError | None = None


def flush_outbox(
    out_dir: Path,
    smtp: SmtpSettings,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
) -> OutboxResult:
    """Send every queued digest, oldest first, stopping at the first transient failure.

    A message refused permanently (5xx) is moved to ``outbox/failed`` and logged as an
    error, so one bad address cannot block the queue.
    """
    result = OutboxResult()
    queue = pending_messages(out_dir)
    for i, path in enumerate(queue):
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(msg, EmailMessage)
        try:
            result.attempts += deliver(msg, smtp, retries, backoff, sleep)
        except DigestDeliveryError as exc:
            result.attempts += exc.attempts
            if exc.permanent:
                failed = path.parent / "failed"
                failed.mkdir(exist_ok=True)
                os.replace(path, failed / path.name)
                log.error("%s; moved the message to %s", exc, failed / path.name)
                result.error = exc
                continue
            result.error = exc
            result.pending = queue[i:]
            log.error("%s; %d digest(s) kept in %s for the next run", exc, len(result.pending), path.parent)
            return result
        path.unlink()
        result.delivered.append(path)
    return result


@dataclass
class ScheduleResult:
    runs: int = 0
    built: int = 0
    delivered: int = 0
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)


def _build_and_queue(
    workers: Sequence[str],
    out_dir: Path,
    window: str,
    to: Sequence[str],
    smtp: SmtpSettings | None,
    now: int | None = None,
) -> Digest:
    digest = build_digest(workers, window, now)
    page = write_digest(digest, out_dir)
    log.info("digest for the %s window to %s written to %s", window, _stamp(digest.clock), page)
    if to and smtp is not None:
        queue_message(build_message(digest, to, smtp.from_address), out_dir)
    return digest


def run_once(
    workers: Sequence[str],
    out_dir: Path,
    *,
    window: str = "7d",
    to: Sequence[str] = (),
    smtp: SmtpSettings | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
    now: int | None = None,
) -> tuple[Digest, OutboxResult | None]:
    """Build and write one digest; with recipients, queue it and flush the outbox."""
    if to and smtp is None:
        smtp = SmtpSettings.from_env()
    digest = _build_and_queue(workers, out_dir, window, to, smtp, now)
    if not to or smtp is None:
        return digest, None
    return digest, flush_outbox(out_dir, smtp, retries, backoff, sleep)


def run_schedule(
    every_seconds: float,
    workers: Sequence[str],
    out_dir: Path,
    *,
    window: str = "7d",
    to: Sequence[str] = (),
    smtp: SmtpSettings | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    max_runs: int | None = None,
    sleep: Callable[[float], object] = time.sleep,
    stop: threading.Event | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> ScheduleResult:
    """Build (and send) a digest every ``every_seconds`` until ``stop`` is set or ``max_runs``.

    A run that cannot reach the workers or the SMTP server is logged and does not end the
    loop. Unsent digests stay in ``out_dir/outbox`` and go out first on the next run, even
    when that run cannot build its own digest.
    """
    if every_seconds <= 0:
        raise ReportError("the schedule period must be positive")
    if to and smtp is None:
        smtp = SmtpSettings.from_env()
    result = ScheduleResult()
    while max_runs is None or result.runs < max_runs:
        if stop is not None and stop.is_set():
            break
        started = monotonic()
        result.runs += 1
        try:
            _build_and_queue(workers, out_dir, window, to, smtp)
            result.built += 1
        except ReportError as exc:
            log.error("digest run %d failed: %s", result.runs, exc)
            result.failures.append(str(exc))
        except Exception as exc:  # a long-running schedule logs the bug and keeps going
            log.exception("digest run %d failed unexpectedly", result.runs)
            result.failures.append(f"{type(exc).__name__}: {exc}")
        if to and smtp is not None:
            outbox = flush_outbox(out_dir, smtp, retries, backoff, sleep)
            result.delivered += len(outbox.delivered)
            result.attempts += outbox.attempts
            result.pending = outbox.pending
            if outbox.error is not None:
                result.failures.append(str(outbox.error))
        if max_runs is not None and result.runs >= max_runs:
            break
        if stop is not None and stop.is_set():
            break
        sleep(max(0.0, every_seconds - (monotonic() - started)))
    return result


# -- command line -----------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": HOUR, "d": DAY, "w": 7 * DAY}


def parse_duration(text: str) -> float:
    """``30m``, ``24h``, ``7d``, ``1w``, ``90s`` in seconds."""
    match = _DURATION.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ReportError(f"{text!r} is not a duration like 30m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _addresses(email: str | Sequence[str] | None) -> list[str]:
    if not email:
        return []
    raw = email.split(",") if isinstance(email, str) else [a for item in email for a in item.split(",")]
    addresses = [a.strip() for a in raw if a.strip()]
    for address in addresses:
        if "@" not in address or any(c.isspace() for c in address):
            raise ReportError(f"{address!r} is not an email address")
    return addresses


def report_command(
    out: Path,
    window: str = "7d",
    workers: str | Sequence[str] | None = None,
    email: str | Sequence[str] | None = None,
    every: str | None = None,
    retries: int = 3,
    smtp: SmtpSettings | None = None,
    echo: Callable[[str], object] | None = None,
) -> None:
    """What ``salespulse report`` does. Raises :class:`ReportError` with a clear message.

    Progress goes to ``echo`` (default: standard error), failures to the ``salespulse.report``
    logger, so ``--out`` and scheduled runs leave standard output alone.
    """
    if echo is None:
        echo = _stderr
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if window not in TREND:
        raise ReportError(f"--window must be one of {', '.join(DIGEST_WINDOWS)}, not {window!r}")
    if retries < 1:
        raise ReportError("--retries must be at least 1")
    to = _addresses(email)
    try:
        if isinstance(workers, str):
            names = [w.strip() for w in workers.split(",") if w.strip()]
        else:
            names = list(workers) if workers else list(Settings.from_env().workers)
        if to and smtp is None:
            smtp = SmtpSettings.from_env()
    except SettingsError as exc:
        raise ReportError(str(exc)) from None
    if every is None:
        digest, outbox = run_once(names, out, window=window, to=to, smtp=smtp, retries=retries)
        echo(f"wrote {out / 'digest.html'}, {out / 'digest.txt'} and {len(digest.images)} charts")
        if outbox is not None:
            if outbox.error is not None:
                where = (
                    f"the refused message is in {out / OUTBOX / 'failed'}"
                    if outbox.error.permanent
                    else f"the unsent message is kept in {out / OUTBOX} and is sent again on the next run"
                )
                raise ReportError(f"{outbox.error}. The digest is in {out}; {where}.")
            echo(f"sent {len(outbox.delivered)} digest(s) to {', '.join(to)}")
        return
    period = parse_duration(every)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping the digest schedule (signal %d)", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT) if _main_thread()}
    echo(f"building the {window} digest every {every} into {out}" + (f" for {', '.join(to)}" if to else ""))
    try:
        result = run_schedule(
            period, names, out, window=window, to=to, smtp=smtp, retries=retries, sleep=stop.wait, stop=stop
        )
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    echo(
        f"stopped after {result.runs} run(s); {len(pending_messages(out))} digest(s) unsent in {out / OUTBOX}"
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
