"""The event contract: every schema's example is valid, and bad events say what is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from salespulse.schemas import EVENT_TYPES, InvalidEvent, validate_event
from salespulse.schemas.validator import SCHEMA_DIR

NINE = {
    "lead.created",
    "opportunity.created",
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


def test_event_types_are_the_nine_sorted() -> None:
    assert set(EVENT_TYPES) == NINE
    assert list(EVENT_TYPES) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(NINE))
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


def test_validation_does_not_mutate() -> None:
    event = example("opportunity.created")
    before = copy.deepcopy(event)
    validate_event(event)
    assert event == before


def test_schema_dir_is_the_package_dir() -> None:
    assert Path(SCHEMA_DIR, "validator.py").is_file()
    assert len(list(SCHEMA_DIR.glob("*.schema.json"))) == len(NINE)
