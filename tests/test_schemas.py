"""The event contract: every schema's example is valid, and bad events say what is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from salespulse.schemas import EVENT_TYPES, InvalidEvent, validate_event
from salespulse.schemas.topics import DEALS, LEADS, close_route, route
from salespulse.schemas.validator import SCHEMA_DIR

TEN = {
    "lead.created",
    "opportunity.created",
    "opportunity.updated",
    "deal.won",
    "deal.lost",
    "customer.activity",
    "survey.answered",
    "competitor.price_observed",
    "product.price_set",
    "marketing.spend",
}


def example(event_type: str) -> dict[str, Any]:
    path = SCHEMA_DIR / "examples" / f"{event_type}.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def enps() -> dict[str, Any]:
    event = example("survey.answered")
    event["data"] = {"survey": "enps", "score": 8, "team": "sales-north"}
    return event


def rejects(event: object) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event)
    return info.value


def test_event_types_are_the_ten_sorted() -> None:
    assert set(EVENT_TYPES) == TEN
    assert list(EVENT_TYPES) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(TEN))
def test_schema_file_and_example(event_type: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"{event_type}.schema.json").read_text(encoding="utf-8"))
    assert schema["title"] and schema["description"]
    assert schema["properties"]["type"]["const"] == event_type
    # The embedded example and the linked examples/ file are the same, and both are valid.
    assert schema["examples"] == [example(event_type)]
    for event in schema["examples"]:
        assert validate_event(event) is event


def test_enps_example_valid() -> None:
    validate_event(enps())


def test_not_an_object() -> None:
    bad: object
    for bad in ([], "x", None, 3):
        err = rejects(bad)
        assert (err.field, err.reason) == ("$", "must be an object")
        assert str(err) == "$: must be an object"


def test_unknown_type() -> None:
    event = example("lead.created")
    event["type"] = "foo.bar"
    err = rejects(event)
    assert err.field == "type"
    assert err.reason.startswith("unknown event type 'foo.bar'")
    assert "lead.created" in err.reason  # names the known types


def test_missing_or_non_string_type() -> None:
    event = example("lead.created")
    del event["type"]
    err = rejects(event)
    assert err.field == "type"
    assert err.reason.startswith("is required")
    event["type"] = ["lead.created"]
    assert rejects(event).field == "type"


def test_missing_envelope_field() -> None:
    event = example("deal.won")
    del event["occurred_at"]
    err = rejects(event)
    assert (err.field, err.reason) == ("occurred_at", "is required")


def test_missing_data_field() -> None:
    event = example("lead.created")
    del event["data"]["region"]
    err = rejects(event)
    assert (err.field, err.reason) == ("data.region", "is required")
    assert str(err) == "data.region: is required"


def test_data_not_an_object() -> None:
    event = example("lead.created")
    event["data"] = "north"
    err = rejects(event)
    assert (err.field, err.reason) == ("data", "must be an object")


@pytest.mark.parametrize(("score", "reason"), [(11, "must be <= 10"), (-1, "must be >= 0")])
def test_score_out_of_range(score: int, reason: str) -> None:
    event = example("survey.answered")
    event["data"]["score"] = score
    err = rejects(event)
    assert (err.field, err.reason) == ("data.score", reason)


def test_score_must_be_an_integer() -> None:
    event = example("survey.answered")
    event["data"]["score"] = "9"
    err = rejects(event)
    assert (err.field, err.reason) == ("data.score", "must be an integer")


def test_negative_amount() -> None:
    event = example("deal.won")
    event["data"]["amount"] = -0.01
    err = rejects(event)
    assert (err.field, err.reason) == ("data.amount", "must be >= 0")


def test_bad_currency() -> None:
    event = example("product.price_set")
    event["data"]["currency"] = "usd"
    err = rejects(event)
    assert err.field == "data.currency"
    assert "3-letter" in err.reason and "ISO 4217" in err.reason


def test_empty_id_and_bad_enum() -> None:
    event = example("lead.created")
    event["data"]["lead_id"] = ""
    assert (rejects(event).field, rejects(event).reason) == ("data.lead_id", "must not be empty")
    event = example("lead.created")
    event["data"]["source"] = "tv"
    err = rejects(event)
    assert err.field == "data.source"
    assert err.reason.startswith("must be one of web, referral")


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-26T10:00:00",  # no zone
        "2026-11-26T10:00:00.123",
        "2026-11-26 10:00:00Z",
        "2026-11-26",
        "2026-11-26T10:00:00Z\n",
        "2026-13-26T10:00:00Z",
    ],
)
def test_occurred_at_needs_rfc3339_with_zone(value: str) -> None:
    event = example("customer.activity")
    event["occurred_at"] = value
    err = rejects(event)
    assert err.field == "occurred_at"
    assert "RFC 3339" in err.reason and "zone" in err.reason


@pytest.mark.parametrize(
    "value", ["2026-11-26T10:00:00Z", "2026-11-26T10:00:00+02:00", "2026-11-26T10:00:00.5-05:30"]
)
def test_occurred_at_accepts_zones(value: str) -> None:
    event = example("customer.activity")
    event["occurred_at"] = value
    validate_event(event)


def test_survey_nps_needs_customer_region_product() -> None:
    for name in ("customer_id", "region", "product"):
        event = example("survey.answered")
        del event["data"][name]
        err = rejects(event)
        assert (err.field, err.reason) == (f"data.{name}", "is required")


def test_survey_enps_needs_team() -> None:
    event = enps()
    del event["data"]["team"]
    err = rejects(event)
    assert (err.field, err.reason) == ("data.team", "is required")


def test_extra_fields_are_accepted() -> None:
    event = example("deal.won")
    event["trace_id"] = "abc"
    event["data"]["discount"] = 0.1
    event["data"]["tags"] = ["q4"]
    assert validate_event(event) is event


def test_optional_fields_may_be_absent() -> None:
    event = example("deal.won")
    del event["data"]["source"]
    validate_event(event)
    event = example("deal.lost")
    event["data"] = {k: event["data"][k] for k in ("deal_id", "rep_id", "region")}
    validate_event(event)


def test_an_opportunity_may_carry_its_forecast_fields_or_none_of_them() -> None:
    for kind in ("opportunity.created", "opportunity.updated"):
        event = example(kind)
        assert {"stage", "probability", "forecast_category", "expected_close"} <= set(event["data"])
        validate_event(event)
        for name in ("stage", "probability", "forecast_category", "expected_close"):
            del event["data"][name]
        validate_event(event)


@pytest.mark.parametrize("name", ["opportunity_id", "rep_id", "region", "amount", "currency"])
def test_an_update_carries_the_whole_current_state(name: str) -> None:
    event = example("opportunity.updated")
    del event["data"][name]
    assert (rejects(event).field, rejects(event).reason) == (f"data.{name}", "is required")


@pytest.mark.parametrize(
    ("value", "reason"), [(100.5, "must be <= 100"), (-1, "must be >= 0"), ("80", "must be a number")]
)
def test_probability_is_a_percentage(value: object, reason: str) -> None:
    event = example("opportunity.updated")
    event["data"]["probability"] = value
    assert (rejects(event).field, rejects(event).reason) == ("data.probability", reason)
    event["data"]["probability"] = 33.5
    validate_event(event)


def test_forecast_category_is_one_of_four() -> None:
    event = example("opportunity.created")
    event["data"]["forecast_category"] = "upside"
    err = rejects(event)
    assert err.field == "data.forecast_category"
    assert err.reason == "must be one of pipeline, best_case, commit, omitted"


@pytest.mark.parametrize(
    "value", ["2026-02-30", "2026-13-01", "2026-12-15T00:00:00Z", "26-12-15", "2026-1-5"]
)
def test_expected_close_is_a_real_date(value: str) -> None:
    event = example("opportunity.updated")
    event["data"]["expected_close"] = value
    err = rejects(event)
    assert (err.field, err.reason) == ("data.expected_close", "must be a date, YYYY-MM-DD, e.g. 2026-12-15")
    event["data"]["expected_close"] = "2028-02-29"
    validate_event(event)


def test_a_deal_may_name_the_opportunity_it_closes() -> None:
    for kind in ("deal.won", "deal.lost"):
        event = example(kind)
        assert event["data"]["opportunity_id"]
        event["data"]["opportunity_id"] = ""
        assert (rejects(event).field, rejects(event).reason) == ("data.opportunity_id", "must not be empty")
        del event["data"]["opportunity_id"]
        validate_event(event)


def test_validation_does_not_mutate() -> None:
    event = example("opportunity.created")
    before = copy.deepcopy(event)
    validate_event(event)
    assert event == before


def test_schema_dir_is_the_package_dir() -> None:
    assert Path(SCHEMA_DIR, "validator.py").is_file()
    assert len(list(SCHEMA_DIR.glob("*.schema.json"))) == len(TEN)


def test_an_update_goes_where_its_opportunity_lives_and_a_close_is_forwarded_there_too() -> None:
    assert route(example("opportunity.updated")) == route(example("opportunity.created")) == (LEADS, b"O-1")
    won, lost = example("deal.won"), example("deal.lost")
    assert route(won) == (DEALS, b"C-000001") and route(lost) == (DEALS, b"D-2")
    assert close_route(won) == (LEADS, b"O-1") and close_route(lost) == (LEADS, b"O-2")
    del won["data"]["opportunity_id"]
    assert close_route(won) is None
    assert close_route(example("opportunity.created")) is None
