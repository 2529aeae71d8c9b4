"""Vendor webhook payloads as each vendor documents them, with our test ids and times.

Written from the vendors' documentation of their webhook formats (HubSpot webhooks API v3,
Salesforce Outbound Messages, Pipedrive webhooks v2, Delighted webhooks, Typeform's
form_response example), not copied from captured traffic.
"""

from __future__ import annotations

from typing import Any

import orjson

# 2026-11-26T10:00:00Z and later, in the windows of the tests' fixed clock.
T0_MS = 1795687200000
T0_S = T0_MS // 1000
PORTAL = 62515
SF_ORG = "00D5g000004Xyz1EAC"  # an 18-character org id
PD_COMPANY = "6083095"


def hubspot_event(
    subscription: str, object_id: int, event_id: int, at_ms: int, **extra: Any
) -> dict[str, Any]:
    """One item of a HubSpot delivery (webhooks API v3 'Webhook payloads')."""
    return {
        "eventId": event_id,
        "subscriptionId": 2235,
        "portalId": PORTAL,
        "appId": 1160452,
        "occurredAt": at_ms,
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM",
        "changeFlag": "NEW" if subscription.endswith("creation") else None,
        **extra,
    }


def salesforce_envelope(*sobjects: str, org: str = SF_ORG) -> bytes:
    """An Outbound Message as Salesforce sends it (one Notification per sObject)."""
    notifications = "".join(
        f"<Notification><Id>04l5g00000{i:08d}</Id>{sobject}</Notification>"
        for i, sobject in enumerate(sobjects)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId>"
        "<ActionId>04k5g000000AbCdAAK</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/60.0/00D5g000004Xyz1</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/60.0/00D5g000004Xyz1</PartnerUrl>"
        f"{notifications}"
        "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def sf_object(kind: str, **fields: str) -> str:
    inner = "".join(f"<sf:{k}>{v}</sf:{k}>" for k, v in fields.items())
    return (
        f'<sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{inner}</sObject>'
    )


SF_WON = sf_object(
    "Opportunity",
    Id="0065g00000AbCdEAAV",
    AccountId="0015g00000XyZ12AAB",
    Amount="48000.0",
    CloseDate="2026-11-26",
    CreatedDate="2026-11-20T09:00:00.000Z",
    CurrencyIsoCode="EUR",
    IsClosed="true",
    IsWon="true",
    LastModifiedDate="2026-11-26T10:30:00.000Z",
    LeadSource="Partner Referral",
    OwnerId="0055g00000Rep07AAA",
    StageName="Closed Won",
    Type="New Customer",
)
SF_LOST = sf_object(
    "Opportunity",
    Id="0065g00000LostXAAV",
    AccountId="0015g00000XyZ13AAB",
    CreatedDate="2026-11-19T09:00:00.000Z",
    IsClosed="true",
    IsWon="false",
    LastModifiedDate="2026-11-26T10:40:00.000Z",
    OwnerId="0055g00000Rep07AAA",
    StageName="Closed Lost",
)
SF_OPEN = sf_object(
    "Opportunity",
    Id="0065g00000OpenXAAV",
    Amount="12000.0",
    CreatedDate="2026-11-26T09:15:00.000Z",
    IsClosed="false",
    IsWon="false",
    LastModifiedDate="2026-11-26T09:15:00.000Z",
    OwnerId="0055g00000Rep07AAA",
    StageName="Prospecting",
)
#: An open opportunity as an Outbound Message sends it after an edit, before the changes a
#: test applies (``sf_version``): the fields the docs ask for, forecast ones included.
SF_PIPELINE = {
    "Id": "0065g00000PipeXAAV",
    "AccountId": "0015g00000XyZ14AAB",
    "Amount": "20000.0",
    "CloseDate": "2026-12-10",
    "CreatedDate": "2026-11-20T09:00:00.000Z",
    "CurrencyIsoCode": "EUR",
    "ForecastCategoryName": "Pipeline",
    "IsClosed": "false",
    "IsWon": "false",
    "LastModifiedDate": "2026-11-20T09:00:00.000Z",
    "OwnerId": "0055g00000Rep07AAA",
    "Probability": "20",
    "StageName": "Qualification",
    "Type": "New Customer",
}


SF_EDITED = "2026-11-26T10:05:00.000Z"


def sf_version(**fields: str) -> str:
    """The pipeline opportunity with ``fields`` as they are after an edit."""
    return sf_object("Opportunity", **{**SF_PIPELINE, **fields})


SF_LEAD = sf_object(
    "Lead",
    Id="00Q5g00000LeadAAAA",
    City="Tehran",
    Country="IR",
    CreatedDate="2026-11-26T08:00:00.000Z",
    LeadSource="Web",
    OwnerId="0055g00000Rep07AAA",
)


def pipedrive(action: str, entity: str, data: dict[str, Any], previous: dict[str, Any] | None) -> bytes:
    """A Pipedrive webhooks v2 body."""
    return orjson.dumps(
        {
            "data": data,
            "previous": previous,
            "meta": {
                "action": action,
                "company_id": PD_COMPANY,
                "correlation_id": "7f0e1b9c-2b4e-4c1a-9d0e-0a1b2c3d4e5f",
                "entity_id": str(data["id"]),
                "entity": entity,
                "id": "5b0a0b8e-9c1d-4f7a-8e2b-1c3d5e7f9a0b",
                "is_bulk_edit": False,
                "timestamp": "2026-11-26T10:50:00.000Z",
                "type": "general",
                "user_id": "12941358",
                "version": "2.0",
                "webhook_id": "1828483",
                "webhook_owner_id": "16219013",
                "change_source": "app",
                "permitted_user_ids": ["12941358"],
                "attempt": 1,
                "host": "acme.pipedrive.com",
            },
        }
    )


PD_DEAL = {
    "id": 4711,
    "title": "Acme renewal",
    "owner_id": 12597982,
    "creator_user_id": 12597982,
    "value": 9500,
    "currency": "EUR",
    "add_time": "2026-11-26T09:00:00Z",
    "update_time": "2026-11-26T09:00:00Z",
    "stage_change_time": None,
    "status": "open",
    "probability": None,
    "lost_reason": None,
    "visible_to": 3,
    "close_time": None,
    "pipeline_id": 1,
    "won_time": None,
    "lost_time": None,
    "expected_close_date": "2026-12-15",
    "person_id": 176578,
    "org_id": 5063,
    "stage_id": 1,
    "label_ids": [],
    "is_archived": False,
    "archive_time": None,
    "custom_fields": {},
}
#: An open deal further down the pipeline (its stage ids are named in the tests' mapping file).
PD_PIPELINE = {
    **PD_DEAL,
    "id": 4720,
    "value": 20000,
    "stage_id": 1,
    "probability": 20,
    "expected_close_date": "2026-12-10",
}
PD_WON = {
    **PD_DEAL,
    "status": "won",
    "won_time": "2026-11-26T10:45:00Z",
    "close_time": "2026-11-26T10:45:00Z",
}
PD_LEAD = {
    "id": "adf21080-0e10-11eb-879b-05d71fb426ec",
    "title": "Acme lead",
    "owner_id": 12597982,
    "creator_id": 12597982,
    "label_ids": [],
    "person_id": 176578,
    "organization_id": None,
    "source_name": "Web forms",
    "origin": "WebForms",
    "channel": None,
    "is_archived": False,
    "was_seen": False,
    "value": {"amount": 500, "currency": "EUR"},
    "expected_close_date": None,
    "add_time": "2026-11-26T08:30:00.000Z",
    "update_time": "2026-11-26T08:30:00.000Z",
    "visible_to": "3",
}


def delighted(event_type: str, score: int, comment: str | None, updated_at: int) -> bytes:
    """A Delighted webhook body (``survey_response.created`` / ``.updated``)."""
    return orjson.dumps(
        {
            "event_type": event_type,
            "event_id": f"{event_type}-5435-{updated_at}",
            "event_data": {
                "id": "5435",
                "person": {
                    "id": "42",
                    "email": "jony@example.com",
                    "name": "Jony Appleseed",
                    "created_at": T0_S - 86400,
                    "last_sent_at": T0_S - 3600,
                },
                "survey_type": "nps",
                "score": score,
                "comment": comment,
                "permalink": "https://app.delighted.com/r/0123456789abcdef",
                "created_at": T0_S,
                "updated_at": updated_at,
                "person_properties": {"Delighted Source": "Email", "customer_id": "C-77", "Country": "IR"},
                "notes": [],
                "tags": [],
                "additional_answers": [],
            },
        }
    )


def typeform(token: str, score: int, customer: str, form_id: str = "lT4Z3j") -> bytes:
    """A Typeform ``form_response`` with an NPS question (ref ``nps``) and a comment (ref ``why``)."""
    return orjson.dumps(
        {
            "event_id": f"01J{token.upper()}",
            "event_type": "form_response",
            "form_response": {
                "form_id": form_id,
                "token": token,
                "landed_at": "2026-11-26T10:58:00Z",
                "submitted_at": "2026-11-26T11:00:00Z",
                "hidden": {"customer_id": customer, "country": "IR"},
                "definition": {
                    "id": form_id,
                    "title": "How likely are you to recommend us?",
                    "fields": [
                        {
                            "id": "NPSq1xYz",
                            "title": "How likely...",
                            "type": "nps",
                            "ref": "nps",
                            "properties": {},
                        },
                        {
                            "id": "WhyQ2abc",
                            "title": "Why?",
                            "type": "long_text",
                            "ref": "why",
                            "properties": {},
                        },
                    ],
                },
                "answers": [
                    {
                        "type": "number",
                        "number": score,
                        "field": {"id": "NPSq1xYz", "type": "nps", "ref": "nps"},
                    },
                    {
                        "type": "text",
                        "text": "Support <b>was</b> slow",
                        "field": {"id": "WhyQ2abc", "type": "long_text"},
                    },
                ],
            },
        }
    )
