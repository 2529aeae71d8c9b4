"""Salesforce Outbound Messages: opportunities and leads, sent by a record-triggered Flow.

An Outbound Message is a SOAP ``notifications`` envelope with up to 100 ``Notification``s,
each with the record's fields as they are now. An open opportunity edited since it was
created (``LastModifiedDate`` after ``CreatedDate``) is an ``opportunity.updated`` with its
whole state (stage, amount, close date, probability, forecast category, owner).
It carries no signature and cannot carry a custom header, so SalesPulse's own secret
(``SALESPULSE_SALESFORCE_SECRET``) is the last segment of the endpoint URL the message is
configured with, compared in constant time before anything parses the body. The envelope's
``OrganizationId`` (public: every Web-to-Lead form carries it) is a second check. Salesforce
resends a message until it gets the SOAP ``notificationsResponse`` with ``<Ack>true</Ack>``,
so that answer is sent only after the broker has acknowledged every event; anything else
makes Salesforce retry. The envelope (at most 1 MiB) is parsed with defusedxml, off the
event loop: no DTDs, no entity expansion, no external references.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from salespulse.streams.endpoints.connectors.base import (
    CONTACT,
    DEAL,
    UNKNOWN_OBJECT,
    BadRequest,
    Refused,
    Translation,
    Unmappable,
    WebhookRequest,
    close_date,
    customer_of,
    make_event,
    make_update,
    money,
    optional_text,
    percent,
    required_text,
    same_secret,
    vendor_time,
)
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping

SOURCE = "salesforce"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
#: An Outbound Message holds at most 100 notifications of a few fields each: far below this.
BODY_LIMIT = 1024 * 1024
#: The Salesforce object each event comes from.
MODULES = {
    "lead.created": "Lead",
    "opportunity.created": "Opportunity",
    "opportunity.updated": "Opportunity",
    "deal.won": "Opportunity",
    "deal.lost": "Opportunity",
}

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
).encode()


class NotAnEnvelope(BadRequest):
    """The body is not an Outbound Message (answered 400: there is no org to trust)."""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def notifications_of(body: bytes) -> tuple[str, list[Element]]:
    """The envelope's ``OrganizationId`` and its ``Notification`` elements."""
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise NotAnEnvelope(f"not an Outbound Message: the body is not safe XML ({exc})") from None
    found = root.find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notifications")
    if found is None:
        raise NotAnEnvelope("not an Outbound Message: no soapenv:Body/notifications element")
    org = (found.findtext(f"{{{OUTBOUND}}}OrganizationId") or "").strip()
    return org, found.findall(f"{{{OUTBOUND}}}Notification")


def same_org(given: str, configured: str) -> bool:
    """Org ids compared on their case-sensitive 15-character form (the 18-character one adds a
    case-insensitive checksum)."""
    if len(given) not in {15, 18} or len(configured) not in {15, 18}:
        return False
    return same_secret(given[:15], configured[:15])


def _fields(sobject: Element) -> dict[str, str]:
    return {_local(child.tag): (child.text or "").strip() for child in sobject}


def _state(fields: dict[str, str], opp_id: str, mapping: ConnectorMapping) -> dict[str, Any]:
    """The opportunity's whole state (one without an amount is worth 0 so far)."""
    return {
        "opportunity_id": opp_id,
        "rep_id": mapping.rep(fields.get("OwnerId")),
        "region": mapping.region(),
        "amount": money(fields["Amount"], "Opportunity Amount") if fields.get("Amount") else 0.0,
        "currency": optional_text(fields.get("CurrencyIsoCode")) or mapping.currency_of(SOURCE),
        "stage": optional_text(fields.get("StageName")),
        "probability": percent(fields.get("Probability"), "Opportunity Probability"),
        "forecast_category": mapping.forecast_category(fields.get("ForecastCategoryName") or None),
        "expected_close": close_date(fields.get("CloseDate"), "Opportunity CloseDate"),
    }


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _opportunity(
    fields: dict[str, str], account: str, mapping: ConnectorMapping
) -> list[tuple[dict[str, Any], str | None]]:
    """The opportunity's events, each with the customer fallback a win took. The message
    carries no contact's account: the chain is the account, else the primary contact, else
    the deal. An open one is opened (at ``CreatedDate``; a copy of that fact carries its id)
    and, once edited, updated (at ``LastModifiedDate``)."""
    opp_id = required_text(fields.get("Id"), "Opportunity Id")
    rep = mapping.rep(fields.get("OwnerId"))
    region = mapping.region()
    currency = optional_text(fields.get("CurrencyIsoCode")) or mapping.currency_of(SOURCE)
    closed = fields.get("IsClosed") == "true"
    if closed and fields.get("IsWon") == "true":
        customer, fallback = customer_of(
            opp_id, fields.get(mapping.customer_field(SOURCE)), None, fields.get("ContactId")
        )
        data = {
            "deal_id": opp_id,
            "customer_id": customer,
            "rep_id": rep,
            "region": region,
            "product": mapping.product,
            "kind": mapping.kind(fields.get(mapping.kind_field(SOURCE))),
            "amount": money(fields.get("Amount"), "Opportunity Amount (a won deal's amount)"),
            "currency": currency,
            "source": mapping.source(fields["LeadSource"]) if fields.get("LeadSource") else None,
            "opportunity_id": opp_id,
        }
        when = vendor_time(fields.get("LastModifiedDate"), "Opportunity LastModifiedDate")
        return [(make_event(SOURCE, account, opp_id, "deal.won", when, data), fallback)]
    if closed:
        data = {"deal_id": opp_id, "rep_id": rep, "region": region, "opportunity_id": opp_id}
        when = vendor_time(fields.get("LastModifiedDate"), "Opportunity LastModifiedDate")
        return [(make_event(SOURCE, account, opp_id, "deal.lost", when, data), None)]
    state = _state(fields, opp_id, mapping)
    created = vendor_time(fields.get("CreatedDate"), "Opportunity CreatedDate")
    events: list[tuple[dict[str, Any], str | None]] = [
        (make_event(SOURCE, account, opp_id, "opportunity.created", created, state), None)
    ]
    if fields.get("LastModifiedDate"):
        modified = vendor_time(fields["LastModifiedDate"], "Opportunity LastModifiedDate")
        if _moment(modified) > _moment(created):
            events.append((make_update(SOURCE, account, modified, state), None))
    return events


