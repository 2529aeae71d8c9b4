"""Bytes to a valid event in one pass, for the topic consumer's hot path.

Decoding with orjson and then checking with fastjsonschema costs about 8 µs an event,
most of a worker's budget. msgspec decodes and checks in one C pass, against types built
here from the same schema files, so the contract still has one source.

This path only ever *accepts*: it returns None for anything it does not accept, and the
caller then runs the full validator, which decides and explains. So it must never accept
what the validator rejects. It declines instead where it cannot be sure: a keyword it does
not translate is an error at import, and the one conditional the contract uses (an
``if``/``then``/``else`` that makes fields required by a ``const``) is checked after
decoding. tests/test_fast_decoder.py holds it to the validator on valid and hostile input.

String patterns and formats (a ``date``) are checked after decoding too, not by msgspec: a
regular expression per event cost about 4,500 instructions each, more than the rest of the
decode. ``occurred_at`` is checked and converted in one step by
:mod:`salespulse.schemas.event_time`, and other checks remember the values they accepted
(currencies and dates repeat).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import msgspec

from salespulse.schemas import event_time
from salespulse.schemas.validator import FORMATS, SCHEMA_DIR, pattern_regex, schema_files

__all__ = ["decode_valid"]

#: Keywords that only annotate; everything else must be translated below.
_ANNOTATIONS = frozenset({"$schema", "title", "description", "examples"})
_ENVELOPE_TAG = "type"
#: The envelope field :mod:`salespulse.schemas.event_time` checks and converts.
_TIME_FIELD = "occurred_at"
#: Values a pattern remembers having matched, before it starts again.
_MATCHED_KEPT = 1 << 12

Check = Callable[[Mapping[str, Any]], bool]


class Remembering:
    """A string field's check (a ``pattern`` as the validator reads it, or a ``format``),
    remembering values it accepted."""

    def __init__(self, accepts: Callable[[str], bool]) -> None:
        self.accepts = accepts
        self.matched: set[str] = set()

    def __call__(self, value: str) -> bool:
        if value in self.matched:
            return True
        if not self.accepts(value):
            return False
        if len(self.matched) >= _MATCHED_KEPT:
            self.matched.clear()
        self.matched.add(value)
        return True


def _searches(pattern: str) -> Callable[[str], bool]:
    regex = pattern_regex(pattern)
    return lambda value: regex.search(value) is not None


#: (field, check) pairs run after decoding: envelope fields, then ``data`` fields.
Patterns = tuple[tuple[str, Remembering], ...]


def _refuse(where: str, keyword: str) -> RuntimeError:
    return RuntimeError(f"{where}: schema keyword {keyword!r} has no fast-path translation")


def _scalar(schema: Mapping[str, Any], where: str) -> Any:
    """A msgspec type accepting what ``schema`` accepts (a string or a number), but for a
    ``pattern`` or a known ``format``, which :func:`_pattern` turns into checks after decoding."""
    kind = schema.get("type")
    meta: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS or keyword == "type":
            continue
        if keyword == "enum" and all(isinstance(v, str) for v in value) and kind == "string":
            continue
        if keyword in ("minLength", "maxLength") and kind == "string":
            meta["min_length" if keyword == "minLength" else "max_length"] = value
        elif kind == "string" and (keyword == "pattern" or (keyword == "format" and value in FORMATS)):
            continue
        elif keyword in ("minimum", "maximum") and kind in ("number", "integer"):
            meta["ge" if keyword == "minimum" else "le"] = value
        else:
            raise _refuse(where, keyword)
    if "enum" in schema:
        # An enum value could break a constraint that the Literal would not check.
        if meta or "pattern" in schema or "format" in schema:
            raise _refuse(where, "enum with other constraints")
        return Literal[tuple(schema["enum"])]
    base = {"string": str, "number": float, "integer": int}.get(str(kind))
    if base is None:
        raise _refuse(where, f"type {kind}")
    return Annotated[base, msgspec.Meta(**meta)] if meta else base


def _conditional(schema: Mapping[str, Any], where: str) -> tuple[set[str], Check]:
    """Fields an ``if``/``then``/``else`` may require, and the check to run after decoding."""
    if "if" not in schema:
        return set(), lambda _: True
    cond, then, other = schema["if"], schema.get("then", {}), schema.get("else", {})
    if set(cond) != {"properties"} or any(set(v) != {"const"} for v in cond["properties"].values()):
        raise _refuse(where, "if (only properties with const)")
    if set(then) - {"required"} or set(other) - {"required"}:
        raise _refuse(where, "then/else (only required)")
    consts = {name: v["const"] for name, v in cond["properties"].items()}
    when, otherwise = tuple(then.get("required", ())), tuple(other.get("required", ()))

    def check(data: Mapping[str, Any]) -> bool:
        # A property the condition names but the object lacks satisfies it, as in JSON Schema.
        holds = all(name not in data or data[name] == value for name, value in consts.items())
        return all(name in data for name in (when if holds else otherwise))

    return set(when) | set(otherwise), check


def _pattern(schema: Mapping[str, Any], field: str) -> Patterns:
    """The checks a string field's ``pattern`` and ``format`` need after decoding, if any."""
    pattern, form = schema.get("pattern"), schema.get("format")
    checks = () if pattern is None else ((field, Remembering(_searches(pattern))),)
    return checks if form is None else (*checks, (field, Remembering(FORMATS[form])))


