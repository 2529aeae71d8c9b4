"""What every connector shares: the result of a mapping, and the small conversions vendors need.

A vendor payload maps to canonical events, to parts that cannot be mapped (they go to the
dead-letter topic, so nothing disappears), and to parts that carry no fact SalesPulse
counts (a deal's description changed): those are only counted.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from salespulse.streams.endpoints.connectors.ids import derive_event_id


class Unmappable(Exception):
    """A part of an authenticated payload that cannot become an event, and why."""

    def __init__(self, detail: str, payload: object = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.payload = payload

    def value(self, raw: bytes) -> bytes:
        """The bytes to dead-letter: the part that failed when known, else the whole body."""
        if self.payload is None:
            return raw
        if isinstance(self.payload, bytes):
            return self.payload
        return orjson.dumps(self.payload, default=str)


@dataclass
class Translation:
    """A payload's events, its unmappable parts, and how many parts carried nothing to count."""

    events: list[dict[str, Any]] = field(default_factory=list)
    unmappable: list[Unmappable] = field(default_factory=list)
    ignored: int = 0

    def extend(self, other: Translation) -> None:
        self.events += other.events
        self.unmappable += other.unmappable
        self.ignored += other.ignored


class BadRequest(ValueError):
    """A body that is not the vendor's kind of request at all (answered 400, nothing written)."""


class VendorUnavailable(Exception):
    """The vendor's API could not be read: answer 5xx so that the vendor retries later."""


def same_secret(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time comparison, whatever the characters."""
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def make_event(
    source: str, account: str, object_id: str, event_type: str, occurred_at: str, data: dict[str, Any]
) -> dict[str, Any]:
    """A canonical event whose id is derived from the fact (so redeliveries count once)."""
    return {
        "event_id": derive_event_id(source, account, object_id, event_type),
        "type": event_type,
        "occurred_at": occurred_at,
        "source": source,
        "data": {k: v for k, v in data.items() if v is not None},
    }


def from_epoch(value: object, *, millis: bool, what: str) -> str:
    """An epoch time in seconds or milliseconds as RFC 3339 UTC."""
    try:
        number = float(str(value))
    except ValueError:
        raise Unmappable(f"{what}: {value!r} is not an epoch time") from None
    if not math.isfinite(number) or number < 0:
        raise Unmappable(f"{what}: {value!r} is not an epoch time")
    seconds = number / 1000 if millis else number
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise Unmappable(f"{what}: {value!r} is out of range") from None
    return moment.isoformat(timespec="milliseconds" if millis else "seconds").replace("+00:00", "Z")


def vendor_time(value: object, what: str) -> str:
    """A vendor's own timestamp as RFC 3339: ISO with a zone, or naive ISO read as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise Unmappable(f"{what} is missing")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Unmappable(f"{what}: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def required_text(value: object, what: str) -> str:
    """A non-empty id or label; numbers (vendor ids often are) become their digits."""
    if isinstance(value, bool) or value is None:
        raise Unmappable(f"{what} is missing")
    if isinstance(value, int | str):
        text = str(value).strip()
        if text:
            return text
    raise Unmappable(f"{what} is missing")


def optional_text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return str(value).strip() or None


def money(value: object, what: str) -> float:
    """A vendor amount (a number, or a string like ``"1500.00"``) as a number."""
    if isinstance(value, bool) or value is None or value == "":
        raise Unmappable(f"{what} is missing")
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise Unmappable(f"{what}: {value!r} is not a non-negative amount")
    return number


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unmappable(f"body is not JSON: {exc}") from None


@dataclass(frozen=True)
class WebhookRequest:
    """What a connector checks: the method and URL as the vendor called them, headers, raw body."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


class Connector(Protocol):
    """One vendor's webhook: when it is enabled, how it authenticates, how it maps and answers."""

    vendor: str

    def missing(self) -> str | None:
        """The setting(s) to set before the endpoint is enabled, or None when it is."""

    def refusal(self, request: WebhookRequest) -> str | None:
        """Why the request is not the vendor's (answered 401), or None when it is."""

    async def translate(self, body: bytes) -> Translation:
        """Map an authenticated body; raise :class:`VendorUnavailable` to be retried later."""

    def reply(self, translation: Translation) -> tuple[str, bytes]:
        """Content type and body of the success answer (sent only after the broker acked)."""


def json_ack(translation: Translation) -> tuple[str, bytes]:
    """The success answer of the vendors that only read the status code."""
    body = {
        "accepted": len(translation.events),
        "unmappable": len(translation.unmappable),
        "ignored": translation.ignored,
    }
    return "application/json", orjson.dumps(body)
