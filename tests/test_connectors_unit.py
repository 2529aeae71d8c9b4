"""Each vendor's documented payloads map to the right canonical events; signatures as published."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from typing import Any

import orjson
import pytest

from salespulse.schemas.codec import check_event
from salespulse.schemas.topics import route
from salespulse.streams.endpoints.connectors.base import (
    Refused,
    Unmappable,
    WebhookRequest,
    close_date,
    customer_of,
    load_json,
    money,
    percent,
)
from salespulse.streams.endpoints.connectors.delighted import DelightedConnector
from salespulse.streams.endpoints.connectors.delighted import map_payload as map_delighted
from salespulse.streams.endpoints.connectors.delighted import signature as delighted_signature
from salespulse.streams.endpoints.connectors.hubspot import Change, classify, latest_updates, signature_v3
from salespulse.streams.endpoints.connectors.hubspot_api import association_precedence, stage_outcome
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping
from salespulse.streams.endpoints.connectors.pipedrive import PipedriveConnector
from salespulse.streams.endpoints.connectors.pipedrive import map_payload as map_pipedrive
from salespulse.streams.endpoints.connectors.salesforce import (
    ACK,
    SalesforceConnector,
    map_notifications,
    notifications_of,
    same_org,
)
from salespulse.streams.endpoints.connectors.typeform import TypeformConnector
from salespulse.streams.endpoints.connectors.typeform import signature as typeform_signature
from salespulse.streams.settings import Settings, SettingsError
from tests import vendor_payloads as v

DEFAULTS = ConnectorMapping()
SF_SECRET = "3f9c2a7e1b6d4f08a5c3e9b7d1f2a6c4"


def test_hubspot_v3_signature_matches_the_published_example() -> None:
    got = signature_v3(
        "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
        "POST",
        "https://www.example.com/webhook_uri",
        b"{'example_field':'example_value'}",
        "15000000",
    )
    assert got == "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="


def test_typeform_signature_matches_the_published_example() -> None:
    assert (
        typeform_signature("my-webook-secret", b'{"foo":"bar"}')
        == "sha256=X2b3nUhiGjaWHxmPO/YQzUvHXBNac4gPjZ5/bjXrhQY="
    )


def test_hubspot_signs_the_uri_with_its_documented_characters_decoded() -> None:
    args = ("s", "POST")
    assert signature_v3(*args, "https://x.io/a%3Ab%2Fc", b"[]", "1") == signature_v3(
        *args, "https://x.io/a:b/c", b"[]", "1"
    )


def test_hubspot_events_are_classified_in_both_subscription_styles() -> None:
    classic = classify(
        v.hubspot_event("deal.propertyChange", 7, 1, v.T0_MS, propertyName="dealstage", propertyValue="s9")
    )
    generic = classify(
        v.hubspot_event(
            "object.propertyChange",
            7,
            1,
            v.T0_MS,
            objectTypeId="0-3",
            propertyName="dealstage",
            propertyValue="s9",
        )
    )
    assert classic is not None and generic is not None
    assert (classic.what, classic.stage, classic.occurred_at) == ("stage", "s9", "2026-11-26T10:00:00.000Z")
    assert (generic.what, generic.object_id, generic.portal) == ("stage", "7", str(v.PORTAL))
    lead = classify(v.hubspot_event("object.creation", 8, 2, v.T0_MS, objectTypeId="0-1"))
    assert lead is not None and lead.what == "lead"
    amount = classify(
        v.hubspot_event("deal.propertyChange", 7, 3, v.T0_MS, propertyName="amount", propertyValue="5")
    )
    assert amount is not None and amount.what == "update"
    assert (
        classify(
            v.hubspot_event("deal.propertyChange", 7, 3, v.T0_MS, propertyName="dealname", propertyValue="x")
        )
        is None
    )
    with pytest.raises(Unmappable, match="company"):
        classify(v.hubspot_event("company.creation", 9, 4, v.T0_MS))
    with pytest.raises(Unmappable, match="object type '0-5'"):
        classify(v.hubspot_event("object.creation", 9, 5, v.T0_MS, objectTypeId="0-5"))


def test_a_closed_stage_is_won_at_probability_one_and_lost_at_zero() -> None:
    assert stage_outcome({"isClosed": "true", "probability": "1.0"}) == "won"
    assert stage_outcome({"isClosed": "true", "probability": "0.0"}) == "lost"
    assert stage_outcome({"isClosed": "false", "probability": "0.6"}) is None


def test_salesforce_opportunities_and_leads_map_by_their_flags() -> None:
    org, notifications = notifications_of(v.salesforce_envelope(v.SF_WON, v.SF_LOST, v.SF_OPEN, v.SF_LEAD))
    assert org == v.SF_ORG
    out = map_notifications(org, notifications, DEFAULTS)
    assert not out.unmappable
    won, lost, opened, lead = (check_event(e) for e in out.events)
    assert (won["type"], won["occurred_at"]) == ("deal.won", "2026-11-26T10:30:00Z")
    assert won["data"] | {} == {
        "deal_id": "0065g00000AbCdEAAV",
        "customer_id": "0015g00000XyZ12AAB",
        "rep_id": "0055g00000Rep07AAA",
        "region": "unknown",
        "product": "unknown",
        "kind": "new",
        "amount": 48000.0,
        "currency": "EUR",
        "source": "partner",
        "opportunity_id": "0065g00000AbCdEAAV",
    }
    assert (lost["type"], lost["occurred_at"]) == ("deal.lost", "2026-11-26T10:40:00Z")
    assert (opened["type"], opened["data"]["amount"], opened["data"]["currency"]) == (
        "opportunity.created",
        12000.0,
        "USD",
    )
    assert opened["occurred_at"] == "2026-11-26T09:15:00Z"  # CreatedDate, not the time of receipt
    assert (lead["type"], lead["data"]["source"], lead["data"]["country"]) == ("lead.created", "web", "IR")


def test_salesforce_org_ids_match_in_either_length_and_nothing_else() -> None:
    assert same_org("00D5g000004Xyz1EAC", "00D5g000004Xyz1")
    assert same_org("00D5g000004Xyz1", "00D5g000004Xyz1EAC")
    assert not same_org("00D5g000004XYZ1EAC", "00D5g000004Xyz1EAC")  # the 15-character form is case-sensitive
    assert not same_org("", "00D5g000004Xyz1EAC")
    connector = SalesforceConnector("00D5g000004Xyz1", SF_SECRET, DEFAULTS)
    foreign = v.salesforce_envelope(v.SF_WON, org="00D000000000062EAA")
    assert connector.refusal(WebhookRequest("POST", "http://x/", {}, foreign, SF_SECRET)) is None
    with pytest.raises(Refused, match="OrganizationId"):
        asyncio.run(connector.translate(foreign))
    assert connector.reply(map_notifications(*notifications_of(foreign), DEFAULTS))[1] == ACK


def test_salesforce_refuses_a_missing_or_wrong_secret_before_reading_the_body() -> None:
    connector = SalesforceConnector(v.SF_ORG, SF_SECRET, DEFAULTS)
    not_xml = b"<<< not even XML"  # were it parsed, it would be a 400, not a 401
    for tail in ("", SF_SECRET[:-1], SF_SECRET + "x", SF_SECRET.upper()):
        refusal = connector.refusal(WebhookRequest("POST", "http://x/", {}, not_xml, tail))
        assert refusal is not None and "SALESPULSE_SALESFORCE_SECRET" in refusal
        assert tail not in refusal or not tail
    assert connector.refusal(WebhookRequest("POST", "http://x/", {}, not_xml, SF_SECRET)) is None
    assert SalesforceConnector(v.SF_ORG, "", DEFAULTS).missing() == "SALESPULSE_SALESFORCE_SECRET"
    assert connector.body_limit == 1024 * 1024


def test_a_salesforce_won_opportunity_without_an_amount_is_unmappable_and_the_rest_still_maps() -> None:
    no_amount = v.SF_WON.replace("<sf:Amount>48000.0</sf:Amount>", "")
    account = v.sf_object("Account", Id="0015g00000XyZ12AAB", Name="Acme")
    out = map_notifications(*notifications_of(v.salesforce_envelope(no_amount, account, v.SF_LEAD)), DEFAULTS)
    assert [e["type"] for e in out.events] == ["lead.created"]
    assert ["Amount" in u.detail for u in out.unmappable] == [True, False]
    assert "only Opportunity and Lead" in out.unmappable[1].detail


def test_a_vendor_amount_arrives_as_the_decimal_it_spells_in_the_currency_the_mapping_names() -> None:
    # 17 significant digits: a float would send 987654321012345.6 or ...5.7 as it happens.
    body = v.pipedrive("create", "deal", {**v.PD_DEAL, "value": 0, "currency": None}, None)
    body = body.replace(b'"value":0', b'"value":987654321012345.67')
    toman = ConnectorMapping(currency="EUR", currencies={"pipedrive": "IRT"})
    (opp,) = map_pipedrive(load_json(body), toman).events
    assert check_event(opp)["data"]["currency"] == "IRT"
    amount = opp["data"]["amount"]
    assert isinstance(amount, Decimal) and amount == Decimal("987654321012345.67")
    assert map_pipedrive(load_json(body), DEFAULTS).events[0]["data"]["currency"] == "USD"
    assert money("1500.00", "x") == Decimal("1500.00") and money(0.1, "x") == Decimal("0.1")
    for bad in ("-1", "NaN", "Infinity", "1e", True, [1]):
        with pytest.raises(Unmappable, match=r"not a non-negative amount|missing"):
            money(bad, "amount")


def test_pipedrive_deal_create_win_and_lead_map_and_an_edit_of_a_won_deal_is_ignored() -> None:
    created = map_pipedrive(orjson.loads(v.pipedrive("create", "deal", v.PD_DEAL, None)), DEFAULTS)
    (opp,) = created.events
    assert check_event(opp)["data"] == {
        "opportunity_id": "4711",
        "rep_id": "12597982",
        "region": "unknown",
        "amount": 9500.0,
        "currency": "EUR",
        "stage": "1",  # a stage id the mapping file does not name
        "expected_close": "2026-12-15",
    }
    assert opp["occurred_at"] == "2026-11-26T09:00:00Z"
    won = map_pipedrive(orjson.loads(v.pipedrive("change", "deal", v.PD_WON, {"status": "open"})), DEFAULTS)
    (deal,) = won.events
    assert check_event(deal)["type"] == "deal.won" and deal["data"]["customer_id"] == "5063"
    assert deal["occurred_at"] == "2026-11-26T10:45:00Z" and deal["data"]["opportunity_id"] == "4711"
    # An edit of a won deal is no win, and no version of an open opportunity.
    assert (
        map_pipedrive(orjson.loads(v.pipedrive("change", "deal", v.PD_WON, {"title": "x"})), DEFAULTS).ignored
        == 1
    )
    (lead,) = map_pipedrive(orjson.loads(v.pipedrive("create", "lead", v.PD_LEAD, None)), DEFAULTS).events
    assert check_event(lead)["data"]["lead_id"] == v.PD_LEAD["id"] and lead["data"]["source"] == "other"


def test_a_pipedrive_lost_deal_and_won_deals_whose_customer_is_the_person_or_the_deal_itself() -> None:
    lost = {**v.PD_DEAL, "status": "lost", "lost_time": "2026-11-26T10:46:00Z", "lost_reason": "Price"}
    (event,) = map_pipedrive(
        orjson.loads(v.pipedrive("change", "deal", lost, {"status": "open"})), DEFAULTS
    ).events
    assert check_event(event)["type"] == "deal.lost" and event["data"]["reason"] == "Price"
    for deal, customer, fallback in (
        ({**v.PD_WON, "org_id": None}, "176578", "contact"),
        ({**v.PD_WON, "org_id": None, "person_id": None}, "deal:4711", "deal"),
    ):
        out = map_pipedrive(orjson.loads(v.pipedrive("change", "deal", deal, {"status": "open"})), DEFAULTS)
        (won,) = out.events
        assert check_event(won)["data"]["customer_id"] == customer
        assert out.fallbacks == {won["event_id"]: fallback}


def test_pipedrive_basic_credentials_must_both_match() -> None:
    connector = PipedriveConnector("hook", "s3cret", DEFAULTS)

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    assert connector.refusal(WebhookRequest("POST", "u", basic("hook", "s3cret"), b"{}")) is None
    for headers in (basic("hook", "wrong"), basic("other", "s3cret"), {}, {"Authorization": "Bearer s3cret"}):
        assert connector.refusal(WebhookRequest("POST", "u", headers, b"{}")) is not None


def test_delighted_created_and_updated_answers_are_separate_events_of_one_response() -> None:
    first = map_delighted(
        orjson.loads(v.delighted("survey_response.created", 3, None, v.T0_S)), DEFAULTS
    ).events[0]
    later = v.delighted("survey_response.updated", 3, "Too slow", v.T0_S + 120)
    second = map_delighted(orjson.loads(later), DEFAULTS).events[0]
    assert check_event(first)["data"] == {
        "survey": "nps",
        "score": 3,
        "customer_id": "C-77",
        "region": "unknown",
        "product": "unknown",
        "response_id": "5435",
    }
    assert first["occurred_at"] == "2026-11-26T10:00:00Z" and second["occurred_at"] == "2026-11-26T10:02:00Z"
    assert check_event(second)["data"]["comment"] == "Too slow" and second["data"]["response_id"] == "5435"
    assert first["event_id"] != second["event_id"]
    again = map_delighted(orjson.loads(later), DEFAULTS).events[0]
    assert again["event_id"] == second["event_id"]


def test_delighted_signature_is_hex_hmac_of_the_raw_body_with_the_api_key() -> None:
    body = v.delighted("survey_response.created", 9, None, v.T0_S)
    connector = DelightedConnector("key-1", DEFAULTS)
    good = {"X-Delighted-Webhook-Signature": delighted_signature("key-1", body)}
    assert connector.refusal(WebhookRequest("POST", "u", good, body)) is None
    assert connector.refusal(WebhookRequest("POST", "u", good, body + b" ")) is not None


def test_typeform_score_customer_comment_and_an_enps_form() -> None:
    connector = TypeformConnector("sec", "nps", "customer_id", "why", DEFAULTS)
    (event,) = asyncio.run(connector.translate(v.typeform("tok1", 6, "C-9"))).events
    assert check_event(event)["data"] == {
        "score": 6,
        "comment": "Support <b>was</b> slow",
        "response_id": "tok1",
        "survey": "nps",
        "customer_id": "C-9",
        "region": "unknown",
        "product": "unknown",
    }
    assert event["occurred_at"] == "2026-11-26T11:00:00Z"
    by_id = TypeformConnector("sec", "NPSq1xYz", "customer_id", "", DEFAULTS)
    assert asyncio.run(by_id.translate(v.typeform("tok1", 6, "C-9"))).events[0]["data"]["score"] == 6
    teams = ConnectorMapping(teams={"emp01": "sales-emea"})
    staff = TypeformConnector("sec", "nps", "customer_id", "", teams)
    (enps,) = asyncio.run(staff.translate(v.typeform("tok2", 10, "ignored", form_id="emp01"))).events
    assert check_event(enps)["data"] | {} == {
        "score": 10,
        "response_id": "tok2",
        "survey": "enps",
        "team": "sales-emea",
    }
    with pytest.raises(Unmappable, match="SALESPULSE_TYPEFORM_SCORE_FIELD"):
        asyncio.run(
            TypeformConnector("sec", "missing", "customer_id", "", DEFAULTS).translate(
                v.typeform("t", 6, "C")
            )
        )


def test_a_deals_customer_is_its_organisation_else_its_contacts_else_the_contact_else_the_deal() -> None:
    assert customer_of("D-1", "ORG-1", "ORG-2", "C-1") == ("ORG-1", None)
    assert customer_of("D-1", "", "ORG-2", "C-1") == ("ORG-2", "contact_organisation")
    assert customer_of("D-1", None, None, "C-1") == ("C-1", "contact")
    assert customer_of("D-1", " ", "", None) == ("deal:D-1", "deal")
    assert customer_of("4711", 5063) == ("5063", None)  # vendor ids that are numbers


def test_hubspot_picks_the_primary_association_else_the_lowest_id_whatever_the_order() -> None:
    plain = [{"toObjectId": n, "associationTypes": [{"typeId": 3, "label": None}]} for n in (907, 88, 1200)]
    primary = {"toObjectId": 1500, "associationTypes": [{"typeId": 5, "label": "Primary"}]}
    for targets in (plain, plain[::-1], [plain[2], plain[0], plain[1]]):
        assert min(targets, key=association_precedence)["toObjectId"] == 88
        assert min([*targets, primary], key=association_precedence)["toObjectId"] == 1500
        assert min([primary, *targets], key=association_precedence)["toObjectId"] == 1500


def _later(body: bytes, old: str, new: str) -> bytes:
    assert old.encode() in body
    return body.replace(old.encode(), new.encode())


@pytest.mark.parametrize("vendor", ["salesforce", "pipedrive"])
def test_a_deal_won_again_63_days_later_names_the_same_deal_and_customer_so_one_partition(
    vendor: str,
) -> None:
    """The connector half of "a deal's outcome counts once for life": whatever the later copy's
    time and event id, it names the deal and the customer as the first did, so it meets the
    first on the same partition, where the worker remembers the outcome."""
    if vendor == "salesforce":
        first = v.salesforce_envelope(v.SF_WON)
        again = _later(first, "2026-11-26T10:30:00.000Z", "2027-01-28T09:12:00.000Z")
        events = [map_notifications(*notifications_of(body), DEFAULTS).events[0] for body in (first, again)]
    else:
        first = v.pipedrive("change", "deal", v.PD_WON, {"status": "open"})
        again = _later(first, "2026-11-26T10:45:00Z", "2027-01-28T09:12:00Z").replace(
            b'"previous":{"status":"open"}', b'"previous":{"status":"lost"}'
        )
        events = [map_pipedrive(orjson.loads(body), DEFAULTS).events[0] for body in (first, again)]
    won, won_again = (check_event(e) for e in events)
    assert won["type"] == won_again["type"] == "deal.won"
    assert won["occurred_at"] != won_again["occurred_at"]
    assert won_again["data"]["deal_id"] == won["data"]["deal_id"]
    assert won_again["data"]["customer_id"] == won["data"]["customer_id"]
    assert route(won_again) == route(won)  # crm.deals, keyed by the customer: the same partition


def test_a_delighted_answer_updated_63_days_later_names_the_same_response_and_customer() -> None:
    first = map_delighted(orjson.loads(v.delighted("survey_response.created", 9, None, v.T0_S)), DEFAULTS)
    later = v.delighted("survey_response.updated", 6, "Slower now", v.T0_S + 63 * 86400)
    again = map_delighted(orjson.loads(later), DEFAULTS)
    (a,), (b,) = first.events, again.events
    assert a["event_id"] != b["event_id"] and a["occurred_at"] != b["occurred_at"]
    assert (a["data"]["response_id"], a["data"]["customer_id"]) == (
        b["data"]["response_id"],
        b["data"]["customer_id"],
    )
    assert route(a) == route(b)


def test_pipedrive_reads_the_deal_kind_from_the_field_the_mapping_file_names() -> None:
    field = "3e9bb7da4983ebebda9e19851cc6828af134e3c8"
    won = {**v.PD_WON, "custom_fields": {field: {"id": 4581, "type": "enum"}, "other": None}}
    body = orjson.loads(v.pipedrive("change", "deal", won, {"status": "open"}))
    named = ConnectorMapping(kind_fields={"pipedrive": field}, kinds={"4581": "renewal", "4582": "upsell"})
    assert map_pipedrive(body, named).events[0]["data"]["kind"] == "renewal"
    assert map_pipedrive(body, DEFAULTS).events[0]["data"]["kind"] == "new"  # no field named: new
    text = {**won, "custom_fields": {field: {"value": "Cross-sell", "type": "varchar"}}}
    body = orjson.loads(v.pipedrive("change", "deal", text, {"status": "open"}))
    mapping = ConnectorMapping(kind_fields={"pipedrive": field}, kinds={"cross-sell": "cross_sell"})
    assert map_pipedrive(body, mapping).events[0]["data"]["kind"] == "cross_sell"


def test_an_unmappable_part_names_its_module_record_and_cause() -> None:
    account = v.sf_object("Account", Id="0015g00000XyZ12AAB", Name="Acme")
    no_amount = v.SF_WON.replace("<sf:Amount>48000.0</sf:Amount>", "")
    out = map_notifications(*notifications_of(v.salesforce_envelope(account, no_amount)), DEFAULTS)
    assert [(u.module, u.record, u.cause) for u in out.unmappable] == [
        ("Account", "0015g00000XyZ12AAB", "unknown_object"),
        ("Opportunity", "0065g00000AbCdEAAV", "unreadable"),
    ]
    with pytest.raises(Unmappable) as failure:
        map_pipedrive(orjson.loads(v.pipedrive("create", "mailbox", {"id": 9}, None)), DEFAULTS)
    assert (failure.value.module, failure.value.record, failure.value.cause) == (
        "mailbox",
        "9",
        "unknown_object",
    )
    nobody = orjson.loads(v.delighted("survey_response.created", 9, None, v.T0_S))
    nobody["event_data"]["person"] = None
    nobody["event_data"]["person_properties"] = {}
    with pytest.raises(Unmappable) as failure:
        map_delighted(nobody, DEFAULTS)
    assert (failure.value.module, failure.value.record, failure.value.cause) == (
        "survey_response",
        "5435",
        "unreadable",
    )


@pytest.mark.parametrize("secret", ["too-short", "a/b" + "c" * 30, "space in it" + "x" * 20])
def test_a_salesforce_secret_that_is_short_or_no_plain_path_segment_is_refused_by_name(secret: str) -> None:
    with pytest.raises(SettingsError, match="SALESPULSE_SALESFORCE_SECRET"):
        Settings.from_env({"SALESPULSE_SALESFORCE_SECRET": secret})
    settings = Settings.from_env({"SALESPULSE_SALESFORCE_SECRET": SF_SECRET})
    assert settings.salesforce_secret == SF_SECRET and SF_SECRET not in repr(settings)


def test_probabilities_and_close_dates_are_read_as_the_vendors_write_them() -> None:
    assert percent("10.000", "p") == 10 and isinstance(percent("10.000", "p"), int)  # vtiger
    assert percent("0.2", "p", fraction=True) == 20  # HubSpot: exactly 20, not 20.000000000000004
    assert percent(0.335, "p", fraction=True) == 33.5 and percent(65.5, "p") == 65.5
    assert percent("", "p") is None and percent(None, "p") is None
    for bad in ("lots", "NaN", True, [1]):
        with pytest.raises(Unmappable, match="is not a number"):
            percent(bad, "p")
    assert close_date("2026-12-15", "d") == "2026-12-15"
    assert close_date("2027-01-15T00:00:00Z", "d") == "2027-01-15"  # HubSpot keeps a time
    assert close_date("2026-12-31T21:30:00-05:00", "d") == "2027-01-01"  # its UTC date
    assert close_date("", "d") is None and close_date(None, "d") is None
    for bad in ("2026-02-30", "15/12/2026", "2026-1-5", "soon"):
        with pytest.raises(Unmappable, match="d"):
            close_date(bad, "d")


def _sf_events(*sobjects: str) -> list[dict[str, Any]]:
    out = map_notifications(*notifications_of(v.salesforce_envelope(*sobjects)), DEFAULTS)
    assert not out.unmappable
    return [check_event(e) for e in out.events]


def test_a_salesforce_edit_is_the_opening_again_and_a_version_whose_id_holds_for_redeliveries() -> None:
    edited = v.sf_version(StageName="Negotiation/Review", Probability="90", LastModifiedDate=v.SF_EDITED)
    opened, update = _sf_events(edited)
    assert (opened["type"], opened["occurred_at"]) == ("opportunity.created", "2026-11-20T09:00:00Z")
    assert (update["type"], update["occurred_at"]) == ("opportunity.updated", "2026-11-26T10:05:00Z")
    assert (
        update["data"]
        == opened["data"]
        == {
            "opportunity_id": "0065g00000PipeXAAV",
            "rep_id": "0055g00000Rep07AAA",
            "region": "unknown",
            "amount": 20000.0,
            "currency": "EUR",
            "stage": "Negotiation/Review",
            "probability": 90,
            "forecast_category": "pipeline",
            "expected_close": "2026-12-10",
        }
    )
    again = _sf_events(edited)
    assert [e["event_id"] for e in again] == [opened["event_id"], update["event_id"]]
    # Another change in the same second is another version; a category of none of the
    # vendors' is left to the stage.
    (_, same_second) = _sf_events(v.sf_version(Amount="21000.0", LastModifiedDate=v.SF_EDITED))
    assert same_second["event_id"] != update["event_id"]
    (_, unknown_category) = _sf_events(
        v.sf_version(ForecastCategoryName="Upside", LastModifiedDate=v.SF_EDITED)
    )
    assert "forecast_category" not in unknown_category["data"]
    assert [e["type"] for e in _sf_events(v.sf_version())] == ["opportunity.created"]  # never edited


def test_pipedrive_versions_come_from_changes_of_the_state_of_an_open_deal_only() -> None:
    def mapped(data: dict[str, Any], previous: dict[str, Any]) -> Any:
        return map_pipedrive(orjson.loads(v.pipedrive("change", "deal", data, previous)), DEFAULTS)

    moved = {**v.PD_PIPELINE, "stage_id": 2, "update_time": "2026-11-26T10:05:00Z"}
    (update,) = mapped(moved, {"stage_id": 1}).events
    assert (check_event(update)["type"], update["occurred_at"]) == (
        "opportunity.updated",
        "2026-11-26T10:05:00Z",
    )
    assert update["data"] == {
        "opportunity_id": "4720",
        "rep_id": "12597982",
        "region": "unknown",
        "amount": 20000.0,
        "currency": "EUR",
        "stage": "2",
        "probability": 20,
        "expected_close": "2026-12-10",
    }
    assert mapped(moved, {"stage_id": 1}).events[0]["event_id"] == update["event_id"]  # a redelivery
    assert mapped(moved, {"title": "Old title"}).ignored == 1  # nothing of the state changed
    reopened = {**moved, "status": "open"}
    assert mapped(reopened, {"status": "lost", "stage_id": 1}).ignored == 1  # a close is final


def test_hubspot_keeps_one_update_a_deal_in_a_delivery_the_newest_and_none_for_a_deal_it_closes() -> None:
    def change(what: str, deal: str, at: str) -> Change:
        return Change(what, deal, at, "62515", "", {})

    changes = [
        change("update", "7", "2026-11-26T10:00:00.000Z"),
        change("update", "7", "2026-11-26T10:02:00.000Z"),
        change("update", "7", "2026-11-26T10:01:00.000Z"),
        change("update", "8", "2026-11-26T10:00:00.000Z"),
        change("won", "8", "2026-11-26T10:03:00.000Z"),
        change("opportunity", "9", "2026-11-26T10:00:00.000Z"),
    ]
    assert latest_updates(changes) == [changes[1], changes[4], changes[5]]