def _object(schema: Mapping[str, Any], name: str) -> tuple[Any, Check, Patterns]:
    for keyword in schema:
        if keyword not in _ANNOTATIONS | {"type", "required", "properties", "if", "then", "else"}:
            raise _refuse(name, keyword)
    conditional, check = _conditional(schema, name)
    required = set(schema.get("required", ()))
    properties = schema.get("properties", {})
    if not required | conditional <= set(properties):
        raise _refuse(name, "required (of an undeclared property)")
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (field, _scalar(sub, f"{name}.{field}")) for field, sub in properties.items() if field in required
    ]
    fields += [
        (field, _scalar(sub, f"{name}.{field}"), msgspec.UNSET)
        for field, sub in properties.items()
        if field not in required
    ]
    patterns = tuple(p for field, sub in properties.items() for p in _pattern(sub, field))
    struct = msgspec.defstruct(name.replace(".", "_") + "_data", fields, forbid_unknown_fields=True, gc=False)
    return struct, check, patterns


class EventType:
    """What is checked after msgspec has decoded one event type."""

    def __init__(self, check: Check, envelope: Patterns, data: Patterns) -> None:
        self.check = check
        self.envelope = envelope
        self.data = data


def _event_type(schema: Mapping[str, Any]) -> tuple[type[msgspec.Struct], EventType]:
    name = schema["properties"][_ENVELOPE_TAG]["const"]
    for keyword in schema:
        if keyword not in _ANNOTATIONS | {"type", "required", "properties"}:
            raise _refuse(name, keyword)
    if set(schema["required"]) != set(schema["properties"]):
        raise _refuse(name, "an optional envelope property")
    if schema["properties"].get(_TIME_FIELD, {}).get("pattern") != event_time.PATTERN:
        raise _refuse(f"{name}.{_TIME_FIELD}", "pattern (not the one schemas.event_time implements)")
    fields: list[tuple[str, Any]] = []
    check: Check = lambda _: True  # noqa: E731
    envelope: Patterns = ()
    data: Patterns = ()
    for field, sub in schema["properties"].items():
        if field == _ENVELOPE_TAG:
            continue
        if sub.get("type") == "object":
            kind, check, data = _object(sub, name)
            fields.append((field, kind))
        else:
            fields.append((field, _scalar(sub, f"{name}.{field}")))
            if field != _TIME_FIELD:
                envelope += _pattern(sub, field)
    struct = msgspec.defstruct(
        name.replace(".", "_"),
        fields,
        tag_field=_ENVELOPE_TAG,
        tag=name,
        forbid_unknown_fields=True,
        gc=False,
    )
    return struct, EventType(check, envelope, data)


def _build() -> tuple[msgspec.json.Decoder[Any], dict[type, EventType]]:
    types: dict[type, EventType] = {}
    for path in schema_files(SCHEMA_DIR):
        struct, after = _event_type(json.loads(path.read_text(encoding="utf-8")))
        types[struct] = after
    return msgspec.json.Decoder(Union[tuple(types)]), types  # noqa: UP007 - a runtime union


# The structs hold only strings and numbers and live for one call: no cycles for the
# collector to find, so they are not tracked (gc=False), which saves about 0.3 µs an event.
_DECODER, _TYPES = _build()
_to_builtins = msgspec.to_builtins


def _matches(obj: Mapping[str, Any], patterns: Patterns) -> bool:
    for field, pattern in patterns:
        value = obj.get(field)
        if value is not None and not pattern(value):
            return False
    return True


def decode_valid(raw: bytes) -> tuple[dict[str, Any], int] | None:
    """The event and its time in epoch seconds if ``raw`` is certainly valid, else None.

    Extra fields are dropped. A time before 1970 is declined: the validator decides.
    """
    try:
        struct = _DECODER.decode(raw)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    event: dict[str, Any] = _to_builtins(struct)
    after = _TYPES[struct.__class__]
    data = event["data"]
    if not after.check(data) or not _matches(event, after.envelope) or not _matches(data, after.data):
        return None
    t = event_time.valid_seconds(event[_TIME_FIELD])
    if t < 0:
        return None
    return event, t