def _lead(fields: dict[str, str], account: str, mapping: ConnectorMapping) -> dict[str, Any]:
    lead_id = required_text(fields.get("Id"), "Lead Id")
    data = {
        "lead_id": lead_id,
        "rep_id": mapping.rep(fields.get("OwnerId")),
        "region": mapping.region(
            city=fields.get("City"), state=fields.get("State"), country=fields.get("Country")
        ),
        "source": mapping.source(fields.get("LeadSource") or None),
        "country": optional_text(fields.get("Country")),
        "city": optional_text(fields.get("City")),
    }
    return make_event(
        SOURCE,
        account,
        lead_id,
        "lead.created",
        vendor_time(fields.get("CreatedDate"), "Lead CreatedDate"),
        data,
    )


def map_notifications(org: str, notifications: list[Element], mapping: ConnectorMapping) -> Translation:
    """The events of an envelope's notifications; each one that cannot map is kept apart."""
    out = Translation()
    account = org[:15]
    for notification in notifications:
        sobject = notification.find(f"{{{OUTBOUND}}}sObject")
        kind, fields = "", {}
        try:
            if sobject is None:
                raise Unmappable("a Notification has no sObject", cause=UNKNOWN_OBJECT)
            kind = _local(sobject.get(XSI_TYPE, "")).rpartition(":")[2]
            fields = _fields(sobject)
            if kind == "Opportunity":
                for event, fallback in _opportunity(fields, account, mapping):
                    out.add(event, fallback)
            elif kind == "Lead":
                out.add(_lead(fields, account, mapping))
            else:
                raise Unmappable(
                    f"sObject type {kind or '(none)'!r}: only Opportunity and Lead map to events",
                    cause=UNKNOWN_OBJECT,
                )
        except Unmappable as exc:
            if exc.payload is None:
                exc.payload = _dead_letter_view(notification)
            out.unmappable.append(exc.about(kind, fields.get("Id")))
    return out


def _dead_letter_view(notification: Element) -> dict[str, Any]:
    sobject = notification.find(f"{{{OUTBOUND}}}sObject")
    return {
        "Notification": (notification.findtext(f"{{{OUTBOUND}}}Id") or "").strip(),
        "sObject": None if sobject is None else {"type": sobject.get(XSI_TYPE), **_fields(sobject)},
    }


class SalesforceConnector:
    """``POST /webhooks/salesforce/<secret>``, enabled by ``SALESPULSE_SALESFORCE_SECRET`` and
    ``SALESPULSE_SALESFORCE_ORG_ID``."""

    vendor = SOURCE
    modules: Mapping[str, str] = MODULES
    fallbacks: tuple[str, ...] = (CONTACT, DEAL)
    body_limit: int | None = BODY_LIMIT

    def __init__(self, org_id: str, secret: str, mapping: ConnectorMapping) -> None:
        self.org_id = org_id.strip()
        self.secret = secret
        self.mapping = mapping

    def missing(self) -> str | None:
        unset = [
            name
            for name, value in (
                ("SALESPULSE_SALESFORCE_SECRET", self.secret),
                ("SALESPULSE_SALESFORCE_ORG_ID", self.org_id),
            )
            if not value
        ]
        return " and ".join(unset) or None

    def refusal(self, request: WebhookRequest) -> str | None:
        # Before anything reads the body: a caller without the secret costs one comparison.
        if same_secret(request.tail, self.secret):
            return None
        return (
            "the URL's last segment is not SALESPULSE_SALESFORCE_SECRET: configure the Outbound "
            "Message's endpoint URL as https://<worker>/webhooks/salesforce/<the secret>"
        )

    async def translate(self, body: bytes) -> Translation:
        return await asyncio.to_thread(self._translate, body)

    def _translate(self, body: bytes) -> Translation:
        org, notifications = notifications_of(body)
        if not same_org(org, self.org_id):
            raise Refused("the envelope's OrganizationId is not SALESPULSE_SALESFORCE_ORG_ID")
        return map_notifications(org, notifications, self.mapping)

    def reply(self, translation: Translation) -> tuple[str, bytes]:
        return "text/xml", ACK
