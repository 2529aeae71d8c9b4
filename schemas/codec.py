"""Bytes to a validated event, with the reasons a message can be rejected.

One decode path serves the topics, HTTP ingest and the producer SDK, so a message is
judged the same way wherever it enters. It lives with the contract it checks, so the
connectors and the SDK check their events without reaching into the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from salespulse.schemas import InvalidEvent, exact_json, validate_event
from salespulse.schemas.event_time import format_time, parse_time
from salespulse.schemas.fast_decoder import decode_valid
from salespulse.schemas.topics import close_route, route

#: Reasons, the values of ``salespulse_events_rejected_total{reason}``. ``unmappable`` is a
#: vendor webhook payload that authenticated but cannot become an event (the webhooks count it).
REASONS: Final = (
    "too_large",
    "not_json",
    "unknown_type",
    "schema",
    "wrong_topic",
    "wrong_key",
    "wrong_partition",
    "future",
    "unmappable",
)


#: The header a forwarded record carries: where it arrived, as ``topic/partition/offset``.
FORWARDED_FROM: Final = "salespulse.forwarded-from"

#: How far, in seconds, an event's ``occurred_at`` may run ahead of its record's timestamp, and
#: a read's ``at`` ahead of the worker's clock: ``SALESPULSE_MAX_CLOCK_SKEW``'s default.
MAX_CLOCK_SKEW: Final = 600


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


def check_not_future(t: int, written_ms: int | None, max_skew: int) -> None:
    """Refuse an event dated more than ``max_skew`` seconds after it was written.

    ``written_ms`` is the Kafka record's timestamp (the worker's wall clock for HTTP ingest,
    which is about what the record will get): the decision depends on the record alone, so
    every replay makes it again, whatever the worker's clock. A record without a timestamp
    (``None``, or Kafka's -1) cannot be judged and passes.
    """
    # t > (written + skew) // 1000 is t * 1000 > written + skew for whole seconds t, without a
    # product past 2**31, which mypyc multiplies as a Python long (about 300 instructions).
    if written_ms is not None and written_ms >= 0 and t > (written_ms + max_skew * 1000) // 1000:
        raise Rejected(
            "future",
            f"occurred_at {format_time(t)} is in the future, more than {max_skew}s"
            f" (SALESPULSE_MAX_CLOCK_SKEW) after it was written ({format_time(written_ms / 1000)})",
            "occurred_at",
        )


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
    fast = decode_valid(raw)
    if fast is not None:
        return fast
    try:
        obj = exact_json.loads(raw)
    except exact_json.DecodeError as exc:
        raise Rejected("not_json", f"not valid JSON: {exc}") from None
    return checked(obj)


def check_route(
    event: dict[str, Any], topic: str, key: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()
) -> bool:
    """Keyed state lives in one partition only if producers route as the contract says.

    One more route is accepted, and it only: a close (``deal.won``/``deal.lost`` naming its
    opportunity) that a worker forwarded (``headers`` name where it came from) to
    ``crm.leads``, keyed by its opportunity. True says the event is such a close.
    """
    want_topic, want_key = route(event)
    if topic != want_topic:
        if close_route(event) == (topic, key) and any(name == FORWARDED_FROM for name, _ in headers):
            return True
        raise Rejected("wrong_topic", f"{event['type']} belongs on {want_topic}, not {topic}")
    if key != want_key:
        raise Rejected("wrong_key", f"{event['type']} must be keyed by {want_key.decode()!r}")
    return False
