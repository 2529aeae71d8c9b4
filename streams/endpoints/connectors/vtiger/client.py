"""vtiger's REST webservice (``webservice.php``), as vtiger documents it, over plain urllib.

A challenge token (``getchallenge``) and ``md5(token + access key)`` log in and give a
session; ``query`` runs one VTQL statement and answers at most 100 rows; ``describe``
tells a module's fields and its record-id prefix. Every answer is an envelope,
``{"success": true, "result": ...}`` or ``{"success": false, "error": {"code", "message"}}``;
the failures become the exceptions below, each naming the cause an operator can act on.
An expired session is renewed once, transparently.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

log = logging.getLogger("salespulse.connect.vtiger")

#: vtiger answers at most this many rows per query; larger results are paged with LIMIT.
PAGE_SIZE = 100

#: Error codes meaning "log in again" (WebServiceErrorCode in vtiger's sources).
SESSION_CODES = frozenset(
    {"INVALID_SESSIONID", "SESSION_EXPIRED", "SESSION_LEFT_IDLE", "AUTHENTICATION_REQUIRED"}
)
#: Error codes meaning the credentials or the user's rights are wrong: retrying will not help.
AUTH_CODES = frozenset(
    {
        "INVALID_USER_CREDENTIALS",
        "INVALID_AUTH_TOKEN",
        "AUTHENTICATION_FAILURE",
        "ACCESS_DENIED",
        "ACCESSKEY_UNDEFINED",
    }
)


_URL_HINT = "is SALESPULSE_VTIGER_URL the CRM's base URL (without /index.php)?"


class VtigerError(RuntimeError):
    """vtiger could not answer as asked; ``reason`` is the metric label of the cause."""

    reason = "vtiger"

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class VtigerUnreachable(VtigerError):
    """No answer, an HTTP error, or an answer that is not the webservice's envelope."""

    reason = "unreachable"


class VtigerAuthFailed(VtigerError):
    """The login was refused, or the user may not read a module."""

    reason = "auth"


class VtigerQueryFailed(VtigerError):
    """vtiger refused a query or a describe (a syntax error, an unknown module, a database error)."""

    reason = "query"


class _SessionExpired(VtigerError):
    """The session is no longer valid; the client logs in again."""


class VtigerClient:
    """One user's session with one vtiger; not thread-safe (the poller is one thread)."""

    def __init__(self, url: str, user: str, access_key: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/webservice.php"
        self.user = user
        self._access_key = access_key
        self.timeout = timeout
        self._session: str | None = None

    def __repr__(self) -> str:
        return f"VtigerClient(url={self.url!r}, user={self.user!r})"

    def _call(self, method: str, params: dict[str, str]) -> Any:
        encoded = urllib.parse.urlencode(params)
        if method == "GET":
            request = urllib.request.Request(f"{self.endpoint}?{encoded}")
        else:
            request = urllib.request.Request(
                self.endpoint,
                data=encoded.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        operation = params["operation"]
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            hint = f": {_URL_HINT}" if exc.code == 404 else ""
            raise VtigerUnreachable(
                f"{self.endpoint} answered HTTP {exc.code} to {operation}{hint}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            cause = getattr(exc, "reason", exc)
            raise VtigerUnreachable(f"cannot reach vtiger at {self.url}: {cause}") from None
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            envelope = None
        if not isinstance(envelope, dict) or "success" not in envelope:
            raise VtigerUnreachable(
                f"{self.endpoint} answered {operation} with something that is not vtiger's webservice "
                f"envelope: {_URL_HINT}"
            )
        if envelope["success"] is True:
            return envelope.get("result")
        error = envelope.get("error")
        if not isinstance(error, dict):
            error = {}
        code, message = str(error.get("code", "")), str(error.get("message", ""))
        if code in SESSION_CODES:
            raise _SessionExpired(message, code)
        if code in AUTH_CODES:
            raise VtigerAuthFailed(
                f"vtiger refused {operation} for user {self.user!r} ({code}: {message}); check "
                "SALESPULSE_VTIGER_USER and SALESPULSE_VTIGER_ACCESS_KEY (the access key from "
                "My Preferences, not the password) and the user's rights",
                code,
            )
        raise VtigerQueryFailed(f"vtiger refused {operation} ({code or 'no code'}: {message})", code)

    def login(self) -> None:
        """Challenge, then log in with ``md5(token + access key)`` as lowercase hex."""
        challenge = self._call("GET", {"operation": "getchallenge", "username": self.user})
        token = challenge.get("token") if isinstance(challenge, dict) else None
        if not isinstance(token, str):
            raise VtigerUnreachable(f"vtiger at {self.url} answered getchallenge without a token")
        key = hashlib.md5((token + self._access_key).encode(), usedforsecurity=False).hexdigest()
        try:
            result = self._call("POST", {"operation": "login", "username": self.user, "accessKey": key})
        except _SessionExpired as exc:  # an expired challenge token: the login itself failed
            raise VtigerAuthFailed(
                f"vtiger refused the login of {self.user!r} ({exc.code}: {exc})", exc.code
            ) from None
        session = result.get("sessionName") if isinstance(result, dict) else None
        if not isinstance(session, str):
            raise VtigerUnreachable(f"vtiger at {self.url} answered login without a sessionName")
        self._session = session
        log.info("logged in to vtiger at %s as %s", self.url, self.user)

    def connect(self) -> None:
        """Log in unless a session is open."""
        if self._session is None:
            self.login()

    def logout(self) -> None:
        """End the session, best effort: vtiger 8 under PHP 8 answers ``logout`` with HTTP 500,
        and an unended session expires on its own."""
        if self._session is None:
            return
        try:
            self._call("POST", {"operation": "logout", "sessionName": self._session})
        except VtigerError as exc:
            log.debug("vtiger logout failed (best effort): %s", exc)
        finally:
            self._session = None

    def _session_call(self, params: dict[str, str]) -> Any:
        if self._session is None:
            self.login()
        try:
            return self._call("GET", {**params, "sessionName": str(self._session)})
        except _SessionExpired as exc:
            log.info("vtiger session ended (%s): logging in again", exc.code)
            self.login()
            return self._call("GET", {**params, "sessionName": str(self._session)})

    def query(self, vtql: str) -> list[dict[str, Any]]:
        """Rows of one VTQL statement (at most :data:`PAGE_SIZE`), every value as vtiger sent it."""
        rows = self._session_call({"operation": "query", "query": vtql})
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise VtigerUnreachable(f"vtiger at {self.url} answered a query with something other than rows")
        return rows

    def describe(self, module: str) -> dict[str, Any]:
        """A module's description: its ``fields`` and its record-id ``idPrefix``."""
        result = self._session_call({"operation": "describe", "elementType": module})
        if not isinstance(result, dict) or not isinstance(result.get("fields"), list):
            raise VtigerUnreachable(f"vtiger at {self.url} answered describe {module} without fields")
        return result
