"""The fast decoder never accepts what the contract's validator rejects.

It may decline (the worker then asks the validator), but what it accepts must be valid and
decode to the same values (numbers as the same exact decimals, schemas/exact_json.py).
Checked on every generated event type, on every schema example with each field deleted or
replaced by a hostile value, and on hostile bytes.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest

from salespulse.schemas import EVENT_TYPES, InvalidEvent, exact_json, fast_decoder, validate_event
from salespulse.schemas.fast_decoder import decode_valid
from salespulse.schemas.validator import SCHEMA_DIR
from salespulse.streams.tools.generator import GeneratorConfig, generate

HOSTILE_VALUES: list[Any] = [
    None,
    "",
    "x" * 129,
    "x" * 201,
    -1,
    -0.5,
    0,
    10,
    11,
    5.5,
    5.0,
    1e15,
    1e15 + 1,
    Decimal("1000000000000000.00000001"),
    Decimal("999999999999999.99"),
    Decimal("12500.50000000"),
    Decimal("-0.0"),
    Decimal("1E+3"),
    "12.5",
    True,
    [],
    {},
    "nps",
    "enps",
    "new",
    "USD",
    "usd",
    "IRT",
    "IRHR",
    "IRHT",
    "IRHX",
    "IRRR",
    "USD\n",
    "2026-11-26T11:30:00Z",
    "2026-11-26T11:30:00Z\n",
    "2026-11-26T11:30:60Z",
    "2026-11-26t11:30:00.5+01:00",
    "2026-13-01T00:00:00Z",
    "2026-11-26 11:30:00Z",
    "lead.created",
    "2026-12-15",
    "2026-02-30",
    "2026-12-15T00:00:00Z",
    "2026-1-5",
    "\uff12026-12-15",
    "pipeline",
    "commit",
    100,
    100.5,
]


def example(event_type: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMA_DIR / "examples" / f"{event_type}.json").read_text(encoding="utf-8")))


def validator_view(raw: bytes) -> dict[str, Any] | None:
    try:
        return validate_event(exact_json.loads(raw))
    except (InvalidEvent, *exact_json.DecodeError):
        return None


def assert_agrees(raw: bytes) -> bool:
    """Fast accept implies valid with equal values; returns whether it was accepted."""
    fast = decode_valid(raw)
    if fast is None:
        return False
    slow = validator_view(raw)
    assert slow is not None, f"the fast path accepted what the validator rejects: {raw!r}"
    event, t = fast
    assert event == slow, f"values differ: {event} != {slow}"
    assert t == int(dt.datetime.fromisoformat(slow["occurred_at"]).timestamp() // 1)
    return True


def mutations(event: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    paths = [(k,) for k in event] + [("data", k) for k in event["data"]]
    for path in paths:
        parent_path, leaf = path[:-1], path[-1]
        deleted = copy.deepcopy(event)
        parent = deleted
        for p in parent_path:
            parent = parent[p]
        del parent[leaf]
        out.append(deleted)
        for value in HOSTILE_VALUES:
            changed = copy.deepcopy(event)
            parent = changed
            for p in parent_path:
                parent = parent[p]
            parent[leaf] = value
            out.append(changed)
    extra = copy.deepcopy(event)
    extra["data"]["note"] = "extra fields are allowed"
    out.append(extra)
    return out


def test_every_generated_event_is_accepted_with_the_validators_values() -> None:
    events = list(generate(GeneratorConfig(seed=3), 5_000))
    assert {e["type"] for e in events} == set(EVENT_TYPES)
    for event in events:
        assert assert_agrees(orjson.dumps(event)), f"declined a valid generated event: {event}"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_no_mutation_of_an_example_is_accepted_unless_valid(event_type: str) -> None:
    accepted = sum(assert_agrees(exact_json.dumps(m)) for m in mutations(example(event_type)))
    assert accepted > 0, "some mutations are valid (a different valid score, currency, ...)"


def test_a_conditional_requirement_is_checked_after_decoding() -> None:
    enps = example("survey.answered")
    enps["data"] = {"survey": "enps", "score": 8}
    assert decode_valid(orjson.dumps(enps)) is None
    enps["data"]["team"] = "sales-north"
    assert assert_agrees(orjson.dumps(enps))


BASE = orjson.dumps(example("deal.won"))


@pytest.mark.parametrize(
    "raw",
    [
        BASE[:-1] + b',"x":' + b"9" * 400 + b"}",
        BASE[:-1] + b',"x":"\xff"}',
        BASE[:-1] + b',"x":"\\ud800"}',
        BASE[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        BASE[:-1] + b',"data":5}',
        BASE[:-1] + b',"type":"lead.created"}',
        b'{"type":"lead.created",' + BASE[1:],
        BASE.replace(b'"kind":"new"', b'"kind":"new","kind":"bogus"'),
        BASE.replace(b'"kind":"new"', b'"kind":"bogus","kind":"new"'),
        BASE.replace(b"15000.0", b"1" + b"0" * 30),
        BASE.replace(b"15000.0", b"1e400"),
        BASE.replace(b"vtiger", b"vt\x01iger"),
        BASE.replace(b"vtiger", b"vt\xffiger"),
        b"\xef\xbb\xbf" + BASE,
        BASE + b" x",
        BASE + b" \n",
        b"[" + BASE + b"]",
        b"null",
        b"",
    ],
)
def test_hostile_bytes_are_never_accepted_unless_valid(raw: bytes) -> None:
    assert_agrees(raw)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "email"},
        {"type": "string", "enum": ["", "a"], "minLength": 1},
        {"type": "array"},
        {"type": "number", "exclusiveMinimum": 0},
    ],
)
def test_a_keyword_without_a_translation_is_refused_at_build_time(schema: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="no fast-path translation"):
        fast_decoder._scalar(schema, "test.field")
