"""The connectors' mapping file: defaults without one, checked values with one, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from salespulse.schemas.validator import SCHEMA_DIR
from salespulse.streams.endpoints.connectors.ids import derive_event_id, version_of
from salespulse.streams.endpoints.connectors.mapping import (
    BUILT_IN_CATEGORIES,
    ConnectorMapping,
    MappingError,
    kind_vocabulary,
    load_mapping,
    source_vocabulary,
)
from salespulse.streams.settings import Settings

FULL = """
reps:
  12597982: r-07          # an unquoted owner id is read as its digits
  "005xx0000012345": r-12
regions:
  cities: {Tehran: tehran}
  states: {CA: us-west}
  countries: {US: north-america, IR: iran}
sources:
  Web Site: web
  Trade Show: event
  Seminar - Partner: partner
kinds:
  Existing Customer - Upgrade: upsell
  Renewal: renewal
currency: EUR
currencies:
  vtiger: IRT
product: crm-pro
teams:
  lT4Z3j: sales-emea
customer_fields:
  pipedrive: person_id
kind_fields:
  pipedrive: 3e9bb7da4983ebebda9e19851cc6828af134e3c8
stages:
  hubspot: {"1031923": Negotiation/Review}
  pipedrive: {3: Proposal/Price Quote}
vtiger:
  won: [Closed Won, Won - Paid]
  lost: Closed Lost
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(text)
    return path


def test_without_a_file_every_lookup_has_its_documented_default() -> None:
    mapping = load_mapping(None)
    assert mapping.rep(None) == "unassigned" and mapping.rep("") == "unassigned"
    assert mapping.rep(42) == "42"  # the vendor's owner id, as given
    assert mapping.region(city="Paris", state=None, country="FR") == "unknown"
    assert mapping.source(None) == "other" and mapping.source("Billboard") == "other"
    assert mapping.kind(None) == "new" and mapping.kind("Barter") == "new"
    assert (mapping.currency, mapping.product) == ("USD", "unknown")
    assert mapping.currency_of("vtiger") == "USD"
    assert mapping.team("any-form") is None
    assert mapping.customer_field("salesforce") == "AccountId"
    assert mapping.customer_field("pipedrive") == "org_id"
    assert mapping.kind_field("pipedrive") == ""  # no stock field: every Pipedrive win is new
    assert mapping.kind_field("vtiger") == "opportunity_type"
    assert mapping.vtiger_outcome("Closed Won") == "won"
    assert mapping.vtiger_outcome("closed lost") == "lost"
    assert mapping.vtiger_outcome("Negotiation/Review") is None
    assert mapping.stage("pipedrive", 3) == "3" and mapping.stage("pipedrive", None) is None
    assert mapping.stage("hubspot", "1031923", "Negotiation") == "Negotiation"  # the vendor's label


def test_vendors_forecast_categories_are_the_contracts_and_closed_or_unknown_ones_none() -> None:
    schema = json.loads((SCHEMA_DIR / "opportunity.updated.schema.json").read_text(encoding="utf-8"))
    contract = schema["properties"]["data"]["properties"]["forecast_category"]["enum"]
    assert set(BUILT_IN_CATEGORIES.values()) == set(contract)
    mapping = ConnectorMapping()
    assert [
        mapping.forecast_category(v) for v in ("Best Case", "BEST_CASE", "Commit", "OMIT", "Pipeline")
    ] == [
        "best_case",
        "best_case",
        "commit",
        "omitted",
        "pipeline",
    ]
    assert mapping.forecast_category("Closed") is None and mapping.forecast_category("Upside") is None


def test_stock_picklists_map_to_the_contract_vocabulary_case_insensitively() -> None:
    mapping = ConnectorMapping()
    assert mapping.source("ORGANIC_SEARCH") == "web"  # HubSpot's original source
    assert mapping.source("Partner Referral") == "partner"  # Salesforce
    assert mapping.source("cold call") == "cold_call"  # vtiger
    assert mapping.source("Referral") == "referral"  # a vocabulary word is itself
    assert mapping.kind("newbusiness") == "new" and mapping.kind("existingbusiness") == "upsell"
    assert mapping.kind("Existing Customer - Replacement") == "renewal"
    assert set(source_vocabulary()) == {
        "web",
        "referral",
        "campaign",
        "cold_call",
        "event",
        "partner",
        "other",
    }
    assert set(kind_vocabulary()) == {"new", "upsell", "cross_sell", "renewal"}


