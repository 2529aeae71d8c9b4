"""Typeform webhooks: a ``form_response`` with an NPS question is one survey answer.

Typeform signs the raw body: ``Typeform-Signature: sha256=`` and the base64 HMAC-SHA256 of
the body keyed with the webhook's secret. The score is the answer to the question named by
``SALESPULSE_TYPEFORM_SCORE_FIELD`` (its field id or ref), the customer is a hidden field,
and a form listed under ``teams`` in the mapping file is an employee survey (eNPS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from salespulse.streams.endpoints.connectors.base import (
    UNKNOWN_OBJECT,
    Translation,
    Unmappable,
    WebhookRequest,
    json_ack,
    load_json,
    make_event,
    optional_text,
    required_text,
    same_secret,
    vendor_time,
)
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping

SOURCE = "typeform"
HEADER = "Typeform-Signature"
MODULE = "form_response"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _answer(response: dict[str, Any], field: str) -> dict[str, Any] | None:
    """The answer to the question whose id or ref is ``field``."""
    refs = {
        f.get("ref"): f.get("id")
        for f in (response.get("definition") or {}).get("fields") or []
        if isinstance(f, dict)
    }
    wanted = {field, refs.get(field)}
    for answer in response.get("answers") or []:
        question = answer.get("field") if isinstance(answer, dict) else None
        if isinstance(question, dict) and (question.get("id") in wanted or question.get("ref") == field):
            return dict(answer)
    return None


class TypeformConnector:
    """``POST /webhooks/typeform``, enabled by ``SALESPULSE_TYPEFORM_SECRET`` and ``_SCORE_FIELD``."""

    vendor = SOURCE
    modules: Mapping[str, str] = {"survey.answered": MODULE}
    fallbacks: tuple[str, ...] = ()
    body_limit: int | None = None

    def __init__(
        self,
        secret: str,
        score_field: str,
        customer_field: str,
        comment_field: str,
        mapping: ConnectorMapping,
    ) -> None:
        self.secret = secret
        self.score_field = score_field
        self.customer_field = customer_field
        self.comment_field = comment_field
        self.mapping = mapping

    def missing(self) -> str | None:
        unset = [
            name
            for name, value in (
                ("SALESPULSE_TYPEFORM_SECRET", self.secret),
                ("SALESPULSE_TYPEFORM_SCORE_FIELD", self.score_field),
            )
            if not value
        ]
        return " and ".join(unset) or None

    def refusal(self, request: WebhookRequest) -> str | None:
        given = request.headers.get(HEADER, "")
        if same_secret(given.strip(), signature(self.secret, request.body)):
            return None
        return f"{HEADER} does not match the body signed with the webhook secret"

    def map_payload(self, payload: object) -> Translation:
        """The events of one Typeform webhook body."""
        if not isinstance(payload, dict) or not isinstance(payload.get("form_response"), dict):
            raise Unmappable("not a Typeform webhook: no form_response object", cause=UNKNOWN_OBJECT)
        if payload.get("event_type") != "form_response":
            raise Unmappable(
                f"event_type {payload.get('event_type')!r} is not form_response", cause=UNKNOWN_OBJECT
            )
        response = payload["form_response"]
        try:
            return self._answer(response)
        except Unmappable as exc:
            raise exc.about(MODULE, response.get("token")) from None

    def _answer(self, response: dict[str, Any]) -> Translation:
        token = required_text(response.get("token"), "form_response.token")
        form = required_text(response.get("form_id"), "form_response.form_id")
        answer = _answer(response, self.score_field)
        if answer is None:
            raise Unmappable(
                f"no answer to the score question {self.score_field!r} (SALESPULSE_TYPEFORM_SCORE_FIELD)"
            )
        hidden = response.get("hidden") or {}
        if not isinstance(hidden, dict):
            raise Unmappable("form_response.hidden is not an object")
        comment = _answer(response, self.comment_field) if self.comment_field else None
        data: dict[str, Any] = {
            "score": answer.get("number"),
            "comment": optional_text(comment.get("text")) if comment else None,
            "response_id": token,
        }
        team = self.mapping.team(form)
        if team is not None:
            data.update(survey="enps", team=team)
        else:
            customer = hidden.get(self.customer_field)
            data.update(
                survey="nps",
                customer_id=required_text(
                    customer, f"form_response.hidden.{self.customer_field} (the customer)"
                ),
                region=self.mapping.region(
                    city=hidden.get("city"), state=hidden.get("state"), country=hidden.get("country")
                ),
                product=self.mapping.product,
            )
        when = vendor_time(response.get("submitted_at"), "form_response.submitted_at")
        return Translation(events=[make_event(SOURCE, form, token, "survey.answered", when, data)])

    async def translate(self, body: bytes) -> Translation:
        return self.map_payload(load_json(body))

    def reply(self, translation: Translation) -> tuple[str, bytes]:
        return json_ack(translation)
