"""What every connector shares: the result of a mapping, and the small conversions vendors need.

A vendor payload maps to canonical events, to parts that cannot be mapped (they go to the
dead-letter topic, so nothing disappears), and to parts that carry no fact SalesPulse
counts (a deal's description changed): those are only counted. The customer of a won deal
is chosen here for every connector by one rule (:func:`customer_of`), so a deal's re-sends
always name the same customer and land on the same partition. An opportunity's change is
one more version of it (:func:`make_update`), read from the vendor's probability and close
date fields with :func:`percent` and :func:`close_date`.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import orjson

from salespulse.schemas import exact_json
from salespulse.streams.endpoints.connectors.ids import derive_event_id, version_of

#: Why a record went to the dead letters: the ``reason`` label of
#: ``salespulse_connector_records_dead_total`` and the ``salespulse.cause`` header.
UNREADABLE = "unreadable"  # a field is missing or not in the vendor's documented format
UNKNOWN_OBJECT = "unknown_object"  # an object or notification type that maps to no event
CONTRACT = "contract"  # the mapped event breaks the event contract (an amount over its limit)
CAUSES = (UNREADABLE, UNKNOWN_OBJECT, CONTRACT)

#: How a won deal's customer was found when the deal names no organisation: the
#: ``reason`` label of ``salespulse_connector_fallbacks_total``, in the chain's order.
CONTACT_ORGANISATION = "contact_organisation"
CONTACT = "contact"
DEAL = "deal"
FALLBACKS = (CONTACT_ORGANISATION, CONTACT, DEAL)

#: A module label for a record whose kind is not one a connector declares (label values
#: stay bounded whatever a vendor sends).
OTHER_MODULE = "other"


class Unmappable(Exception):
    """A part of an authenticated payload that cannot become an event, and why.

    ``module`` and ``record`` say which vendor object it was (its kind and id), when known.
    """

    def __init__(
        self,
        detail: str,
        payload: object = None,
        *,
        cause: str = UNREADABLE,
        module: str = "",
        record: str = "",
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.payload = payload
        self.cause = cause
        self.module = module
        self.record = record

    def about(self, module: object, record: object) -> Unmappable:
        """Name the vendor object this part was, unless a more precise name is known already."""
        self.module = self.module or (optional_text(module) or "")
        self.record = self.record or (optional_text(record) or "")
        return self

    def value(self, raw: bytes) -> bytes:
        """The bytes to dead-letter: the part that failed when known, else the whole body."""
        if self.payload is None:
            return raw
        if isinstance(self.payload, bytes):
            return self.payload
        return orjson.dumps(self.payload, default=str)


@dataclass
class Translation:
    """A payload's events, its unmappable parts, how many parts carried nothing to count, and
    the customer fallback each event took (by event id)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    unmappable: list[Unmappable] = field(default_factory=list)
    ignored: int = 0
    fallbacks: dict[str, str] = field(default_factory=dict)

    def extend(self, other: Translation) -> None:
        self.events += other.events
        self.unmappable += other.unmappable
        self.ignored += other.ignored
        self.fallbacks.update(other.fallbacks)

    def add(self, event: dict[str, Any], fallback: str | None = None) -> None:
        self.events.append(event)
        if fallback is not None:
            self.fallbacks[event["event_id"]] = fallback


class BadRequest(ValueError):
    """A body that is not the vendor's kind of request at all (answered 400, nothing written)."""


class VendorUnavailable(Exception):
    """The vendor's API could not be read: answer 5xx so that the vendor retries later."""


class Refused(Exception):
    """A body that turns out not to come from the vendor once parsed (answered 401, nothing
    written): Salesforce's second check, its organisation id, is inside the envelope."""


def deal_customer(deal_id: str) -> str:
    """The customer id of a deal that names neither an organisation nor a contact: the deal
    stands for a customer of its own, so the win still counts for every customer KPI."""
    return f"deal:{deal_id}"


def customer_of(
    deal_id: str, organisation: object, contact_organisation: object = None, contact: object = None
) -> tuple[str, str | None]:
    """A won deal's customer and the fallback taken (None for its own organisation).

    The organisation; else its contact's organisation; else the contact; else the deal
    itself (:func:`deal_customer`). Each argument is what the record says, so the same
    record always gives the same customer, and a deal's re-sends one partition.
    """
    for value, fallback in (
        (organisation, None),
        (contact_organisation, CONTACT_ORGANISATION),
        (contact, CONTACT),
    ):
        text = optional_text(value)
        if text is not None:
            return text, fallback
    return deal_customer(deal_id), DEAL


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


