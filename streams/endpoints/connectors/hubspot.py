"""HubSpot webhooks: contacts created (leads), deals created, changed, and moved to a closing stage.

A delivery is a JSON array of up to 100 events, signed with ``X-HubSpot-Signature-v3``:
base64 HMAC-SHA256, keyed with the app's client secret, of method + URL + body +
``X-HubSpot-Request-Timestamp`` (epoch milliseconds; older than 5 minutes is refused, so a
captured request cannot be replayed later). Both the classic subscription types
(``contact.creation``, ``deal.creation``, ``deal.propertyChange``) and the generic
``object.*`` ones (``objectTypeId`` ``0-1`` contacts, ``0-3`` deals) are understood. The
webhook carries no amount or owner: those are read from the CRM API (hubspot_api.py). A
change of an open deal's stage, amount, close date, forecast category, probability, owner or
currency is an ``opportunity.updated`` with the deal's whole state as read then: one per
deal and delivery, at the newest change's ``occurredAt``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salespulse.streams.endpoints.connectors.base import (
    FALLBACKS,
    UNKNOWN_OBJECT,
    Translation,
    Unmappable,
    WebhookRequest,
    close_date,
    customer_of,
    from_epoch,
    json_ack,
    load_json,
    make_event,
    make_update,
    money,
    optional_text,
    percent,
    required_text,
    same_secret,
)
from salespulse.streams.endpoints.connectors.hubspot_api import HubSpotApi
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping

SOURCE = "hubspot"
SIGNATURE = "X-HubSpot-Signature-v3"
TIMESTAMP = "X-HubSpot-Request-Timestamp"
MAX_AGE_MS = 5 * 60 * 1000
DEAL_PROPERTIES = [
    "amount",
    "deal_currency_code",
    "dealstage",
    "pipeline",
    "hubspot_owner_id",
    "dealtype",
    "closedate",
    "closed_lost_reason",
    "hs_manual_forecast_category",
    "hs_forecast_category",
    "hs_deal_stage_probability",
]
#: The deal properties an opportunity's state is read from (``dealstage`` may also close it).
STATE_PROPERTIES = frozenset(
    {
        "dealstage",
        "amount",
        "deal_currency_code",
        "closedate",
        "hubspot_owner_id",
        "hs_manual_forecast_category",
        "hs_forecast_category",
        "hs_deal_stage_probability",
    }
)
CONTACT_PROPERTIES = ["hubspot_owner_id", "country", "state", "city", "hs_analytics_source"]
PLACE_PROPERTIES = ["country", "state", "city"]
#: HubSpot's own objects (generic webhooks name them by type id): contacts and deals map.
OBJECT_TYPES = {"0-1": "contact", "0-3": "deal"}
KNOWN_OBJECTS = {"contact", "deal"}
#: The HubSpot object each event comes from.
MODULES = {
    "lead.created": "contact",
    "opportunity.created": "deal",
    "opportunity.updated": "deal",
    "deal.won": "deal",
    "deal.lost": "deal",
}
#: Characters HubSpot decodes in the URI before signing it (its v3 signature docs).
_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    for encoded, char in _DECODED.items():
        uri = uri.replace(encoded, char).replace(encoded.lower(), char)
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class Change:
    """One webhook event that may be a fact: what happened to which object, when, in which portal."""

    what: str  # "lead", "opportunity", "stage", "update", "won" or "lost"
    object_id: str
    occurred_at: str
    portal: str
    stage: str
    raw: dict[str, Any]


def classify(event: object) -> Change | None:
    """The fact an event may carry; None for a known object's change that carries none."""
    if not isinstance(event, dict):
        raise Unmappable("a delivery item is not an object", event, cause=UNKNOWN_OBJECT)
    subscription = str(event.get("subscriptionType", ""))
    obj, _, action = subscription.partition(".")
    if obj == "object":
        obj = OBJECT_TYPES.get(str(event.get("objectTypeId")), f"object type {event.get('objectTypeId')!r}")
    if obj not in KNOWN_OBJECTS:
        raise Unmappable(
            f"{subscription or 'no subscriptionType'}: {obj} does not map to an event",
            event,
            cause=UNKNOWN_OBJECT,
        ).about(obj, event.get("objectId"))
    changed = event.get("propertyName") if action == "propertyChange" and obj == "deal" else None
    if action == "creation":
        what = "lead" if obj == "contact" else "opportunity"
    elif changed == "dealstage":
        what = "stage"
    elif changed in STATE_PROPERTIES:
        what = "update"
    else:
        return None
    try:
        return Change(
            what=what,
            object_id=required_text(event.get("objectId"), "objectId"),
            occurred_at=from_epoch(event.get("occurredAt"), millis=True, what="occurredAt"),
            portal=required_text(event.get("portalId"), "portalId"),
            stage=(optional_text(event.get("propertyValue")) or "") if what == "stage" else "",
            raw=event,
        )
    except Unmappable as exc:
        raise Unmappable(exc.detail, event).about(obj, event.get("objectId")) from None


