"""A corpus that exercises every detractor rule, shared by the unit, exact and fault tests.

Detractors open and followed up (in and out of the target), promoters and passives, a
detractor later resolved by a promoter answer, a re-answer of the same response, follow-ups
on human and non-human channels, a follow-up before the answer (which does not count), late
events, a duplicate delivery, a comment over 2,000 characters, one in Persian and one with
markup.
"""

from __future__ import annotations

from typing import Any

from salespulse.schemas.event_time import format_time, parse_time

CLOCK = "2026-11-26T12:00:00Z"
T = parse_time(CLOCK)
HOUR = 3600
DAY = 86400
PERSIAN = "پشتیبانی خیلی کند بود و کسی جواب نداد"
MARKUP = '<script>alert("x")</script> & <b>bold</b>'
LONG = "x" * 2500


def event(type_: str, t: int, event_id: str, **data: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "occurred_at": format_time(t),
        "source": "detractor-corpus",
        "data": data,
    }


def answer(t: int, event_id: str, customer: str, score: int, **extra: Any) -> dict[str, Any]:
    region = extra.pop("region", "north")
    return event(
        "survey.answered",
        t,
        event_id,
        survey="nps",
        score=score,
        customer_id=customer,
        region=region,
        product="crm-pro",
        **extra,
    )


def activity(t: int, event_id: str, customer: str, channel: str) -> dict[str, Any]:
    return event("customer.activity", t, event_id, customer_id=customer, channel=channel)


def won(t: int, event_id: str, customer: str, rep: str) -> dict[str, Any]:
    return event(
        "deal.won",
        t,
        event_id,
        deal_id=f"D-{event_id}",
        customer_id=customer,
        rep_id=rep,
        region="north",
        product="crm-pro",
        kind="new",
        amount=100.0,
        currency="EUR",
    )


def corpus(now: int = T, prefix: str = "") -> list[dict[str, Any]]:
    """The events, in send order (activities often before the answers they follow)."""
    p = prefix
    return [
        won(now - 90 * DAY, f"{p}w1", f"{p}C-open", "r-old"),  # late, still sets the owner
        won(now - 40 * DAY, f"{p}w2", f"{p}C-open", "r-1"),
        won(now - 50 * DAY, f"{p}w3", f"{p}C-open", "r-older"),  # older: not the owner
        answer(now - 30 * HOUR, f"{p}a1", f"{p}C-open", 3, comment=PERSIAN),
        activity(now - 5 * HOUR, f"{p}x1", f"{p}C-called", "call"),  # before its answer arrives
        activity(now - 8 * HOUR, f"{p}x2", f"{p}C-called", "sms"),  # not a human channel
        answer(now - 10 * HOUR, f"{p}a2", f"{p}C-called", 2, region="south"),
        won(now - 3 * DAY, f"{p}w4", f"{p}C-called", "r-2"),
        answer(now - 2 * HOUR, f"{p}a3", f"{p}C-recent", 5),
        answer(now - 5 * DAY, f"{p}a4", f"{p}C-slow", 6, response_id=f"{p}R-slow"),
        activity(now - 3 * DAY, f"{p}x3", f"{p}C-slow", "email"),  # followed up, after the target
        activity(now - 4 * HOUR, f"{p}x4", f"{p}C-before", "call"),  # before the answer: no
        answer(now - 3 * HOUR, f"{p}a5", f"{p}C-before", 4),
        activity(now - 1 * HOUR, f"{p}x5", f"{p}C-before", "login"),  # not human
        answer(now - 2 * DAY, f"{p}a6", f"{p}C-promoted", 1),
        answer(now - 1 * DAY, f"{p}a7", f"{p}C-promoted", 10),  # resolves without follow-up
        answer(now - 19 * HOUR, f"{p}a8b", f"{p}C-reanswer", 4, response_id=f"{p}R-8", comment="edited"),
        activity(now - 19 * HOUR - 1800, f"{p}x6", f"{p}C-reanswer", "meeting"),  # before latest
        answer(now - 20 * HOUR, f"{p}a8", f"{p}C-reanswer", 3, response_id=f"{p}R-8", comment=MARKUP),
        activity(now - 1 * HOUR, f"{p}x7", f"{p}C-reanswer", "support"),
        answer(now - 6 * HOUR, f"{p}a9", f"{p}C-passive", 7, comment="fine"),
        answer(now - 70 * DAY, f"{p}a10", f"{p}C-late", 0),  # late: profile only, no case
        activity(now - 69 * DAY, f"{p}x8", f"{p}C-late", "call"),
        answer(now - 1 * HOUR, f"{p}a11", f"{p}C-long", 0, comment=LONG),
        activity(now - 30 * 60, f"{p}x9", f"{p}C-long", "webinar"),
        answer(now - 30 * HOUR, f"{p}a1", f"{p}C-open", 3, comment=PERSIAN),  # a duplicate delivery
        activity(now - 2 * HOUR, f"{p}x10", f"{p}C-called", "email"),  # later than the first call
        answer(now - 12 * HOUR, f"{p}a12", f"{p}C-tie", 6),
        activity(now - 12 * HOUR, f"{p}x11", f"{p}C-tie", "call"),  # same second: not after
    ]
