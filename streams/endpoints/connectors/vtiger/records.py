"""What each vtiger record becomes: zero or more canonical facts, each an event.

- a ``Leads`` record: ``lead.created`` at its ``createdtime``;
- a ``Potentials`` record: ``opportunity.created`` at its ``createdtime``, and ``deal.won``
  or ``deal.lost`` once its ``sales_stage`` is a closing stage of the mapping file, at the
  ``modifiedtime`` at which the connector first saw that stage (vtiger keeps no time of
  the win);
- an ``Events`` record (the webservice's module for calls and meetings; ``Calendar`` holds
  tasks) of ``activitytype`` Call or Meeting that concerns an account: ``customer.activity``
  at its start; other activity types are not customer activities.

A fact already emitted for a record (the caller passes what it remembers) is not emitted
again: a record seen again, or a deal edited after it was won, emits nothing new. Event ids
come from the shared rule (:mod:`..ids`) over the CRM's normalised URL, the record id and
the event type, so a fact sent twice carries one id. vtiger sends every value as a string
and times as ``YYYY-MM-DD HH:MM:SS`` with no zone; the zone is a setting.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from salespulse.streams.endpoints.connectors.ids import derive_event_id
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping
from salespulse.streams.endpoints.connectors.vtiger.directory import Directory
from salespulse.streams.pipeline.codec import Rejected, check_event

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
        "related_to",
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
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_SHAPE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$")


class UnexpectedRecord(ValueError):
    """A record whose fields cannot be read as vtiger documents them; the message names which."""

    reason = "unexpected_field"


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


@dataclass(frozen=True)
class Fact:
    """One canonical event about one record, and what is remembered of it."""

    record: str
    type: str
    occurred_at: str
    event: dict[str, Any]


@dataclass(frozen=True)
class Translator:
    """Turns the records of one CRM into facts, with the mapping file's labels."""

    mapping: ConnectorMapping
    account: str
    zone: ZoneInfo

    @staticmethod
    def references(module: str, row: Mapping[str, Any]) -> tuple[object, ...]:
        """The ids in ``row`` that point at an account or a contact."""
        if module == POTENTIALS:
            return (row.get("related_to"),)
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
            customer = directory.customer(row.get("parent_id"), row.get("contact_id"))
            if customer is None:
                return [], "no_account"
            start = f"{row.get('date_start')} {row.get('time_start')}"
            facts = [
                self._fact(
                    record,
                    "customer.activity",
                    self._at(record, start),
                    customer_id=customer,
                    channel=channel,
                )
            ]
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
        customer = directory.customer(row.get("related_to"))
        place = directory.place(customer)
        rep = self.mapping.rep(row.get("assigned_user_id"))
        region = self.mapping.region(
            city=place["bill_city"], state=place["bill_state"], country=place["bill_country"]
        )
        amount = self._amount(record, row.get("amount"))
        currency = self.mapping.currency
        facts = [
            self._fact(
                record,
                "opportunity.created",
                self._time(record, row, "createdtime"),
                opportunity_id=record,
                rep_id=rep,
                region=region,
                amount=amount,
                currency=currency,
            )
        ]
        outcome = self.mapping.vtiger_outcome(row.get("sales_stage"))
        if outcome is None or f"deal.{outcome}" in known:
            return facts
        at = self._time(record, row, "modifiedtime")
        if outcome == "lost":
            return [*facts, self._fact(record, "deal.lost", at, deal_id=record, rep_id=rep, region=region)]
        if customer is None:
            raise UnexpectedRecord(
                f"Potentials {record}: won, but related_to {row.get('related_to')!r} is neither an "
                "organisation nor a contact with one, so there is no customer to count"
            )
        won = self._fact(
            record,
            "deal.won",
            at,
            deal_id=record,
            customer_id=customer,
            rep_id=rep,
            region=region,
            product=self.mapping.product,
            kind=self.mapping.kind(row.get("opportunity_type") or None),
            amount=amount,
            currency=currency,
            source=self.mapping.source(row.get("leadsource") or None),
        )
        return [*facts, won]

    def _fact(self, record: str, event_type: str, occurred_at: str, **data: Any) -> Fact:
        event = {
            "event_id": derive_event_id(SOURCE, self.account, record, event_type),
            "type": event_type,
            "occurred_at": occurred_at,
            "source": SOURCE,
            "data": data,
        }
        try:
            check_event(event)
        except Rejected as exc:
            raise UnexpectedRecord(
                f"record {record}: its {event_type} is not a valid event: {exc.detail}"
            ) from None
        return Fact(record, event_type, occurred_at, event)

    def _time(self, record: str, row: Mapping[str, Any], name: str) -> str:
        return self._at(record, row.get(name), name)

    def _at(self, record: str, value: object, name: str = "date_start time_start") -> str:
        try:
            moment = vtiger_time(value, self.zone)
        except ValueError:
            raise UnexpectedRecord(f"record {record}: {name} {value!r} is not YYYY-MM-DD HH:MM:SS") from None
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @staticmethod
    def _amount(record: str, value: object) -> float:
        text = str(value or "").strip() or "0"
        try:
            return float(text)
        except ValueError:
            raise UnexpectedRecord(f"Potentials {record}: amount {value!r} is not a number") from None
