"""Who may write events and read customer-level data over the worker's HTTP interface.

Writes (``POST /events``) and customer-level reads (``/customers/<id>`` and every page that
lists customers) need ``SALESPULSE_INGEST_TOKEN`` whenever the worker listens beyond
loopback: as a bearer token, or as the password of HTTP Basic so that a browser can open a
page. Beyond loopback with no token set, they are refused (403, naming the setting), so a
forgotten token never leaves them open. On loopback with no token (the demo) they are
open. ``/metrics``, ``/healthz`` and ``/readyz`` carry no customer data and stay open for
Prometheus and orchestrators. Webhooks authenticate with their vendor's own scheme.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass

TOKEN_SETTING = "SALESPULSE_INGEST_TOKEN"
REALM = 'Basic realm="SalesPulse", charset="UTF-8"'


@dataclass(frozen=True)
class Denied:
    """Why a request is refused: its HTTP status, a message, and headers for the answer."""

    status: int
    error: str

    @property
    def headers(self) -> dict[str, str]:
        # The Basic challenge lets a browser ask for the token (as the password).
        return {"WWW-Authenticate": REALM} if self.status == 401 else {}


def beyond_loopback(host: str) -> bool:
    """Whether a listen address is reachable from other machines."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name, or "" (every interface)


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


def check(token: str, host: str, authorization: str, what: str) -> Denied | None:
    """None if the request may go on; else why not. ``what`` names the guarded thing."""
    if not token:
        if beyond_loopback(host):
            return Denied(
                403,
                f"{what} is refused: the worker listens on {host or 'every interface'} beyond loopback"
                f" and {TOKEN_SETTING} is not set; set it and send it as a bearer token",
            )
        return None
    given = _given_secret(authorization)
    # compare_digest on bytes: constant time whatever the characters.
    if given is not None and hmac.compare_digest(given, token.encode()):
        return None
    return Denied(
        401,
        f"{what} needs {TOKEN_SETTING}: send 'Authorization: Bearer <token>',"
        " or HTTP Basic with the token as the password",
    )
