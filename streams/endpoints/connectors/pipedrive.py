"""Pipedrive webhooks (v2): deals created, changed, won and lost, and leads created.

Pipedrive signs nothing; its webhooks carry the HTTP Basic user and password set on the
webhook. A v2 body is ``{"data": ..., "previous": ..., "meta": {"action", "entity", ...}}``,
where ``data`` is the deal as it is now and ``previous`` holds the old values of the fields
that changed. A deal is won or lost when a ``change`` sets ``data.status`` to ``won`` or
``lost`` and ``previous`` holds the old ``status``: a later edit of a won deal (its title, a
stage) does not count the win again, and a redelivery carries the same derived event id. A
change of an open deal's stage, value, currency, expected close date, probability or owner
is an ``opportunity.updated`` with the deal's whole state; stages are ids, named by the
mapping file. A deal's kind is in a field of the team's own (``kind_fields.pipedrive`` in
the mapping file); v2 sends custom fields under ``data.custom_fields``, an option field as
``{"id": <option id>}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from salespulse.streams.endpoints.access import basic_credentials
from salespulse.streams.endpoints.connectors.base import (
    CONTACT,
    DEAL,
    UNKNOWN_OBJECT,
    Translation,
    Unmappable,
    WebhookRequest,
    close_date,
    customer_of,
    json_ack,
    load_json,
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

SOURCE = "pipedrive"
#: The Pipedrive object each event comes from.
MODULES = {
    "lead.created": "lead",
    "opportunity.created": "deal",
    "opportunity.updated": "deal",
    "deal.won": "deal",
    "deal.lost": "deal",
}
#: The deal fields an opportunity's state is read from: a change of any is a new version.
STATE_FIELDS = frozenset({"owner_id", "value", "currency", "stage_id", "probability", "expected_close_date"})


def field_value(deal: dict[str, Any], name: str) -> str | None:
    """A deal field as text: a custom field (v2 ``custom_fields``, or top level as in v1) or a
    standard one; an option, user or person field by its id, any other field by its value."""
    if not name:
        return None
    custom = deal.get("custom_fields")
    value = custom.get(name) if isinstance(custom, dict) and name in custom else deal.get(name)
    if isinstance(value, dict):
        value = value.get("id", value.get("value"))
    return optional_text(value)


def _state(deal: dict[str, Any], deal_id: str, mapping: ConnectorMapping) -> dict[str, Any]:
    """The deal as an opportunity's whole state (a deal with no value is worth 0 so far)."""
    return {
        "opportunity_id": deal_id,
        "rep_id": mapping.rep(deal.get("owner_id")),
        "region": mapping.region(),
        "amount": 0.0 if deal.get("value") is None else money(deal.get("value"), "data.value"),
        "currency": optional_text(deal.get("currency")) or mapping.currency_of(SOURCE),
        "stage": mapping.stage(SOURCE, deal.get("stage_id")),
        "probability": percent(deal.get("probability"), "data.probability"),
        "expected_close": close_date(deal.get("expected_close_date"), "data.expected_close_date"),
    }


def _deal(
    action: str, payload: dict[str, Any], account: str, mapping: ConnectorMapping
) -> tuple[dict[str, Any] | None, str | None]:
    """The deal's event (None for a change that counts nothing), and the customer fallback a
    win took. The payload holds no person's organisation, but Pipedrive fills a deal's from
    its person's when the deal is linked: the chain is the organisation, the person, the deal."""
    deal = payload.get("data")
    if not isinstance(deal, dict):
        raise Unmappable("data is not a deal object")
    deal_id = required_text(deal.get("id"), "data.id")
    if action == "create":
        when = vendor_time(deal.get("add_time"), "data.add_time")
        state = _state(deal, deal_id, mapping)
        return make_event(SOURCE, account, deal_id, "opportunity.created", when, state), None
    previous = payload.get("previous")
    status = deal.get("status")
    if action != "change" or not isinstance(previous, dict):
        return None, None
    if status == "open" and "status" not in previous and STATE_FIELDS & previous.keys():
        when = vendor_time(deal.get("update_time"), "data.update_time")
        return make_update(SOURCE, account, when, _state(deal, deal_id, mapping)), None
    if status not in {"won", "lost"} or "status" not in previous or previous["status"] == status:
        return None, None  # an edit of a deal already closed: the close was counted when it happened
    rep = mapping.rep(deal.get("owner_id"))
    region = mapping.region()
    if status == "won":
        customer, fallback = customer_of(
            deal_id, field_value(deal, mapping.customer_field(SOURCE)), None, field_value(deal, "person_id")
        )
        data = {
            "deal_id": deal_id,
            "customer_id": customer,
            "rep_id": rep,
            "region": region,
            "product": mapping.product,
            "kind": mapping.kind(field_value(deal, mapping.kind_field(SOURCE))),
            "amount": money(deal.get("value"), "data.value (a won deal's amount)"),
            "currency": optional_text(deal.get("currency")) or mapping.currency_of(SOURCE),
            "opportunity_id": deal_id,
        }
        when = vendor_time(deal.get("won_time"), "data.won_time")
        return make_event(SOURCE, account, deal_id, "deal.won", when, data), fallback
    data = {
        "deal_id": deal_id,
        "rep_id": rep,
        "region": region,
        "reason": optional_text(deal.get("lost_reason")),
        "opportunity_id": deal_id,
    }
    when = vendor_time(deal.get("lost_time"), "data.lost_time")
    return make_event(SOURCE, account, deal_id, "deal.lost", when, data), None


