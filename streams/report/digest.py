"""Building a digest: fetch the cluster views it needs and assemble the finished digest.

A digest needs the current view, the previous period and a series of trend points, all
read from the workers' ``/kpis?at=`` endpoint. This module fetches each clock once,
checks the window and clock are usable, and puts sections, charts, text, HTML and
subject together into a :class:`Digest`, in the language of a catalogue.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from typing import Any

from salespulse.agents.rolling import WINDOW_SECONDS
from salespulse.streams.endpoints.cluster import WorkerUnreachable, cluster_view
from salespulse.streams.report.catalogue import DEFAULT_LOCALE, UnknownLocale, catalogue
from salespulse.streams.report.detractors import detractor_section, open_cases
from salespulse.streams.report.errors import ReportError
from salespulse.streams.report.fonts import chart_fonts, font_face_css
from salespulse.streams.report.forecast import forecast_section, merged_forecast
from salespulse.streams.report.formatting import COUNT, SCORE, format_value
from salespulse.streams.report.model import Digest
from salespulse.streams.report.render import _render_html, _render_text
from salespulse.streams.report.sections import _sections
from salespulse.streams.report.windows import DIGEST_WINDOWS, TREND
from salespulse.streams.settings import Settings
from salespulse.streams.tokens import client_token


class _Views:
    """Cluster views by clock, fetched once each."""

    def __init__(self, workers: Sequence[str], timeout: float, token: str) -> None:
        self.workers = list(workers)
        self.timeout = timeout
        self.token = token
        self.cache: dict[int | None, dict[str, Any]] = {}

    def get(self, at: int | None) -> dict[str, Any]:
        if at not in self.cache:
            try:
                self.cache[at] = cluster_view(self.workers, self.timeout, at, self.token)
            except WorkerUnreachable as exc:
                raise ReportError(str(exc)) from None
        return self.cache[at]


def build_digest(
    workers: Sequence[str],
    window: str = "7d",
    now: int | None = None,
    timeout: float = 10.0,
    locale: str = DEFAULT_LOCALE,
    refresh: int | None = None,
    token: str | None = None,
    toman: bool | None = None,
) -> Digest:
    """Fetch the current view, the previous period and a trend; return the digest.

    ``now`` (epoch seconds) reports as of an earlier clock. By default the clock is the
    workers' own, and the numbers are exactly what ``/kpis`` shows. ``locale`` names the
    catalogue (``en``, ``fa``); ``refresh`` (seconds) makes the HTML file reload itself;
    ``token`` (default: ``SALESPULSE_INGEST_TOKEN``, else the token a local worker stored)
    reads the workers; ``toman`` shows rial amounts as Toman (default: ``SALESPULSE_DISPLAY_UNIT``,
    else Toman in Persian).
    """
    try:
        cat = catalogue(locale)
    except UnknownLocale as exc:
        raise ReportError(str(exc)) from None
    if token is None or toman is None:
        settings = Settings.from_env()
        token = client_token(settings) if token is None else token
        toman = settings.shows_toman(cat.code) if toman is None else toman
    cat = dataclasses.replace(cat, toman=toman)
    if window not in TREND:
        raise ReportError(f"window {window!r} is not one of {', '.join(DIGEST_WINDOWS)}")
    if not workers:
        raise ReportError("no workers to ask: give --workers or set SALESPULSE_WORKERS")
    views = _Views(workers, timeout, token)
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
    with chart_fonts(cat):
        sections, charts = _sections(window, current, previous, trend, cat)
    sections.append(detractor_section(window, current, previous, *open_cases(workers, token), cat))
    sections.append(forecast_section(*merged_forecast(workers, clock, token), cat))
    text = _render_text(window, current, previous_clock, sections, cat)
    # The embedded font holds every character the page can show: the catalogue's and the data's.
    font = font_face_css(cat, text + cat.characters) if cat.font_files else ""
    head = f"<style>{font}</style>" if font else ""
    mail_html = _render_html(window, current, previous_clock, sections, lambda c: f"cid:{c}", cat, head)
    if refresh is not None:
        head += f'<meta http-equiv="refresh" content="{int(refresh)}">'
    file_html = _render_html(
        window,
        current,
        previous_clock,
        sections,
        lambda c: "data:image/png;base64," + base64.b64encode(charts[c]).decode(),
        cat,
        head,
    )
    w = current["windows"][window]
    subject = cat.t(
        "subject",
        window=cat.window(window),
        stamp=cat.subject_stamp(clock),
        leads=format_value(COUNT, w["leads"]["leads"], cat),
        won=format_value(COUNT, w["sales"]["deals_won"], cat),
        nps=format_value(SCORE, w["nps"]["nps"], cat),
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
        locale=cat.code,
    )
