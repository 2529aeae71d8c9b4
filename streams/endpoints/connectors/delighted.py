"""Delighted webhooks: NPS answers (``survey_response.created`` and ``.updated``).

Delighted signs the raw body: ``X-Delighted-Webhook-Signature: sha256=`` and the hex
HMAC-SHA256 of the body keyed with the account's API key. Delighted sends the score first
and the comment in an update, so every update is its own event (its id is derived from the
response and its ``updated_at``) carrying the response's id as ``response_id``; the engine
lets a later answer to the same response replace the earlier one in the customer's profile.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from salespulse.streams.endpoints.connectors.base import (
    UNKNOWN_OBJECT,
    Translation,
    Unmappable,
    WebhookRequest,
    from_epoch,
    json_ack,
    load_json,
    make_event,
    optional_text,
    required_text,
    same_secret,
)
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping

SOURCE = "delighted"
HEADER = "X-Delighted-Webhook-Signature"
EVENTS = frozenset({"survey_response.created", "survey_response.updated"})
MODULE = "survey_response"


def signature(api_key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(api_key.encode(), body, hashlib.sha256).hexdigest()


def _place(properties: dict[str, Any], mapping: ConnectorMapping) -> str:
    # Person properties are free-form; match the usual names whatever their case.
    folded = {str(k).casefold(): v for k, v in properties.items()}
    return mapping.region(city=folded.get("city"), state=folded.get("state"), country=folded.get("country"))


def map_payload(payload: object, mapping: ConnectorMapping) -> Translation:
    """The events of one Delighted webhook body."""
    if not isinstance(payload, dict) or not isinstance(payload.get("event_data"), dict):
        raise Unmappable("not a Delighted webhook: no event_data object", cause=UNKNOWN_OBJECT)
    if payload.get("event_type") not in EVENTS:
        if str(payload.get("event_type", "")).startswith(("survey_response.", "unsubscribe.")):
            return Translation(ignored=1)
        raise Unmappable(
            f"event_type {payload.get('event_type')!r} is not a Delighted event SalesPulse knows",
            cause=UNKNOWN_OBJECT,
        )
    response = payload["event_data"]
    if response.get("survey_type", "nps") != "nps":
        return Translation(ignored=1)  # CSAT, CES, ...: not a 0-10 NPS answer
    try:
        return _answer(response, mapping)
    except Unmappable as exc:
        raise exc.about(MODULE, response.get("id")) from None


def _answer(response: dict[str, Any], mapping: ConnectorMapping) -> Translation:
    response_id = required_text(response.get("id"), "event_data.id")
    updated = from_epoch(response.get("updated_at"), millis=False, what="event_data.updated_at")
    person = response.get("person")
    properties = response.get("person_properties") or {}
    if not isinstance(properties, dict):
        raise Unmappable("event_data.person_properties is not an object")
    person_id = person.get("id") if isinstance(person, dict) else person
    customer = optional_text(properties.get(mapping.customer_field(SOURCE))) or required_text(
        person_id, "event_data.person.id (the customer)"
    )
    data = {
        "survey": "nps",
        "score": response.get("score"),
        "customer_id": customer,
        "region": _place(properties, mapping),
        "product": mapping.product,
        "comment": optional_text(response.get("comment")),
        "response_id": response_id,
    }
    return Translation(
        events=[make_event(SOURCE, "", f"{response_id}@{updated}", "survey.answered", updated, data)]
    )


class DelightedConnector:
    """``POST /webhooks/delighted``, enabled by ``SALESPULSE_DELIGHTED_API_KEY``."""

    vendor = SOURCE
    modules: Mapping[str, str] = {"survey.answered": MODULE}
    fallbacks: tuple[str, ...] = ()
    body_limit: int | None = None

    def __init__(self, api_key: str, mapping: ConnectorMapping) -> None:
        self.api_key = api_key
        self.mapping = mapping

    def missing(self) -> str | None:
        return None if self.api_key else "SALESPULSE_DELIGHTED_API_KEY"

    def refusal(self, request: WebhookRequest) -> str | None:
        given = request.headers.get(HEADER, "")
        if same_secret(given.strip(), signature(self.api_key, request.body)):
            return None
        return f"{HEADER} does not match the body signed with the API key"

    async def translate(self, body: bytes) -> Translation:
        return map_payload(load_json(body), self.mapping)

    def reply(self, translation: Translation) -> tuple[str, bytes]:
        return json_ack(translation)