def test_a_full_file_is_read_into_typed_lookups(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, FULL))
    assert mapping.rep(12597982) == "r-07" and mapping.rep("005xx0000012345") == "r-12"
    assert mapping.region(city="tehran", country="IR") == "tehran"  # the most specific place wins
    assert mapping.region(city="Shiraz", country="ir") == "iran"
    assert mapping.region(state="CA", country="US") == "us-west"
    assert mapping.source("web site") == "web" and mapping.source("Seminar - Partner") == "partner"
    assert mapping.source("Unheard Of") == "other"
    assert mapping.kind("Renewal") == "renewal" and mapping.kind("Mystery") == "new"
    assert (mapping.currency, mapping.product) == ("EUR", "crm-pro")
    assert mapping.currency_of("vtiger") == "IRT"  # a vtiger kept in Toman
    assert mapping.currency_of("pipedrive") == "EUR"  # a vendor the file names none for
    assert mapping.team("lT4Z3j") == "sales-emea"
    assert mapping.customer_field("pipedrive") == "person_id"
    assert mapping.kind_field("pipedrive") == "3e9bb7da4983ebebda9e19851cc6828af134e3c8"
    assert mapping.kind_field("salesforce") == "Type"  # the built-in where the file names none
    assert mapping.vtiger_outcome("Won - Paid") == "won" and mapping.vtiger_outcome("Closed Won") == "won"
    assert mapping.vtiger_lost == ("Closed Lost",)
    assert mapping.stage("hubspot", "1031923", "Negotiation") == "Negotiation/Review"  # the file's name
    assert mapping.stage("pipedrive", 3) == "Proposal/Price Quote" and mapping.stage("pipedrive", 4) == "4"


def test_an_empty_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_mapping(write(tmp_path, "# nothing yet\n")).currency == "USD"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("sources:\n  Web Site: internet\n", "sources.Web Site", "'internet' is not one of web"),
        ("kinds:\n  Renewal: renew\n", "kinds.Renewal", "'renew' is not one of new"),
        ("currency: usd\n", "currency", "3-letter uppercase"),
        ("currencies:\n  vtiger: TOMAN\n", "currencies.vtiger", "'TOMAN' is not a 3-letter uppercase"),
        ("currencies:\n  zoho: IRT\n", "currencies.zoho", "is not one of hubspot"),
        ("regions:\n  districts: {a: b}\n", "regions.districts", "is not one of cities"),
        ("reps: [a, b]\n", "reps", "must be a mapping, not list"),
        ("reps:\n  r1: {name: x}\n", "reps.r1", "must be a string, not dict"),
        ("owners:\n  a: b\n", "owners", "is not a section"),
        ("customer_fields:\n  zoho: Account\n", "customer_fields.zoho", "is not one of hubspot"),
        ("kind_fields:\n  zoho: Type\n", "kind_fields.zoho", "is not one of hubspot"),
        ("stages:\n  zoho: {1: Won}\n", "stages.zoho", "is not one of hubspot"),
        ("stages: [a]\n", "stages", "must be a mapping of vendors, not list"),
        ("stages:\n  pipedrive: {1: ''}\n", "stages.pipedrive.1", "1 to 200 characters"),
        ("vtiger:\n  won: []\n", "vtiger.won", "at least one sales stage"),
        ("vtiger:\n  closed: [x]\n", "vtiger.closed", "is not one of lost, won"),
        ("- just\n- a list\n", "$", "must be a mapping of sections"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_a_missing_or_broken_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"absent\.yaml: cannot be read"):
        load_mapping(tmp_path / "absent.yaml")
    with pytest.raises(MappingError, match=r"connectors\.yaml: not valid YAML"):
        load_mapping(write(tmp_path, "reps: {a: [\n"))


def test_the_file_is_named_by_salespulse_connectors() -> None:
    assert Settings.from_env({}).connectors_file is None
    assert Settings.from_env({"SALESPULSE_CONNECTORS": "/etc/sp/c.yaml"}).connectors_file == Path(
        "/etc/sp/c.yaml"
    )


def test_event_ids_depend_on_the_fact_only() -> None:
    one = derive_event_id("hubspot", "62515", "1234", "deal.won")
    assert one == derive_event_id("hubspot", "62515", "1234", "deal.won")
    assert one.startswith("hubspot-") and len(one) == len("hubspot-") + 32
    others = {
        derive_event_id("pipedrive", "62515", "1234", "deal.won"),
        derive_event_id("hubspot", "62516", "1234", "deal.won"),
        derive_event_id("hubspot", "62515", "1235", "deal.won"),
        derive_event_id("hubspot", "62515", "1234", "deal.lost"),
        derive_event_id("hubspot", "6251", "51234", "deal.won"),  # parts are kept apart
    }
    assert one not in others and len(others) == 5


def test_a_version_of_an_opportunity_is_its_time_and_state_or_its_time_alone() -> None:
    state = {"opportunity_id": "O-1", "amount": 10.0}
    assert version_of("O-1", "2026-11-26T10:00:00Z", state) == version_of(
        "O-1", "2026-11-26T10:00:00Z", dict(reversed(state.items()))
    )  # the order of the fields does not matter
    assert version_of("O-1", "2026-11-26T10:00:00Z", state) != version_of(
        "O-1", "2026-11-26T10:00:00Z", {**state, "amount": 11.0}
    )
    assert version_of("O-1", "2026-11-26T10:00:00Z") == "O-1@2026-11-26T10:00:00Z"


def test_the_example_mapping_file_loads_and_names_the_pipedrive_kind_field() -> None:
    mapping = load_mapping(Path(__file__).resolve().parents[1] / "config" / "connectors.example.yml")
    assert mapping.kind_field("pipedrive") == "3e9bb7da4983ebebda9e19851cc6828af134e3c8"
    assert mapping.kind("4581") == "renewal" and mapping.rep("19x5") == "r-05"
    assert mapping.stage("pipedrive", 3) == "Proposal/Price Quote"
