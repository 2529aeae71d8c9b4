"""Building a digest: fetch the cluster views it needs and assemble the finished digest.

A digest needs the current view, the previous period and a series of trend points, all
read from the workers' ``/kpis?at=`` endpoint. This module fetches each clock once,
checks the window and clock are usable, and puts sections, charts, text, HTML and
subject together into a :class:`Digest`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from salespulse.agents.rolling import WINDOW_SECONDS
from salespulse.streams.endpoints.cluster import WorkerUnreachable, cluster_view
from salespulse.streams.report.detractors import detractor_section, open_cases
from salespulse.streams.report.errors import ReportError
from salespulse.streams.report.formatting import COUNT, SCORE, format_value
from salespulse.streams.report.model import Digest
from salespulse.streams.report.render import _render_html, _render_text
from salespulse.streams.report.sections import _sections
from salespulse.streams.report.windows import DIGEST_WINDOWS, TREND
from salespulse.streams.settings import Settings


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
    workers: Sequence[str],
    window: str = "7d",
    now: int | None = None,
    timeout: float = 10.0,
    token: str | None = None,
) -> Digest:
    """Fetch the current view, the previous period and a trend; return the digest.

    ``now`` (epoch seconds) reports as of an earlier clock. By default the clock is the
    workers' own, and the numbers are exactly what ``/kpis`` shows. ``token`` (default:
    ``SALESPULSE_INGEST_TOKEN``) reads the detractor cases.
    """
    if token is None:
        token = Settings.from_env().ingest_token
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
    sections.append(detractor_section(window, current, previous, *open_cases(workers, token)))
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
