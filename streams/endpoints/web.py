"""The worker's HTTP interface: metrics, KPIs, health, readiness, event ingest, the live report,
the forecast and the customer-level reads (a profile, the detractor cases).

``POST /events`` is all or nothing: every event is validated first, then all are sent,
and 202 comes back only once the broker has acknowledged each one (503 if it cannot
within the broker timeout). Because events carry ids and the worker dedupes them, a
client that got 503 can resend the same request safely. Validating a large body (8 MiB,
some 35,000 events) takes a good fraction of a second, so it runs in a thread: the event
loop keeps answering ``/healthz`` and applying batches meanwhile.

Every view but the probes (and ``/metrics`` without its own token) needs the token: one
middleware (``access.py``) guards them all, faust's own pages included. Reads never change
the engine state, so they need not wait for a state image being captured in a thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web as aioweb
from faust.web import Request, View

from salespulse.streams.endpoints import access, detractors_view, forecast_view
from salespulse.streams.endpoints.delivery import send_all
from salespulse.streams.endpoints.ingest import IngestError, parse_events
from salespulse.streams.endpoints.metrics import Exporter
from salespulse.streams.endpoints.replies import json_reply as _json
from salespulse.streams.endpoints.replies import read_limited
from salespulse.streams.endpoints.report_page import install_report_page
from salespulse.streams.endpoints.webhooks import install_webhooks
from salespulse.streams.pipeline.engine import ReadRefused

if TYPE_CHECKING:
    import faust

    from salespulse.streams.pipeline.runtime import Runtime


def install_views(app: faust.App, runtime: Runtime) -> None:
    """Register the views on the app's web server, and the exporter that ``/metrics`` renders
    as what watches the runtime's applies."""
    settings = runtime.settings
    exporter = Exporter(runtime.engine, runtime.owned, runtime.lag, lambda: runtime.rates.valid)
    runtime.observe = exporter.observe
    # On aiohttp's app under faust's driver, so on every route, faust's own pages too.
    middlewares = cast(Any, app.web).web_app.middlewares
    middlewares.append(access.guard(settings.ingest_token, settings.metrics_token))
    install_report_page(app, settings)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Any:
            headers = request.headers
            body, answer = exporter.render(headers.get("Accept", ""), headers.get("Accept-Encoding", ""))
            return aioweb.Response(body=body, headers=answer)

    @app.page("/kpis")
    class Kpis(View):
        async def get(self, request: Request) -> Any:
            at = request.query.get("at")
            if at is not None and not at.isdigit():
                return _json(400, {"error": "at must be epoch seconds"})
            try:
                view = runtime.engine.kpis_view(runtime.owned(), None if at is None else int(at))
            except ReadRefused as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, view)

    @app.page("/progress")
    class Progress(View):
        async def get(self, request: Request) -> Any:
            return _json(200, runtime.engine.progress(runtime.owned()))

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Any:
            return _json(200, {"status": "alive"})

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Any:
            if runtime.ownership.recovered_once:
                return _json(200, {"status": "ready", "partitions": sorted(runtime.owned())})
            return _json(503, {"status": "recovering", "detail": "joining group or recovering tables"})

    @app.page("/customers/{customer_id}")
    class Customer(View):
        async def get(self, request: Request, customer_id: str) -> Any:
            profile = runtime.engine.profile(customer_id, runtime.owned())
            if profile is None:
                return _json(404, {"error": f"customer {customer_id!r} is not held by this worker"})
            return _json(200, profile)

    detractors_view.install(app, runtime)
    forecast_view.install(app, runtime)

    @app.page("/events")
    class Events(View):
        async def post(self, request: Request) -> Any:
            try:
                body = await read_limited(request, settings.max_body_bytes)
                events = await asyncio.to_thread(
                    parse_events,
                    body,
                    max_depth=settings.max_json_depth,
                    now_ms=int(time.time() * 1000),
                    max_skew=settings.max_clock_skew,
                )
            except IngestError as exc:
                return _json(exc.status, exc.body())
            try:
                await asyncio.wait_for(send_all(runtime, events), settings.broker_timeout)
            except Exception as exc:
                return _json(
                    503,
                    {
                        "error": f"broker did not acknowledge the events: {exc!r}",
                        "retry": "resending the same events is safe: event ids are deduplicated",
                    },
                )
            return _json(202, {"accepted": len(events)})

    install_webhooks(app, runtime, exporter.webhooks)
