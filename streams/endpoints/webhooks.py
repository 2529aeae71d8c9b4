"""The vendor webhooks on the worker's web server: ``POST /webhooks/<vendor>``.

Every vendor's request takes one path: enabled only when its settings are set (else 404
naming them), the raw body read within the size limit before anything parses it, the
vendor's authentication checked in constant time (else 401, nothing written), the payload
mapped to canonical events by the vendor's connector, each event validated like
``POST /events``, then events and dead letters written to their topics. The vendor gets its
success answer only after the broker has acknowledged every record, so a 5xx means "send
again", which every vendor does, and derived event ids make the resend count once. A part
that authenticates but cannot map goes to ``crm.deadletter`` (reason ``unmappable``, with
the vendor, the object's module and id and the cause in headers) and the vendor still gets
2xx: resending it would never help, and the records after it must not wait.

Salesforce's secret is the last path segment (``/webhooks/salesforce/<secret>``). The
worker writes no access log (faust starts aiohttp with ``access_log=None``) and no log line
here names a request's path, so the secret reaches no log of the worker's own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web as aioweb
from faust.web import Request, View

from salespulse.schemas.codec import Rejected, check_event
from salespulse.streams.endpoints.connectors.base import (
    CONTRACT,
    BadRequest,
    Connector,
    Refused,
    Translation,
    Unmappable,
    VendorUnavailable,
    WebhookRequest,
    dead_letter_headers,
)
from salespulse.streams.endpoints.connectors.delighted import DelightedConnector
from salespulse.streams.endpoints.connectors.hubspot import HubSpotConnector
from salespulse.streams.endpoints.connectors.hubspot_api import HubSpotApi
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping, load_mapping
from salespulse.streams.endpoints.connectors.pipedrive import PipedriveConnector
from salespulse.streams.endpoints.connectors.salesforce import SalesforceConnector
from salespulse.streams.endpoints.connectors.typeform import TypeformConnector
from salespulse.streams.endpoints.delivery import DeadLetters, send_all
from salespulse.streams.endpoints.ingest import IngestError
from salespulse.streams.endpoints.metrics import WebhookCounters
from salespulse.streams.endpoints.replies import json_reply, read_limited

if TYPE_CHECKING:
    import faust

    from salespulse.streams.pipeline.runtime import Runtime
    from salespulse.streams.settings import Settings

log = logging.getLogger("salespulse.webhooks")


def build_connectors(settings: Settings, mapping: ConnectorMapping) -> list[Connector]:
    """One connector per vendor, each enabled or not by its settings."""
    return [
        HubSpotConnector(
            settings.hubspot_client_secret,
            settings.hubspot_token,
            settings.public_url,
            HubSpotApi(settings.hubspot_api, settings.hubspot_token, settings.broker_timeout),
            mapping,
        ),
        SalesforceConnector(settings.salesforce_org_id, settings.salesforce_secret, mapping),
        PipedriveConnector(settings.pipedrive_user, settings.pipedrive_password, mapping),
        DelightedConnector(settings.delighted_api_key, mapping),
        TypeformConnector(
            settings.typeform_secret,
            settings.typeform_score_field,
            settings.typeform_customer_field,
            settings.typeform_comment_field,
            mapping,
        ),
    ]


def signed_url(public_url: str, request: Any) -> str:
    """The URL the vendor called: the external base URL when set (behind a proxy the request's
    own scheme and host are the proxy's), else the request's."""
    base = public_url.rstrip("/") if public_url else f"{request.scheme}://{request.host}"
    return base + str(request.path_qs)


#: The data field naming the object an event is about, by event type.
_RECORD_FIELDS = ("deal_id", "opportunity_id", "lead_id", "response_id")


def checked(
    connector: Connector, translation: Translation, body: bytes
) -> tuple[list[dict[str, Any]], DeadLetters]:
    """Events that pass the contract, and dead letters for every part that does not map."""
    events: list[dict[str, Any]] = []
    failed = list(translation.unmappable)
    for event in translation.events:
        try:
            events.append(check_event(event))
        except Rejected as exc:
            data = event.get("data") or {}
            record = next((data[f] for f in _RECORD_FIELDS if f in data), "")
            failed.append(
                Unmappable(
                    f"the mapped {event['type']} breaks the contract: {exc.detail}", event, cause=CONTRACT
                ).about(connector.modules.get(event["type"]), record)
            )
    translation.unmappable = failed
    vendor = connector.vendor
    dead = [
        (
            exc.value(body),
            dead_letter_headers(vendor, f"webhook/{vendor}", exc.module, exc.record, exc.cause, exc.detail),
        )
        for exc in failed
    ]
    return events, dead


async def _translate(connector: Connector, body: bytes) -> Translation:
    try:
        return await connector.translate(body)
    except Unmappable as exc:
        return Translation(unmappable=[exc])
    except (VendorUnavailable, BadRequest, Refused):
        raise
    except Exception as exc:
        # A payload shape no mapping foresaw must not cost the worker: it is kept, not lost.
        log.exception("%s webhook: mapping failed", connector.vendor)
        return Translation(unmappable=[Unmappable(f"the {connector.vendor} connector failed: {exc!r}")])


async def handle(
    runtime: Runtime, counters: WebhookCounters, connector: Connector, request: Any, tail: str = ""
) -> Any:
    """One webhook request, from the raw body to the vendor's answer; ``tail`` is the path
    segment after ``/webhooks/<vendor>/``."""
    settings = runtime.settings
    vendor = connector.vendor
    missing = connector.missing()
    if missing is not None:
        counters.request(vendor, "disabled")
        return json_reply(404, {"error": f"the {vendor} webhook is not enabled: set {missing}"})
    try:
        limit = min(settings.max_body_bytes, connector.body_limit or settings.max_body_bytes)
        body = await read_limited(request, limit)
        url = signed_url(settings.public_url, request)
        refusal = connector.refusal(WebhookRequest(request.method, url, request.headers, body, tail))
        translation = Translation() if refusal is not None else await _translate(connector, body)
    except Refused as exc:
        refusal, translation = str(exc), Translation()
    except (IngestError, BadRequest) as exc:
        counters.request(vendor, "bad_request")
        status = exc.status if isinstance(exc, IngestError) else 400
        return json_reply(status, {"error": str(exc)})
    except VendorUnavailable as exc:
        counters.request(vendor, "unavailable")
        log.warning("%s webhook answered 503: %s", vendor, exc)
        return json_reply(503, {"error": str(exc), "retry": "the vendor's retry will be counted once"})
    if refusal is not None:
        counters.request(vendor, "unauthorized")
        return json_reply(401, {"error": refusal})
    events, dead = checked(connector, translation, body)
    try:
        await asyncio.wait_for(send_all(runtime, events, dead), settings.broker_timeout)
    except Exception as exc:
        counters.request(vendor, "unavailable")
        return json_reply(503, {"error": f"broker did not acknowledge the events: {exc!r}"})
    counters.request(vendor, "unmappable" if dead else "accepted", len(dead))
    for part in translation.unmappable:
        counters.dead(vendor, part.module, part.cause)
    for event in events:
        if (fallback := translation.fallbacks.get(event["event_id"])) is not None:
            counters.fallback(vendor, fallback)
    if dead:
        log.warning(
            "%s webhook: %d part(s) unmappable, sent to crm.deadletter: %s",
            vendor,
            len(dead),
            "; ".join(f"{e.module or '?'} {e.record or '?'}: {e.detail}" for e in translation.unmappable),
        )
    content_type, reply = connector.reply(translation)
    return aioweb.Response(body=reply, status=200, content_type=content_type)


def install_webhooks(app: faust.App, runtime: Runtime, counters: WebhookCounters) -> None:
    """Register ``POST /webhooks/<vendor>`` for every vendor (disabled ones answer 404)."""
    mapping = load_mapping(runtime.settings.connectors_file)
    connectors = build_connectors(runtime.settings, mapping)
    for connector in connectors:
        counters.declare(connector.vendor, connector.modules.values(), connector.fallbacks)
        _register(app, runtime, counters, connector)
    apis = [c.api for c in connectors if isinstance(c, HubSpotConnector)]

    # The CRM API client keeps a connection pool open; close it before the loop goes.
    async def close_api_clients(sender: Any, **kwargs: Any) -> None:
        for api in apis:
            await api.close()

    # mode's signal types do not admit a coroutine receiver, though mode awaits them.
    cast(Any, app.on_before_shutdown).connect(close_api_clients)


def _register(app: faust.App, runtime: Runtime, counters: WebhookCounters, connector: Connector) -> None:
    @app.page(f"/webhooks/{connector.vendor}")
    class Webhook(View):
        async def post(self, request: Request) -> Any:
            return await handle(runtime, counters, connector, request)

    if isinstance(connector, SalesforceConnector):  # the one vendor whose secret is in its URL

        @app.page(f"/webhooks/{connector.vendor}/{{secret}}")
        class SecretWebhook(View):
            async def post(self, request: Request, secret: str) -> Any:
                return await handle(runtime, counters, connector, request, secret)
