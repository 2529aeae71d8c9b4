"""What each vtiger record becomes: zero or more canonical facts, each an event.

- a ``Leads`` record: ``lead.created`` at its ``createdtime``;
- a ``Potentials`` record: ``opportunity.created`` at its ``createdtime``, with the deal's
  state (``sales_stage``, ``amount``, ``closingdate``, ``probability``, and
  ``forecast_category`` where vtiger has that field); while open, ``opportunity.updated`` at
  its ``modifiedtime`` whenever that state differs from the one last produced (the caller
  remembers its digest); and ``deal.won`` or ``deal.lost`` once its ``sales_stage`` is a
  closing stage of the mapping file, at the ``modifiedtime`` at which the connector first
  saw that stage (vtiger keeps no time of the win, and leaves ``probability`` as it was),
  naming the potential as the opportunity it closes;
- an ``Events`` record (the webservice's module for calls and meetings; ``Calendar`` holds
  tasks) of ``activitytype`` Call or Meeting that concerns a customer: ``customer.activity``
  at its start; other activity types are not customer activities.

A won deal's customer is its organisation (``related_to``), else its contact's
(``contact_id``) organisation, else that contact, else the deal itself (the shared chain,
:func:`..base.customer_of`); a call's is the same chain over ``parent_id`` (an
organisation, or a deal standing for its customer) and ``contact_id``, without the last
step. A fact already emitted for a record (the caller passes what it remembers) is not
emitted again: a record seen again, or a deal edited after it was won, emits nothing new.
Event ids come from the shared rule (:mod:`..ids`) over the CRM's normalised URL, the
record id and the event type, so a fact sent twice carries one id. vtiger sends every
value as a string and times as ``YYYY-MM-DD HH:MM:SS`` with no zone; the zone is a setting.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from salespulse.schemas.codec import Rejected, check_event
from salespulse.streams.endpoints.connectors.base import (
    CONTRACT,
    UNREADABLE,
    Unmappable,
    close_date,
    money,
    percent,
)
from salespulse.streams.endpoints.connectors.ids import derive_event_id, state_digest, version_of
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping
from salespulse.streams.endpoints.connectors.vtiger.directory import Directory
from salespulse.streams.endpoints.connectors.vtiger.state import STATE

SOURCE = "vtiger"
LEADS, POTENTIALS, EVENTS = "Leads", "Potentials", "Events"
#: The modules polled, in this order: a deal's account is there before its activities.
MODULES = (LEADS, POTENTIALS, EVENTS)
#: The fields each module must have; ``describe`` is checked against them at start-up.
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    LEADS: (
        "id",
        "createdtime",
        "modifiedtime",
        "assigned_user_id",
        "leadsource",
        "city",
        "state",
        "country",
    ),
    POTENTIALS: (
        "id",
        "createdtime",
        "modifiedtime",
        "assigned_user_id",
        "sales_stage",
        "amount",
        "closingdate",
        "probability",
        "related_to",
        "contact_id",
        "opportunity_type",
        "leadsource",
    ),
    EVENTS: (
        "id",
        "createdtime",
        "modifiedtime",
        "activitytype",
        "parent_id",
        "contact_id",
        "date_start",
        "time_start",
    ),
}
CHANNELS: Mapping[str, str] = {"call": "call", "meeting": "meeting"}
#: A deal's outcomes: remembered for ever, so a deal reopened and closed again counts once.
OUTCOMES = frozenset({"deal.won", "deal.lost"})
OPENED, UPDATED = "opportunity.created", "opportunity.updated"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_SHAPE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$")


class UnexpectedRecord(ValueError):
    """A record whose fields cannot be read as vtiger documents them; the message names which.

    ``cause`` is why it goes to the dead letters: a field SalesPulse cannot read
    (``unreadable``), or an event the contract refuses (``contract``, such as an amount above
    its limit). A module whose ``describe`` lacks a field fails with ``reason``.
    """

    reason = "unexpected_field"

    def __init__(self, message: str, cause: str = UNREADABLE) -> None:
        super().__init__(message)
        self.cause = cause


def crm_account(url: str) -> str:
    """The CRM's identity in event ids: host and path, so the scheme or a trailing ``/`` do not count."""
    text = url.strip()
    parts = urllib.parse.urlsplit(text if "://" in text else f"//{text}")
    return f"{parts.netloc.lower()}{parts.path.rstrip('/')}"


