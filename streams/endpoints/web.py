"""The worker's HTTP interface: metrics, KPIs, health, readiness, event ingest and the
customer-level reads (a profile, the detractor cases).

``POST /events`` is all or nothing: every event is validated first, then all are sent,
and 202 comes back only once the broker has acknowledged each one (503 if it cannot
within the broker timeout). Because events carry ids and the worker dedupes them, a
client that got 503 can resend the same request safely.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web as aioweb
from faust.web import Request, View

from salespulse.schemas.partitions import partition_for
from salespulse.schemas.topics import route
from salespulse.streams.endpoints import access, detractors_view
from salespulse.streams.endpoints.ingest import IngestError, parse_events

if TYPE_CHECKING:
    import faust

    from salespulse.streams.pipeline.runtime import Runtime
    from salespulse.streams.settings import Settings

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    return aioweb.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _denied(request: Request, settings: Settings, what: str) -> Any | None:
    """The refusal for a write or a customer-level read, or None if it may go on."""
    denied = access.check(
        settings.ingest_token, settings.web_host, request.headers.get("Authorization", ""), what
    )
    if denied is None:
        return None
    return _json(denied.status, {"error": denied.error}, denied.headers)


async def _read_limited(request: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body is over the {limit}-byte limit")
        chunks.append(chunk)


def install_views(app: faust.App, runtime: Runtime) -> None:
    """Register the views on the app's web server."""
    settings = runtime.settings

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Any:
            return aioweb.Response(
                body=runtime.exporter.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

    @app.page("/kpis")
    class Kpis(View):
        async def get(self, request: Request) -> Any:
            at = request.query.get("at")
            if at is not None and not at.isdigit():
                return _json(400, {"error": "at must be epoch seconds"})
            view = runtime.engine.kpis_view(runtime.owned(), None if at is None else int(at))
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
            if (refused := _denied(request, settings, "reading a customer")) is not None:
                return refused
            profile = runtime.engine.profile(customer_id, runtime.owned())
            if profile is None:
                return _json(404, {"error": f"customer {customer_id!r} is not held by this worker"})
            return _json(200, profile)

    detractors_view.install(app, runtime, _denied, _json)

    @app.page("/events")
    class Events(View):
        async def post(self, request: Request) -> Any:
            if (refused := _denied(request, settings, "writing events")) is not None:
                return refused
            try:
                body = await _read_limited(request, settings.max_body_bytes)
                events = parse_events(body, max_depth=settings.max_json_depth)
            except IngestError as exc:
                return _json(exc.status, exc.body())
            try:
                await asyncio.wait_for(_send_all(runtime, events), settings.broker_timeout)
            except Exception as exc:
                return _json(
                    503,
                    {
                        "error": f"broker did not acknowledge the events: {exc!r}",
                        "retry": "resending the same events is safe: event ids are deduplicated",
                    },
                )
            return _json(202, {"accepted": len(events)})


async def _send_all(runtime: Runtime, events: list[dict[str, Any]]) -> None:
    producer = runtime.kafka_producer()
    futures = []
    for event in events:
        topic, key = route(event)
        partition = partition_for(key, runtime.partition_count(topic))
        futures.append(await producer.send(topic, orjson.dumps(event), key=key, partition=partition))
    await asyncio.gather(*futures)
