"""Bytes to a validated event, with the reasons a message can be rejected.

One decode path serves the topics, HTTP ingest and the producer SDK, so a message is
judged the same way wherever it enters.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any, Final

import orjson

from schemas import InvalidEvent, validate_event
from schemas.fast_decoder import decode_valid
from streams.topics import route

#: Reasons, the values of ``salespulse_events_rejected_total{reason}``.
REASONS: Final = (
    "too_large",
    "not_json",
    "unknown_type",
    "schema",
    "wrong_topic",
    "wrong_key",
)


class Rejected(Exception):
    """A message that is not a valid event; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str, field: str = "$") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


def checked(obj: object) -> tuple[dict[str, Any], int]:
    """Validate a decoded object against ``schemas/``; return it with its time in seconds."""
    try:
        event = validate_event(obj)
    except InvalidEvent as exc:
        reason = "unknown_type" if exc.field == "type" else "schema"
        raise Rejected(reason, str(exc), exc.field) from None
    try:
        return event, parse_time(event["occurred_at"])
    except ValueError:
        raise Rejected("schema", "occurred_at: not a valid date-time", "occurred_at") from None


def check_event(obj: object) -> dict[str, Any]:
    """Validate a decoded object against ``schemas/``; raise :class:`Rejected`."""
    return checked(obj)[0]


def decode(raw: bytes | None, max_bytes: int) -> tuple[dict[str, Any], int]:
    """Decode and validate one message value; return the event and its time in seconds.

    The fast decoder takes what it is sure of; anything else gets the full validator, which
    decides and says why.
    """
    if raw is None:
        raise Rejected("not_json", "empty message")
    if len(raw) > max_bytes:
        raise Rejected("too_large", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    event = decode_valid(raw)
    if event is not None:
        try:
            return event, parse_time(event["occurred_at"])
        except ValueError:
            pass
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", f"not valid JSON: {exc}") from None
    return checked(obj)


def check_route(event: dict[str, Any], topic: str, key: bytes | None) -> None:
    """Keyed state lives in one partition only if producers route as the contract says."""
    want_topic, want_key = route(event)
    if topic != want_topic:
        raise Rejected("wrong_topic", f"{event['type']} belongs on {want_topic}, not {topic}")
    if key != want_key:
        raise Rejected("wrong_key", f"{event['type']} must be keyed by {want_key.decode()!r}")


#: Epoch seconds of ``YYYY-MM-DDTHH:MM`` and ``YYYY-MM-DD`` prefixes; live events cluster in
#: minutes, a backfill in days.
_MINUTE_START: dict[str, int] = {}
_DAY_START: dict[str, int] = {}
_MINUTE_CACHE_SIZE = 1 << 16


def parse_time(value: str) -> int:
    """RFC 3339 to whole epoch seconds, with a fast path for ``YYYY-MM-DDTHH:MM:SSZ``."""
    if len(value) == 20 and value[19] == "Z":
        start = _MINUTE_START.get(value[:16])
        if start is None:
            start = _minute_start(value)
        ss = int(value[17:19])
        if ss > 59 or value[16] != ":":
            raise ValueError(value)
        return start + ss
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(value)
    return int(parsed.timestamp() // 1)


def _minute_start(value: str) -> int:
    prefix = value[:16]
    if value[10] != "T" or value[13] != ":":
        raise ValueError(value)
    hh, mm = int(value[11:13]), int(value[14:16])
    if hh > 23 or mm > 59:
        raise ValueError(value)
    day = _DAY_START.get(value[:10])
    if day is None:
        day = _DAY_START[value[:10]] = calendar.timegm(dt.date.fromisoformat(value[:10]).timetuple())
    if len(_MINUTE_START) >= _MINUTE_CACHE_SIZE:
        _MINUTE_START.clear()
        _DAY_START.clear()
    start = _MINUTE_START[prefix] = day + hh * 3600 + mm * 60
    return start


def format_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
