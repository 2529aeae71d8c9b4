"""The one event validator every SalesPulse entry point uses.

The JSON Schema files next to this module are the language-neutral contract for
upstream systems (design brief, section 2). HTTP ingest, the topic codec, ``emit``
and the tests all validate through :func:`validate_event`, against those same
files, so there is no second copy of the rules to drift. Each schema is compiled
once, at import, with fastjsonschema; a call is one dict lookup on ``type`` plus
the compiled check.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fastjsonschema
from fastjsonschema import JsonSchemaValueException
from fastjsonschema.draft04 import DOLLAR_FINDER

__all__ = [
    "EVENT_TYPES",
    "FORMATS",
    "SCHEMA_DIR",
    "InvalidEvent",
    "is_date",
    "pattern_regex",
    "schema_files",
    "validate_event",
]

SCHEMA_DIR: Path = Path(__file__).resolve().parent
_SUFFIX = ".schema.json"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A schema ``pattern`` as the validator reads it: ``$`` matches only at the very end."""
    return re.compile(DOLLAR_FINDER.sub(r"\\Z", pattern))


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def is_date(value: str) -> bool:
    """A real calendar date written ``YYYY-MM-DD``: the contract's ``format: date``, which the
    pattern beside it cannot say alone (it lets ``2026-02-30`` through)."""
    if _DATE.match(value) is None:
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


#: The ``format`` keywords the contract uses, checked by the validator and the fast decoder.
FORMATS: dict[str, Callable[[str], bool]] = {"date": is_date}


class InvalidEvent(Exception):
    """An event that breaks the contract.

    ``field`` is a dotted path into the event (``data.score``, ``type``), or ``$``
    for the event itself; ``reason`` says what is wrong in plain words.
    """

    field: str
    reason: str

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def schema_files(directory: Path) -> list[Path]:
    """The schema files of the contract, one per event type, in name order."""
    return sorted(directory.glob("*" + _SUFFIX))


def _load() -> dict[str, Callable[[Any], Any]]:
    validators: dict[str, Callable[[Any], Any]] = {}
    for path in schema_files(SCHEMA_DIR):
        schema = json.loads(path.read_text(encoding="utf-8"))
        name = path.name[: -len(_SUFFIX)]
        declared = schema.get("properties", {}).get("type", {}).get("const")
        if declared != name:
            raise RuntimeError(f"{path}: properties.type.const is {declared!r}, expected {name!r}")
        validators[name] = fastjsonschema.compile(schema, formats=FORMATS)
    if not validators:
        raise RuntimeError(f"no *{_SUFFIX} files in {SCHEMA_DIR}")
    return validators


_VALIDATORS = _load()
EVENT_TYPES: tuple[str, ...] = tuple(sorted(_VALIDATORS))
_KNOWN = ", ".join(EVENT_TYPES)

_TYPE_NAMES = {
    "object": "an object",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "array": "an array",
    "boolean": "a boolean",
    "null": "null",
}


def validate_event(obj: object) -> dict[str, Any]:
    """Return ``obj`` if it is a valid event; raise :class:`InvalidEvent` otherwise."""
    if isinstance(obj, dict):
        kind = obj.get("type")
        validator = _VALIDATORS.get(kind) if isinstance(kind, str) else None
        if validator is not None:
            try:
                validator(obj)
            except JsonSchemaValueException as exc:
                raise _translate(exc) from None
            return obj
        if kind is None:
            raise InvalidEvent("type", f"is required (one of: {_KNOWN})")
        if not isinstance(kind, str):
            raise InvalidEvent("type", f"must be a string (one of: {_KNOWN})")
        raise InvalidEvent("type", f"unknown event type {kind!r} (known: {_KNOWN})")
    raise InvalidEvent("$", "must be an object")


def _translate(exc: JsonSchemaValueException) -> InvalidEvent:
    """Turn fastjsonschema's error (rooted at ``data``) into a field path and a reason."""
    parts = [str(p) for p in (exc.path or ())[1:]]  # path[0] is fastjsonschema's root name
    rule = exc.rule
    definition: Mapping[str, Any] = exc.definition if isinstance(exc.definition, Mapping) else {}
    value = exc.value
    if rule == "required":
        present = value if isinstance(value, Mapping) else {}
        missing = next((k for k in definition.get("required", ()) if k not in present), None)
        if missing is not None:
            return InvalidEvent(".".join([*parts, str(missing)]), "is required")
        reason = "is missing a required field"
    elif rule == "type":
        expected = definition.get("type")
        names = [expected] if isinstance(expected, str) else list(expected or ())
        reason = "must be " + " or ".join(_TYPE_NAMES.get(n, n) for n in names)
    elif rule == "minimum":
        reason = f"must be >= {definition['minimum']}"
    elif rule == "maximum":
        reason = f"must be <= {definition['maximum']}"
    elif rule == "minLength":
        n = definition["minLength"]
        reason = "must not be empty" if n == 1 else f"must be at least {n} characters"
    elif rule == "maxLength":
        reason = f"must be at most {definition['maxLength']} characters"
    elif rule == "enum":
        reason = "must be one of " + ", ".join(map(str, definition["enum"]))
    elif rule == "const":
        reason = f"must be {definition['const']!r}"
    elif rule in ("pattern", "format"):
        # The schema's description of a patterned or formatted field reads as the requirement.
        described = definition.get("description")
        if described:
            reason = f"must be {described}"
        elif rule == "pattern":
            reason = f"must match pattern {definition.get('pattern')}"
        else:
            reason = f"must be a valid {definition.get('format')}"
    else:
        prefix = (exc.name or "") + " "
        message = exc.message
        reason = message[len(prefix) :] if message.startswith(prefix) else message
    return InvalidEvent(".".join(parts) or "$", reason)