def _lead(payload: dict[str, Any], account: str, mapping: ConnectorMapping) -> dict[str, Any]:
    lead = payload.get("data")
    if not isinstance(lead, dict):
        raise Unmappable("data is not a lead object")
    lead_id = required_text(lead.get("id"), "data.id")
    data = {
        "lead_id": lead_id,
        "rep_id": mapping.rep(lead.get("owner_id")),
        "region": mapping.region(),
        "source": mapping.source(lead.get("source_name")),
    }
    return make_event(
        SOURCE, account, lead_id, "lead.created", vendor_time(lead.get("add_time"), "data.add_time"), data
    )


def map_payload(payload: object, mapping: ConnectorMapping) -> Translation:
    """The events of one Pipedrive v2 webhook body."""
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
        raise Unmappable("not a Pipedrive webhook: no meta object", cause=UNKNOWN_OBJECT)
    meta = payload["meta"]
    action, entity = meta.get("action"), meta.get("entity")
    try:
        if str(meta.get("version", "")) != "2.0":
            raise Unmappable(
                f"webhooks v{meta.get('version') or meta.get('v') or '?'}: only v2.0 is supported",
                cause=UNKNOWN_OBJECT,
            )
        account = optional_text(meta.get("company_id")) or ""
        fallback = None
        if entity == "deal":
            event, fallback = _deal(str(action), payload, account, mapping)
        elif entity == "lead" and action == "create":
            event = _lead(payload, account, mapping)
        elif entity in {"deal", "lead", "person", "organization", "activity", "note", "product", "user"}:
            event = None  # a known object whose change SalesPulse does not count
        else:
            raise Unmappable(
                f"meta.entity {entity!r} is not a Pipedrive object SalesPulse knows", cause=UNKNOWN_OBJECT
            )
    except Unmappable as exc:
        raise exc.about(entity, meta.get("entity_id")) from None
    out = Translation()
    if event is None:
        out.ignored = 1
    else:
        out.add(event, fallback)
    return out


class PipedriveConnector:
    """``POST /webhooks/pipedrive``, enabled by ``SALESPULSE_PIPEDRIVE_USER`` and ``_PASSWORD``."""

    vendor = SOURCE
    modules: Mapping[str, str] = MODULES
    fallbacks: tuple[str, ...] = (CONTACT, DEAL)
    body_limit: int | None = None

    def __init__(self, user: str, password: str, mapping: ConnectorMapping) -> None:
        self.user = user
        self.password = password
        self.mapping = mapping

    def missing(self) -> str | None:
        if self.user and self.password:
            return None
        return "SALESPULSE_PIPEDRIVE_USER and SALESPULSE_PIPEDRIVE_PASSWORD"

    def refusal(self, request: WebhookRequest) -> str | None:
        given = basic_credentials(request.headers.get("Authorization", ""))
        user, password = given or (b"", b"")
        # Both compared, always, so the time taken says nothing about which one was wrong.
        user_ok = same_secret(user, self.user)
        password_ok = same_secret(password, self.password)
        if given is not None and user_ok and password_ok:
            return None
        return "HTTP Basic credentials do not match the ones set on the Pipedrive webhook"

    async def translate(self, body: bytes) -> Translation:
        return map_payload(load_json(body), self.mapping)

    def reply(self, translation: Translation) -> tuple[str, bytes]:
        return json_ack(translation)