def latest_updates(changes: list[Change]) -> list[Change]:
    """The changes of a delivery with one update per deal, its newest: the state is read once,
    as it is now, for all of them. A deal the delivery also closes gets none."""
    closed = {c.object_id for c in changes if c.what in {"won", "lost"}}
    newest: dict[str, Change] = {}
    for change in changes:
        if change.what == "update" and change.object_id not in closed:
            held = newest.get(change.object_id)
            if held is None or change.occurred_at > held.occurred_at:
                newest[change.object_id] = change
    return [c for c in changes if c.what != "update" or newest.get(c.object_id) is c]


class HubSpotConnector:
    """``POST /webhooks/hubspot``, enabled by ``SALESPULSE_HUBSPOT_CLIENT_SECRET`` and ``_TOKEN``."""

    vendor = SOURCE
    modules: Mapping[str, str] = MODULES
    fallbacks: tuple[str, ...] = FALLBACKS
    body_limit: int | None = None

    def __init__(
        self, client_secret: str, token: str, public_url: str, api: HubSpotApi, mapping: ConnectorMapping
    ) -> None:
        self.client_secret = client_secret
        self.token = token
        self.public_url = public_url.rstrip("/")
        self.api = api
        self.mapping = mapping

    def missing(self) -> str | None:
        unset = [
            name
            for name, value in (
                ("SALESPULSE_HUBSPOT_CLIENT_SECRET", self.client_secret),
                ("SALESPULSE_HUBSPOT_TOKEN", self.token),
            )
            if not value
        ]
        return " and ".join(unset) or None

    def refusal(self, request: WebhookRequest) -> str | None:
        timestamp = request.headers.get(TIMESTAMP, "").strip()
        if not timestamp.isdigit():
            return f"{TIMESTAMP} is missing or not epoch milliseconds"
        if abs(time.time() * 1000 - int(timestamp)) > MAX_AGE_MS:
            return f"{TIMESTAMP} is more than 5 minutes away from now: a replayed or delayed request"
        expected = signature_v3(self.client_secret, request.method, request.url, request.body, timestamp)
        if same_secret(request.headers.get(SIGNATURE, "").strip(), expected):
            return None
        return f"{SIGNATURE} does not match: check SALESPULSE_HUBSPOT_CLIENT_SECRET and SALESPULSE_PUBLIC_URL"

    async def translate(self, body: bytes) -> Translation:
        delivery = load_json(body)
        if not isinstance(delivery, list):
            raise Unmappable("a HubSpot delivery is a JSON array of events")
        out = Translation()
        changes: list[Change] = []
        for event in delivery:
            try:
                change = classify(event)
            except Unmappable as exc:
                out.unmappable.append(exc)
                continue
            if change is None:
                out.ignored += 1
            elif change.what == "stage":
                known, outcome = await self.api.outcome(change.stage)
                if not known:
                    out.unmappable.append(
                        Unmappable(f"deal stage {change.stage!r} is in no deal pipeline", event).about(
                            "deal", change.object_id
                        )
                    )
                else:
                    what = outcome or "update"  # an open stage is one more version of the deal
                    changes.append(
                        Change(what, change.object_id, change.occurred_at, change.portal, "", event)
                    )
            else:
                changes.append(change)
        kept = latest_updates(changes)
        out.ignored += len(changes) - len(kept)
        out.extend(await self._map(kept))
        return out

    async def _stage(self, deal: dict[str, Any]) -> tuple[str | None, str | None]:
        """A deal's stage name (None in a closing stage, which is no stage to forecast from),
        and whether that stage closes it (``won``, ``lost``, or None)."""
        stage = optional_text(deal.get("dealstage"))
        if stage is None:
            return None, None
        _, outcome = await self.api.outcome(stage)
        name = None if outcome else self.mapping.stage(SOURCE, stage, self.api.label(stage))
        return name, outcome

    async def _map(self, changes: list[Change]) -> Translation:
        deal_ids = [c.object_id for c in changes if c.what != "lead"]
        won_ids = [c.object_id for c in changes if c.what == "won"]
        contacts = await self.api.read(
            "contacts", [c.object_id for c in changes if c.what == "lead"], CONTACT_PROPERTIES
        )
        named = self.mapping.customer_field(SOURCE)
        kind = self.mapping.kind_field(SOURCE)
        deals = await self.api.read("deals", deal_ids, [*DEAL_PROPERTIES, *(f for f in (named, kind) if f)])
        companies = await self.api.associated("deals", "companies", deal_ids)
        places = await self.api.read("companies", companies.values(), PLACE_PROPERTIES)
        # The customer chain past the deal's company: its contact's company, else its contact.
        without_company = [i for i in won_ids if i not in companies]
        deal_contacts = await self.api.associated("deals", "contacts", without_company)
        contact_companies = await self.api.associated("contacts", "companies", deal_contacts.values())
        out = Translation()
        for change in changes:
            try:
                if change.what == "lead":
                    out.add(self._lead(change, contacts))
                    continue
                deal = deals.get(change.object_id)
                if deal is None:
                    raise Unmappable(f"deal {change.object_id} is not in the CRM (deleted?)")
                company = companies.get(change.object_id)
                place = places.get(company or "", {})
                region = self.mapping.region(
                    city=place.get("city"), state=place.get("state"), country=place.get("country")
                )
                opens = change.what in {"opportunity", "update"}
                stage, outcome = await self._stage(deal) if opens else (None, None)
                if change.what == "update" and outcome is not None:
                    out.ignored += 1  # closed since: its close counts at its own stage change
                    continue
                contact = deal_contacts.get(change.object_id)
                organisation = deal.get(named) if named else company
                customer = customer_of(
                    change.object_id, organisation, contact_companies.get(contact or ""), contact
                )
                out.add(*self._deal(change, deal, region, stage, customer))
            except Unmappable as exc:
                exc.payload = change.raw
                out.unmappable.append(
                    exc.about("contact" if change.what == "lead" else "deal", change.object_id)
                )
        return out

    def _lead(self, change: Change, contacts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        contact = contacts.get(change.object_id)
        if contact is None:
            raise Unmappable(f"contact {change.object_id} is not in the CRM (deleted?)")
        data = {
            "lead_id": change.object_id,
            "rep_id": self.mapping.rep(contact.get("hubspot_owner_id")),
            "region": self.mapping.region(
                city=contact.get("city"), state=contact.get("state"), country=contact.get("country")
            ),
            "source": self.mapping.source(contact.get("hs_analytics_source")),
            "country": optional_text(contact.get("country")),
            "city": optional_text(contact.get("city")),
        }
        return make_event(SOURCE, change.portal, change.object_id, "lead.created", change.occurred_at, data)

    def _deal(
        self,
        change: Change,
        deal: dict[str, Any],
        region: str,
        stage: str | None,
        customer: tuple[str, str | None],
    ) -> tuple[dict[str, Any], str | None]:
        """The deal's event, and the customer fallback it took (only a win names a customer)."""
        deal_id = change.object_id
        rep = self.mapping.rep(deal.get("hubspot_owner_id"))
        currency = optional_text(deal.get("deal_currency_code")) or self.mapping.currency_of(SOURCE)
        if change.what in {"opportunity", "update"}:
            state = {
                "opportunity_id": deal_id,
                "rep_id": rep,
                "region": region,
                "amount": money(deal["amount"], "amount") if deal.get("amount") not in (None, "") else 0.0,
                "currency": currency,
                "stage": stage,
                "probability": percent(
                    deal.get("hs_deal_stage_probability"), "hs_deal_stage_probability", fraction=True
                ),
                "forecast_category": self.mapping.forecast_category(
                    deal.get("hs_manual_forecast_category") or deal.get("hs_forecast_category") or None
                ),
                "expected_close": close_date(deal.get("closedate"), "closedate"),
            }
            if change.what == "update":
                return make_update(SOURCE, change.portal, change.occurred_at, state, read_later=True), None
            event = make_event(
                SOURCE, change.portal, deal_id, "opportunity.created", change.occurred_at, state
            )
            return event, None
        if change.what == "lost":
            data: dict[str, Any] = {
                "deal_id": deal_id,
                "rep_id": rep,
                "region": region,
                "reason": optional_text(deal.get("closed_lost_reason")),
                "opportunity_id": deal_id,
            }
            return make_event(SOURCE, change.portal, deal_id, "deal.lost", change.occurred_at, data), None
        customer_id, fallback = customer
        data = {
            "deal_id": deal_id,
            "customer_id": customer_id,
            "rep_id": rep,
            "region": region,
            "product": self.mapping.product,
            "kind": self.mapping.kind(deal.get(self.mapping.kind_field(SOURCE))),
            "amount": money(deal.get("amount"), "amount (a won deal's amount)"),
            "currency": currency,
            "opportunity_id": deal_id,
        }
        return make_event(SOURCE, change.portal, deal_id, "deal.won", change.occurred_at, data), fallback

    def reply(self, translation: Translation) -> tuple[str, bytes]:
        return json_ack(translation)
