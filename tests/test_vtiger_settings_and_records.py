"""The vtiger connector's settings, its webservice client and its record mapping, without a broker.

The client talks to the local vtiger of tests/vtiger_fake.py; the mapping is checked on
records shaped as vtiger's webservice returns them (every value a string).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from salespulse.agents.money import to_units
from salespulse.schemas import exact_json
from salespulse.streams.endpoints.connectors.mapping import ConnectorMapping
from salespulse.streams.endpoints.connectors.vtiger.client import (
    VtigerAuthFailed,
    VtigerClient,
    VtigerQueryFailed,
    VtigerUnreachable,
)
from salespulse.streams.endpoints.connectors.vtiger.directory import Directory, Prefixes
from salespulse.streams.endpoints.connectors.vtiger.records import (
    EVENTS,
    LEADS,
    POTENTIALS,
    Translator,
    UnexpectedRecord,
    crm_account,
    repeated_hour_start,
)
from salespulse.streams.endpoints.connectors.vtiger.service import first_start
from salespulse.streams.settings import Settings, SettingsError
from salespulse.streams.tools.broker import free_port
from tests.vtiger_fake import PREFIXES, FakeVtiger


def client(fake: FakeVtiger, key: str | None = None) -> VtigerClient:
    return VtigerClient(fake.url, fake.user, fake.access_key if key is None else key)


# ------------------------------------------------------------------ settings


def test_vtiger_settings_default_to_a_minute_utc_and_port_6067_and_hide_the_access_key() -> None:
    settings = Settings.from_env(
        {"SALESPULSE_VTIGER_URL": "https://crm.example.com", "SALESPULSE_VTIGER_ACCESS_KEY": "s3cretkey"}
    )
    assert (settings.vtiger_poll, settings.vtiger_timezone, settings.connector_port) == (60.0, "UTC", 6067)
    assert "s3cretkey" not in repr(settings) and "***" in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SALESPULSE_VTIGER_POLL", "0"),
        ("SALESPULSE_VTIGER_POLL", "soon"),
        ("SALESPULSE_VTIGER_TIMEZONE", "Mars/Olympus"),
        ("SALESPULSE_VTIGER_SINCE", "last week"),
        ("SALESPULSE_CONNECTOR_PORT", "http"),
    ],
)
def test_an_unusable_vtiger_setting_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_first_start_reads_back_62_days_or_to_the_since_setting_in_vtigers_zone() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert first_start(Settings.from_env({}), now) == "2026-09-25 12:00:00"
    tehran = Settings.from_env(
        {"SALESPULSE_VTIGER_SINCE": "2026-10-01", "SALESPULSE_VTIGER_TIMEZONE": "Asia/Tehran"}
    )
    assert first_start(tehran, now) == "2026-10-01 00:00:00"
    utc_since = Settings.from_env(
        {"SALESPULSE_VTIGER_SINCE": "2026-10-01T00:00:00Z", "SALESPULSE_VTIGER_TIMEZONE": "Asia/Tehran"}
    )
    assert first_start(utc_since, now) == "2026-10-01 03:30:00"


# ------------------------------------------------------------------ the client


def test_the_client_logs_in_with_the_md5_of_token_and_key_and_reads_id_prefixes(fake: FakeVtiger) -> None:
    crm = client(fake)
    assert crm.describe("Accounts")["idPrefix"] == PREFIXES["Accounts"]
    assert fake.logins == 1


def test_an_ended_session_is_renewed_once_without_the_caller_noticing(fake: FakeVtiger) -> None:
    fake.add("Leads", "2026-11-20 10:00:00", lastname="A")
    crm = client(fake)
    assert len(crm.query("SELECT * FROM Leads;")) == 1
    fake.end_sessions()
    assert len(crm.query("SELECT * FROM Leads;")) == 1
    assert fake.logins == 2


def test_a_wrong_access_key_names_the_code_and_the_settings_but_not_the_key(fake: FakeVtiger) -> None:
    with pytest.raises(VtigerAuthFailed) as failure:
        client(fake, key="wrong-key").login()
    message = str(failure.value)
    assert "INVALID_USER_CREDENTIALS" in message and "SALESPULSE_VTIGER_ACCESS_KEY" in message
    assert "wrong-key" not in message and failure.value.reason == "auth"


def test_a_refused_query_is_a_query_error_with_vtigers_code(fake: FakeVtiger) -> None:
    with pytest.raises(VtigerQueryFailed, match="QUERY_SYNTAX_ERROR"):
        client(fake).query("SELEKT nothing;")


def test_no_vtiger_at_the_url_is_unreachable_with_the_url_in_the_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(VtigerUnreachable, match=url):
        VtigerClient(url, "admin", "key", timeout=2).login()


def test_a_page_that_is_not_the_webservice_says_the_url_is_probably_wrong(fake: FakeVtiger) -> None:
    with pytest.raises(VtigerUnreachable, match="SALESPULSE_VTIGER_URL"):
        VtigerClient(fake.url + "/index.php", "admin", "key").login()


# ------------------------------------------------------------------ records


def translator(zone: str = "UTC") -> Translator:
    mapping = ConnectorMapping(countries={"ir": "iran"}, reps={"19x5": "r-05"})
    return Translator(mapping, crm_account("https://crm.example.com/"), ZoneInfo(zone))


def directory(fake: FakeVtiger) -> Directory:
    prefixes = Prefixes(PREFIXES["Accounts"], PREFIXES["Contacts"], PREFIXES["Potentials"])
    return Directory(client(fake), lambda: prefixes)


def test_a_lead_becomes_lead_created_at_its_createdtime_in_vtigers_zone(fake: FakeVtiger) -> None:
    row = {
        "id": "10x7",
        "createdtime": "2026-11-20 10:00:00",
        "modifiedtime": "2026-11-21 10:00:00",
        "assigned_user_id": "19x5",
        "leadsource": "Web Site",
        "country": "IR",
        "city": "",
    }
    facts, skipped = translator("Asia/Tehran").facts(LEADS, row, {}, directory(fake))
    (fact,) = facts
    assert skipped is None
    assert fact.occurred_at == "2026-11-20T06:30:00Z"
    assert fact.event["data"] == {
        "lead_id": "10x7",
        "rep_id": "r-05",
        "region": "iran",
        "source": "web",
        "country": "IR",
    }


def test_a_call_with_a_contact_counts_for_the_contacts_organisation(fake: FakeVtiger) -> None:
    account = fake.add("Accounts", "2026-11-01 08:00:00", accountname="Org")
    contact = fake.add("Contacts", "2026-11-01 08:00:00", account_id=account)
    row = {
        "id": "18x3",
        "activitytype": "Call",
        "date_start": "2026-11-20",
        "time_start": "09:15:00",
        "parent_id": "",
        "contact_id": contact,
        "createdtime": "2026-11-20 09:00:00",
        "modifiedtime": "2026-11-20 09:00:00",
    }
    found = directory(fake)
    found.load(Translator.references(EVENTS, row))
    (fact,) = translator().facts(EVENTS, row, {}, found)[0]
    assert fact.event["data"] == {"customer_id": account, "channel": "call"}
    assert fact.occurred_at == "2026-11-20T09:15:00Z"
    assert translator().facts(EVENTS, {**row, "activitytype": "Site Visit"}, {}, found) == (
        [],
        "not_call_or_meeting",
    )
    assert translator().facts(EVENTS, {**row, "contact_id": ""}, {}, found) == ([], "no_customer")


def won_deal(**fields: str) -> dict[str, str]:
    """A won Potentials row as vtiger 8.2.0 answers it: every value a string, "" for no reference,
    the probability left as it was before the close."""
    return {
        "id": "13x9",
        "createdtime": "2026-11-02 09:00:00",
        "modifiedtime": "2026-11-03 10:00:00",
        "potentialname": "Deal",
        "sales_stage": "Closed Won",
        "probability": "10.000",
        "amount": "1500.00000000",
        "related_to": "",
        "contact_id": "",
        "opportunity_type": "",
        "leadsource": "",
        "assigned_user_id": "19x1",
        **fields,
    }


def test_a_won_deals_customer_follows_the_chain_and_is_the_same_every_time(fake: FakeVtiger) -> None:
    org = fake.add("Accounts", "2026-11-01 08:00:00", bill_country="IR")
    other = fake.add("Accounts", "2026-11-01 08:00:00")
    employee = fake.add("Contacts", "2026-11-01 08:00:00", account_id=org)
    shopper = fake.add("Contacts", "2026-11-01 08:00:00", account_id="")  # B2C: no organisation
    cases = [
        (won_deal(related_to=org, contact_id=""), org, None, "iran"),
        (won_deal(related_to=other, contact_id=employee), other, None, "unknown"),
        (won_deal(contact_id=employee), org, "contact_organisation", "iran"),
        (won_deal(contact_id=shopper), shopper, "contact", "unknown"),
        (won_deal(), "deal:13x9", "deal", "unknown"),
    ]
    for row, customer, fallback, region in cases:
        for _ in range(2):  # the same record: the same answer
            found = directory(fake)
            found.load(Translator.references(POTENTIALS, row))
            facts, skipped = translator().facts(POTENTIALS, row, {}, found)
            won = facts[-1]
            assert (won.type, won.event["data"]["customer_id"], won.fallback) == (
                "deal.won",
                customer,
                fallback,
            )
            assert won.event["data"]["region"] == region and skipped is None


def test_a_won_deal_remembered_as_won_gives_nothing_new_and_a_record_that_cannot_be_read_says_why(
    fake: FakeVtiger,
) -> None:
    row = won_deal()
    known = {"opportunity.created": "2026-11-02T09:00:00Z", "deal.won": "2026-11-03T10:00:00Z"}
    assert translator().facts(POTENTIALS, row, known, directory(fake)) == ([], None)
    with pytest.raises(UnexpectedRecord, match="amount") as unreadable:
        translator().facts(
            POTENTIALS, {**row, "amount": "lots", "sales_stage": "Prospecting"}, {}, directory(fake)
        )
    assert unreadable.value.cause == "unreadable"
    rials = {**row, "amount": "2500000000000000.00000000"}  # 2.5e15: over the contract's 1e15
    with pytest.raises(UnexpectedRecord, match="13x9") as too_large:
        translator().facts(POTENTIALS, rials, {}, directory(fake))
    assert too_large.value.cause == "contract"
    bogus = {**row, "sales_stage": "Bogus Stage"}  # vtiger accepts it on create: an open deal
    # Its opening, and its state at its last modification (which the poller produces only
    # when the opening is too old to be).
    assert [f.type for f in translator().facts(POTENTIALS, bogus, {}, directory(fake))[0]] == [
        "opportunity.created",
        "opportunity.updated",
    ]


def test_a_vtiger_in_toman_sends_its_8_decimal_amounts_exactly_as_toman(fake: FakeVtiger) -> None:
    mapping = ConnectorMapping(countries={"ir": "iran"}, currencies={"vtiger": "IRT"}, currency="EUR")
    toman = Translator(mapping, crm_account("https://crm.example.com/"), ZoneInfo("UTC"))
    row = won_deal(amount="2500000000000.50000000")  # 2.5e12 Toman and a half: 17 digits
    facts, _ = toman.facts(POTENTIALS, row, {}, directory(fake))
    won = next(f.event for f in facts if f.type == "deal.won")
    assert won["data"]["currency"] == "IRT"
    assert won["data"]["amount"] == Decimal("2500000000000.5")  # not a float's 2500000000000.5000...
    # Stored as rials with the exact factor by the engine (tests/test_money.py): 25,000,000,000,005.
    assert to_units(won["data"]["amount"], "IRT", price=False) == ("IRR", 25_000_000_000_005, False)
    assert exact_json.dumps(won).count(b'"amount":2500000000000.50000000') == 1


def test_a_call_about_a_deal_counts_for_that_deals_customer(fake: FakeVtiger) -> None:
    shopper = fake.add("Contacts", "2026-11-01 08:00:00")
    deal = fake.add("Potentials", "2026-11-02 08:00:00", contact_id=shopper)
    orphan = fake.add("Potentials", "2026-11-02 08:00:00")
    for parent, customer, fallback in ((deal, shopper, "contact"), (orphan, f"deal:{orphan}", "deal")):
        row = {
            "id": "18x3",
            "activitytype": "Meeting",
            "date_start": "2026-11-20",
            "time_start": "09:15:00",
            "parent_id": parent,
            "contact_id": "",
            "createdtime": "2026-11-20 09:00:00",
            "modifiedtime": "2026-11-20 09:00:01",
        }
        found = directory(fake)
        found.load(Translator.references(EVENTS, row))
        (fact,) = translator().facts(EVENTS, row, {}, found)[0]
        assert (fact.event["data"]["customer_id"], fact.fallback) == (customer, fallback)


def test_the_start_of_a_repeated_local_hour_is_found_and_other_hours_have_none() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert repeated_hour_start("2026-10-25 02:30:00", berlin) == "2026-10-25 02:00:00"
    assert repeated_hour_start("2026-10-25 02:00:00", berlin) == "2026-10-25 02:00:00"
    assert repeated_hour_start("2026-10-25 02:59:59", berlin) == "2026-10-25 02:00:00"
    assert repeated_hour_start("2026-10-25 03:00:00", berlin) is None
    assert repeated_hour_start("2026-10-25 01:59:59", berlin) is None
    assert repeated_hour_start("2026-03-29 02:30:00", berlin) is None  # the spring gap repeats nothing
    assert repeated_hour_start("2026-10-25 02:30:00", ZoneInfo("UTC")) is None
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # falls back by half an hour
    assert repeated_hour_start("2026-04-05 01:45:00", lord_howe) == "2026-04-05 01:30:00"


def test_event_ids_do_not_depend_on_the_scheme_or_a_trailing_slash_of_the_crm_url() -> None:
    assert {
        crm_account(u)
        for u in (
            "https://crm.example.com/vtiger",
            "http://CRM.example.com/vtiger/",
            "crm.example.com/vtiger",
        )
    } == {"crm.example.com/vtiger"}


def test_the_fake_answers_as_vtiger_8_2_0_does_and_a_failing_logout_is_only_best_effort(
    fake: FakeVtiger,
) -> None:
    crm = client(fake)
    crm.login()
    session = {"sessionName": str(crm._session)}
    with pytest.raises(VtigerQueryFailed, match="MANDATORY_FIELDS_MISSING"):  # an HTTP 200 envelope
        crm._call("POST", {"operation": "create", "elementType": "Leads", "element": "{}", **session})
    element = '{"potentialname": "Big", "closingdate": "2026-12-01", "sales_stage": "Bogus Stage", '
    element += '"assigned_user_id": "19x1", "amount": 12500.5}'
    deal = crm._call(
        "POST", {"operation": "create", "elementType": "Potentials", "element": element, **session}
    )
    assert all(isinstance(value, str) for value in deal.values())
    assert (deal["amount"], deal["sales_stage"], deal["related_to"], deal["contact_id"]) == (
        "12500.50000000",
        "Bogus Stage",
        "",
        "",
    )
    created = datetime.strptime(deal["createdtime"], "%Y-%m-%d %H:%M:%S")
    assert datetime.strptime(deal["modifiedtime"], "%Y-%m-%d %H:%M:%S") - created == timedelta(seconds=1)
    fake.denied.add("Events")
    with pytest.raises(VtigerAuthFailed, match="ACCESS_DENIED"):
        crm.query("SELECT * FROM Events;")
    crm.logout()  # vtiger answers HTTP 500: nothing to do about it, nothing raised
    assert fake.logouts == 1 and crm._session is None
