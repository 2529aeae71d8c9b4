"""Who may use the worker's HTTP interface: every endpoint needs the token, wherever it listens.

One middleware guards every route the worker serves, so an endpoint added later is guarded
too, and so are faust's own pages. The token (``SALESPULSE_INGEST_TOKEN``, or the one the
worker generated into its data dir, ``tokens.py``) goes as a bearer token, or as the
password of HTTP Basic so that a browser can open ``/kpis`` or ``/report``. The bind
address decides nothing: a reverse proxy on the same host connects from loopback.

Open without it: ``/healthz`` and ``/readyz`` (orchestrators), ``/metrics`` unless
``SALESPULSE_METRICS_TOKEN`` is set (then it needs that one), and the vendor webhooks, which
authenticate with their vendor's signature or secret instead. Routes are told apart by the
route that matched, not by the raw path, so no spelling of a path reaches a guarded view
as an open one. Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web as aioweb

from salespulse.streams.tokens import METRICS_TOKEN_SETTING, TOKEN_SETTING

REALM = 'Basic realm="SalesPulse", charset="UTF-8"'
#: Routes that carry no data: probes for orchestrators.
OPEN_ROUTES = frozenset({"/healthz", "/readyz"})
METRICS_ROUTE = "/metrics"
#: Each vendor's webhook checks the vendor's own signature or secret.
WEBHOOK_PREFIX = "/webhooks/"

Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


@dataclass(frozen=True)
class Denied:
    """Why a request is refused: a message, and the Basic challenge that lets a browser ask."""

    error: str
    status: int = 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": REALM}


def basic_credentials(authorization: str) -> tuple[bytes, bytes] | None:
    """User and password of an HTTP Basic ``Authorization`` header, or None."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def _given_secret(authorization: str) -> bytes | None:
    """The secret an ``Authorization`` header carries: a bearer token or a Basic password."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip().encode()
    credentials = basic_credentials(authorization)
    return None if credentials is None else credentials[1]


def check(token: str, authorization: str, what: str, setting: str = TOKEN_SETTING) -> Denied | None:
    """None if ``authorization`` carries ``token``; else why not. ``what`` names the request.

    An empty ``token`` admits nobody: a worker always has one (configured or generated).
    """
    given = _given_secret(authorization)
    # compare_digest on bytes: constant time whatever the characters.
    if token and given is not None and hmac.compare_digest(given, token.encode()):
        return None
    return Denied(
        f"{what} needs {setting}: send 'Authorization: Bearer <token>',"
        " or HTTP Basic with any user name and the token as the password"
    )


def route_of(request: aioweb.Request) -> str:
    """The template of the route that matched (``/customers/{customer_id}``); "" for none."""
    resource = request.match_info.route.resource
    return "" if resource is None else resource.canonical


def guard(token: str, metrics_token: str = "") -> Callable[[aioweb.Request, Handler], Awaitable[Any]]:
    """The aiohttp middleware that applies the rule above to every request."""

    @aioweb.middleware
    async def middleware(request: aioweb.Request, handler: Handler) -> Any:
        route = route_of(request)
        if route in OPEN_ROUTES or route.startswith(WEBHOOK_PREFIX):
            return await handler(request)
        authorization = request.headers.get("Authorization", "")
        if route == METRICS_ROUTE:
            if not metrics_token:
                return await handler(request)
            denied = check(metrics_token, authorization, "reading /metrics", METRICS_TOKEN_SETTING)
        else:
            denied = check(token, authorization, f"{request.method} {request.path}")
        if denied is None:
            return await handler(request)
        return aioweb.Response(
            body=orjson.dumps({"error": denied.error}),
            status=denied.status,
            content_type="application/json",
            headers=denied.headers,
        )

    return middleware