def make_update(
    source: str, account: str, occurred_at: str, data: dict[str, Any], *, read_later: bool = False
) -> dict[str, Any]:
    """An ``opportunity.updated``: the opportunity's whole state (``data``) as of its modification
    in the vendor at ``occurred_at``. Its id names that version (:func:`..ids.version_of`):
    by time and state, or by time alone when the state was ``read_later`` than the change."""
    state = {k: v for k, v in data.items() if v is not None}
    version = version_of(str(state["opportunity_id"]), occurred_at, None if read_later else state)
    return make_event(source, account, version, "opportunity.updated", occurred_at, state)


def dead_letter_headers(
    vendor: str, source: str, module: str, record: str, cause: str, detail: str
) -> list[tuple[str, bytes]]:
    """The headers of a connector's dead letter: why, whose, which object; never a secret.

    ``salespulse.reason`` is ``unmappable`` as for every connector record; ``salespulse.cause``
    says why (one of :data:`CAUSES`).
    """
    return [
        ("salespulse.reason", b"unmappable"),
        ("salespulse.detail", detail.encode()[:1024]),
        ("salespulse.vendor", vendor.encode()),
        ("salespulse.source", source.encode()),
        ("salespulse.module", module.encode()[:200]),
        ("salespulse.record", record.encode()[:200]),
        ("salespulse.cause", cause.encode()),
    ]


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


def money(value: object, what: str) -> Decimal:
    """A vendor amount (a number, or a string like vtiger's ``"12500.50000000"``) as the exact
    decimal it spells: never through a float, which keeps 15 to 17 digits."""
    if isinstance(value, bool) or value is None or value == "":
        raise Unmappable(f"{what} is missing")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (InvalidOperation, TypeError):
        number = Decimal("NaN")
    if not isinstance(value, int | float | str | Decimal) or not number.is_finite() or number < 0:
        raise Unmappable(f"{what}: {value!r} is not a non-negative amount")
    return number


def percent(value: object, what: str, *, fraction: bool = False) -> int | float | None:
    """A vendor's probability in percent (``fraction``: given as a share of 1, as HubSpot's are),
    exactly as written (``"10.000"`` is 10); None when the vendor left it empty. Whether it
    lies within 0-100 is the contract's to say."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Unmappable(f"{what}: {value!r} is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise Unmappable(f"{what}: {value!r} is not a number") from None
    if not number.is_finite():
        raise Unmappable(f"{what}: {value!r} is not a number")
    if fraction:
        number *= 100
    return int(number) if number == number.to_integral_value() else float(number)


_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def close_date(value: object, what: str) -> str | None:
    """A vendor's expected close date as ``YYYY-MM-DD``: a date as written, or the UTC date of a
    time (HubSpot keeps ``closedate`` as one); None when the vendor left it empty."""
    text = optional_text(value)
    if text is None:
        return None
    if len(text) > 10:
        moment = datetime.fromisoformat(vendor_time(text, what).replace("Z", "+00:00"))
        return moment.astimezone(UTC).date().isoformat()
    try:
        if _DATE.match(text):
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise Unmappable(f"{what}: {value!r} is not a date (YYYY-MM-DD)")


def load_json(body: bytes) -> Any:
    try:
        return exact_json.loads(body)  # a vendor's amounts as the decimals they spell
    except exact_json.DecodeError as exc:
        raise Unmappable(f"body is not JSON: {exc}") from None


@dataclass(frozen=True)
class WebhookRequest:
    """What a connector checks: the method and URL as the vendor called them, headers, raw body,
    and the path segment after ``/webhooks/<vendor>/`` (empty without one)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    tail: str = ""


class Connector(Protocol):
    """One vendor's webhook: when it is enabled, how it authenticates, how it maps and answers.

    ``modules`` names the vendor object each event type comes from (the ``module`` label of
    dead records), ``fallbacks`` the customer fallbacks it can take, and ``body_limit`` a
    body limit below the worker's, when the vendor's bodies are smaller by nature.
    """

    vendor: str
    modules: Mapping[str, str]
    fallbacks: tuple[str, ...]
    body_limit: int | None

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