def checked_time(value: object) -> str:
    """vtiger's ``YYYY-MM-DD HH:MM:SS`` text, checked (ValueError otherwise).

    Cursors compare these as text and put them into queries, so nothing else may pass.
    """
    if not isinstance(value, str) or not _TIME_SHAPE.match(value):
        raise ValueError(f"{value!r} is not YYYY-MM-DD HH:MM:SS")
    datetime.strptime(value, TIME_FORMAT)
    return value


def vtiger_time(value: object, zone: ZoneInfo) -> datetime:
    """A vtiger ``YYYY-MM-DD HH:MM:SS`` time in ``zone``, as an aware datetime."""
    return datetime.strptime(checked_time(value), TIME_FORMAT).replace(tzinfo=zone)


def to_vtiger_time(moment: datetime, zone: ZoneInfo) -> str:
    """The inverse of :func:`vtiger_time`: how vtiger writes ``moment`` in ``zone``."""
    return moment.astimezone(zone).strftime(TIME_FORMAT)


def utc_text(moment: datetime) -> str:
    """An aware time as the RFC 3339 UTC text of ``occurred_at`` (these sort as times)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _offsets(local: datetime) -> tuple[timedelta, timedelta]:
    """The zone's offsets at a local time, in its first and second pass (PEP 495's fold)."""
    return local.replace(fold=0).utcoffset() or timedelta(0), local.replace(fold=1).utcoffset() or timedelta(
        0
    )


def _repeated(local: datetime) -> bool:
    """True for a local time the zone shows twice (a fall-back; in a spring gap the first
    offset is the smaller one, and no time repeats)."""
    first, second = _offsets(local)
    return first > second


def repeated_hour_start(value: str, zone: ZoneInfo) -> str | None:
    """The start of the repeated local hour (or other span) ``value`` lies in, else None.

    vtiger writes local times without an offset, so times written in the second pass of a
    fall-back hour sort before those of its first pass: a cursor in that hour misses them.
    """
    local = datetime.strptime(checked_time(value), TIME_FORMAT).replace(tzinfo=zone)
    if not _repeated(local):
        return None
    first, second = _offsets(local)
    span = first - second
    low, high = local - span, local  # the span starts after ``low`` and at or before ``local``
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        low, high = (low, middle) if _repeated(middle) else (middle, high)
    return high.strftime(TIME_FORMAT)


@dataclass(frozen=True)
class Fact:
    """One canonical event about one record, what is remembered of it, the customer fallback
    it took (None when it names no customer, or its own organisation), and the digest of the
    open potential's state it carries (None for any other fact)."""

    record: str
    type: str
    occurred_at: str
    event: dict[str, Any]
    fallback: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class Translator:
    """Turns the records of one CRM into facts, with the mapping file's labels."""

    mapping: ConnectorMapping
    account: str
    zone: ZoneInfo

    @staticmethod
    def references(module: str, row: Mapping[str, Any]) -> tuple[object, ...]:
        """The ids in ``row`` that may point at an organisation, a contact or a deal."""
        if module == POTENTIALS:
            return (row.get("related_to"), row.get("contact_id"))
        if module == EVENTS:
            return (row.get("parent_id"), row.get("contact_id"))
        return ()

    def facts(
        self, module: str, row: Mapping[str, Any], known: Mapping[str, str], directory: Directory
    ) -> tuple[list[Fact], str | None]:
        """The new facts of ``row``, and why it gives none when it is skipped (else None)."""
        record = str(row.get("id", ""))
        if module == LEADS:
            facts = [self._lead(record, row)]
        elif module == POTENTIALS:
            facts = self._potential(record, row, known, directory)
        else:
            channel = CHANNELS.get(str(row.get("activitytype", "")).strip().casefold())
            if channel is None:
                return [], "not_call_or_meeting"
            found = directory.activity_customer(row.get("parent_id"), row.get("contact_id"))
            if found is None:
                return [], "no_customer"
            customer, fallback = found
            start = f"{row.get('date_start')} {row.get('time_start')}"
            activity = self._fact(
                record, "customer.activity", self._at(record, start), customer_id=customer, channel=channel
            )
            facts = [Fact(record, activity.type, activity.occurred_at, activity.event, fallback)]
        return [f for f in facts if f.type not in known], None

    def _lead(self, record: str, row: Mapping[str, Any]) -> Fact:
        place = {k: str(row.get(k) or "").strip() for k in ("city", "state", "country")}
        optional = {k: place[k] for k in ("country", "city") if place[k]}
        return self._fact(
            record,
            "lead.created",
            self._time(record, row, "createdtime"),
            lead_id=record,
            rep_id=self.mapping.rep(row.get("assigned_user_id")),
            region=self.mapping.region(**place),
            source=self.mapping.source(row.get("leadsource") or None),
            **optional,
        )

    def _potential(
        self, record: str, row: Mapping[str, Any], known: Mapping[str, str], directory: Directory
    ) -> list[Fact]:
        customer, fallback = directory.deal_customer(record, row.get("related_to"), row.get("contact_id"))
        place = directory.place(directory.organisation(customer))
        rep = self.mapping.rep(row.get("assigned_user_id"))
        region = self.mapping.region(
            city=place["bill_city"], state=place["bill_state"], country=place["bill_country"]
        )
        amount = self._amount(record, row.get("amount"))
        currency = self.mapping.currency_of(SOURCE)
        outcome = self.mapping.vtiger_outcome(row.get("sales_stage"))
        state = {
            "opportunity_id": record,
            "rep_id": rep,
            "region": region,
            "amount": amount,
            "currency": currency,
            **self._forecast(record, row, closed=outcome is not None),
        }
        digest = state_digest(state) if outcome is None else None
        opened = self._fact(record, OPENED, self._time(record, row, "createdtime"), **state)
        facts = [replace(opened, state=digest)]
        if outcome is None:
            if digest != known.get(STATE) and OUTCOMES.isdisjoint(known):  # a close is final
                at = self._time(record, row, "modifiedtime")
                update = self._checked(record, UPDATED, at, version_of(record, at, state), state)
                facts.append(replace(update, state=digest))
            return facts
        if f"deal.{outcome}" in known:
            return facts
        at = self._time(record, row, "modifiedtime")
        if outcome == "lost":
            lost = self._fact(
                record, "deal.lost", at, deal_id=record, rep_id=rep, region=region, opportunity_id=record
            )
            return [*facts, lost]
        won = self._fact(
            record,
            "deal.won",
            at,
            deal_id=record,
            customer_id=customer,
            rep_id=rep,
            region=region,
            product=self.mapping.product,
            kind=self.mapping.kind(row.get(self.mapping.kind_field(SOURCE)) or None),
            amount=amount,
            currency=currency,
            source=self.mapping.source(row.get("leadsource") or None),
            opportunity_id=record,
        )
        return [*facts, replace(won, fallback=fallback)]

    def _forecast(self, record: str, row: Mapping[str, Any], *, closed: bool) -> dict[str, Any]:
        """The potential's forecast fields that have a value; a closing stage is no stage."""
        try:
            fields = {
                "stage": None if closed else str(row.get("sales_stage") or "").strip() or None,
                "probability": percent(row.get("probability"), "probability"),
                "forecast_category": self.mapping.forecast_category(row.get("forecast_category") or None),
                "expected_close": close_date(row.get("closingdate"), "closingdate"),
            }
        except Unmappable as exc:
            raise UnexpectedRecord(f"Potentials {record}: {exc.detail}") from None
        return {k: v for k, v in fields.items() if v is not None}

    def _fact(self, record: str, event_type: str, occurred_at: str, **data: Any) -> Fact:
        return self._checked(record, event_type, occurred_at, record, data)

    def _checked(
        self, record: str, event_type: str, occurred_at: str, about: str, data: dict[str, Any]
    ) -> Fact:
        """The fact, its id derived from what it is ``about`` (the record, or one of its versions)."""
        event = {
            "event_id": derive_event_id(SOURCE, self.account, about, event_type),
            "type": event_type,
            "occurred_at": occurred_at,
            "source": SOURCE,
            "data": data,
        }
        try:
            check_event(event)
        except Rejected as exc:
            raise UnexpectedRecord(
                f"record {record}: its {event_type} is not a valid event: {exc.detail}", CONTRACT
            ) from None
        return Fact(record, event_type, occurred_at, event)

    def _time(self, record: str, row: Mapping[str, Any], name: str) -> str:
        return self._at(record, row.get(name), name)

    def _at(self, record: str, value: object, name: str = "date_start time_start") -> str:
        try:
            moment = vtiger_time(value, self.zone)
        except ValueError:
            raise UnexpectedRecord(f"record {record}: {name} {value!r} is not YYYY-MM-DD HH:MM:SS") from None
        return utc_text(moment)

    @staticmethod
    def _amount(record: str, value: object) -> Decimal:
        """vtiger's 8-decimal string as the decimal it spells (none is 0)."""
        try:
            return money(str(value or "").strip() or "0", "amount")
        except Unmappable:
            raise UnexpectedRecord(f"Potentials {record}: amount {value!r} is not a number") from None
