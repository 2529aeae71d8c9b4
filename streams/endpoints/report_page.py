"""``GET /report``: the digest as a live page, served by the worker.

On the embedded default there is no Grafana, so the worker serves the digest itself: the
same sections and numbers as ``salespulse report``, built from the merged cluster view
(``SALESPULSE_WORKERS``, by default this worker), reloading itself every minute. Building a
digest takes a second or two (about ten ``/kpis`` reads and six charts), so each page (a
window in a language) is built at most once per refresh period, in a thread so the event
loop keeps answering (the build reads this worker's own ``/kpis``), and served from
memory; a stale page is served while its successor is built. Like every read it needs the
token (``access.py``), which a browser sends as the password of HTTP Basic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web as aioweb
from faust.web import Request, View

from salespulse.streams.report.catalogue import UnknownLocale, catalogue
from salespulse.streams.report.errors import ReportError
from salespulse.streams.report.windows import DIGEST_WINDOWS

if TYPE_CHECKING:
    import faust

    from salespulse.streams.settings import Settings

log = logging.getLogger("salespulse.report")

REFRESH_SECONDS = 60
#: The page embeds everything it shows, so it may load nothing from anywhere.
SECURITY_POLICY = "default-src 'none'; img-src data:; font-src data:; style-src 'unsafe-inline'"

Builder = Callable[[str, str], str]


@dataclass
class PageCache:
    """Built pages by (window, locale): each rebuilt at most once per ``refresh`` seconds."""

    build: Builder
    refresh: float = REFRESH_SECONDS
    clock: Callable[[], float] = time.monotonic
    pages: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    building: dict[tuple[str, str], asyncio.Task[str]] = field(default_factory=dict)

    async def get(self, window: str, locale: str) -> str:
        key = (window, locale)
        page = self.pages.get(key)
        if page is not None and self.clock() - page[0] < self.refresh:
            return page[1]
        task = self.building.get(key)
        if task is None:
            task = asyncio.ensure_future(self._rebuild(key))
            self.building[key] = task
        if page is not None:
            return page[1]  # the stale page now, its successor on the next load
        return await asyncio.shield(task)

    async def _rebuild(self, key: tuple[str, str]) -> str:
        try:
            html = await asyncio.to_thread(self.build, *key)
        except ReportError as exc:
            if key not in self.pages:
                raise
            log.warning("the %s %s report page was not rebuilt: %s", *key, exc)
            return self.pages[key][1]  # still shown; the next load tries again
        finally:
            del self.building[key]
        self.pages[key] = (self.clock(), html)
        return html


def _page_builder(settings: Settings) -> Builder:
    def build(window: str, locale: str) -> str:
        # Here, not at the top: the digest draws with matplotlib, which a worker loads only
        # once a page is asked for (about 30 MB and 0.4 s that most workers never need).
        from salespulse.streams.report.digest import build_digest

        return build_digest(
            settings.worker_addresses,
            window,
            locale=locale,
            refresh=REFRESH_SECONDS,
            token=settings.ingest_token,
            toman=settings.shows_toman(locale),
        ).html_file

    return build


def install_report_page(app: faust.App, settings: Settings) -> PageCache:
    """Register ``GET /report``."""
    catalogue(settings.locale)  # a worker with an unknown SALESPULSE_LOCALE fails at start
    cache = PageCache(_page_builder(settings))

    @app.page("/report")
    class Report(View):
        async def get(self, request: Request) -> Any:
            window = request.query.get("window", "7d")
            locale = request.query.get("locale", settings.locale)
            if window not in DIGEST_WINDOWS:
                return _text(400, f"window must be one of {', '.join(DIGEST_WINDOWS)}, not {window!r}")
            try:
                catalogue(locale)
                html = await cache.get(window, locale)
            except (UnknownLocale, ReportError) as exc:
                return _text(400 if isinstance(exc, UnknownLocale) else 503, str(exc))
            return aioweb.Response(
                text=html,
                content_type="text/html",
                charset="utf-8",
                headers={"Content-Security-Policy": SECURITY_POLICY, "Cache-Control": "no-store"},
            )

    return cache


def _text(status: int, message: str) -> Any:
    return aioweb.Response(text=message + "\n", status=status, content_type="text/plain", charset="utf-8")
