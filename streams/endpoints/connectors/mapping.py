"""The connectors' mapping file (``SALESPULSE_CONNECTORS``): what vendor payloads do not say.

A CRM names its owners by its own ids, its regions by country, state or city, its lead
sources and deal types by its own picklists, and some name their deal stages by ids; an
NPS tool knows nothing of regions or teams. The mapping file turns those into SalesPulse's
labels, for every connector (the webhooks and the vtiger poller) from one place. Without a
file every connector still works with built-in defaults: region ``unknown``, rep
``unassigned`` (or the owner id as given), source ``other``, product ``unknown``, kind
``new``, currency ``USD``, a stage id as given.

The source and kind vocabularies and the currency rule are read from the event contract
(``schemas/``), so the file is checked against the same rules the events are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from salespulse.schemas.validator import SCHEMA_DIR, pattern_regex

UNKNOWN_REGION = "unknown"
UNASSIGNED_REP = "unassigned"
UNKNOWN_PRODUCT = "unknown"
OTHER_SOURCE = "other"
NEW_KIND = "new"
DEFAULT_CURRENCY = "USD"

#: The stock picklists of the supported CRMs (HubSpot's original source, Salesforce's and
#: vtiger's lead sources), where their meaning is plain. The file adds to and overrides them.
BUILT_IN_SOURCES: Mapping[str, str] = {
    "organic_search": "web",
    "direct_traffic": "web",
    "web site": "web",
    "paid_search": "campaign",
    "paid_social": "campaign",
    "email_marketing": "campaign",
    "other_campaigns": "campaign",
    "direct mail": "campaign",
    "referrals": "referral",
    "word of mouth": "referral",
    "existing customer": "referral",
    "partner referral": "partner",
    "cold call": "cold_call",
    "conference": "event",
    "trade show": "event",
}

#: The stock deal types: HubSpot's ``dealtype``, Salesforce's opportunity ``Type``, vtiger's
#: ``opportunity_type``. A deal with an existing customer that is not a renewal is an upsell.
BUILT_IN_KINDS: Mapping[str, str] = {
    "newbusiness": "new",
    "new business": "new",
    "new customer": "new",
    "existingbusiness": "upsell",
    "existing business": "upsell",
    "existing customer - upgrade": "upsell",
    "existing customer - replacement": "renewal",
    "existing customer - downgrade": "renewal",
}

#: The vendors' forecast categories (Salesforce's ``ForecastCategoryName`` and its API names,
#: HubSpot's ``hs_manual_forecast_category``) as the contract's. ``Closed`` is none of them: a
#: closed deal's category is its close, and an open one without a category is forecast by
#: its stage (docs/forecast.md).
BUILT_IN_CATEGORIES: Mapping[str, str] = {
    "pipeline": "pipeline",
    "best case": "best_case",
    "best_case": "best_case",
    "bestcase": "best_case",
    "commit": "commit",
    "forecast": "commit",
    "omitted": "omitted",
    "omit": "omitted",
    "not forecasted": "omitted",
}

#: The field that holds the customer id, per vendor, when the file does not name another.
BUILT_IN_CUSTOMER_FIELDS: Mapping[str, str] = {
    "salesforce": "AccountId",
    "pipedrive": "org_id",
    "delighted": "customer_id",
    "vtiger": "related_to",
}

#: The field that holds a deal's type, per vendor, when the file does not name another.
#: Pipedrive has no stock one: its teams keep the kind in a custom field of their own.
BUILT_IN_KIND_FIELDS: Mapping[str, str] = {
    "hubspot": "dealtype",
    "salesforce": "Type",
    "vtiger": "opportunity_type",
}

#: Every vendor a connector exists for; ``customer_fields`` and ``kind_fields`` may name only these.
VENDORS = ("hubspot", "salesforce", "pipedrive", "delighted", "typeform", "vtiger")

VTIGER_WON = ("Closed Won",)
VTIGER_LOST = ("Closed Lost",)

_SECTIONS = frozenset(
    {
        "reps",
        "regions",
        "sources",
        "kinds",
        "currency",
        "currencies",
        "product",
        "teams",
        "customer_fields",
        "kind_fields",
        "stages",
        "vtiger",
    }
)
_REGION_LEVELS = ("cities", "states", "countries")
_VTIGER_KEYS = frozenset({"won", "lost"})


class MappingError(ValueError):
    """The mapping file cannot be used; the message names the file and the key."""


def _key(value: object) -> str:
    """How a vendor value is matched: trimmed and case-insensitive (``Web Site`` = ``web site``)."""
    return str(value).strip().casefold()


@cache
def _data_property(event_type: str, name: str) -> dict[str, Any]:
    schema = json.loads((SCHEMA_DIR / f"{event_type}.schema.json").read_text(encoding="utf-8"))
    return dict(schema["properties"]["data"]["properties"][name])


def source_vocabulary() -> tuple[str, ...]:
    """Lead sources, as ``lead.created`` declares them (shared with spend channels)."""
    return tuple(_data_property("lead.created", "source")["enum"])


def kind_vocabulary() -> tuple[str, ...]:
    """Deal kinds, as ``deal.won`` declares them."""
    return tuple(_data_property("deal.won", "kind")["enum"])


def _currency_pattern() -> re.Pattern[str]:
    return pattern_regex(_data_property("deal.won", "currency")["pattern"])


def _translate(
    value: object,
    table: Mapping[str, str],
    built_in: Mapping[str, str],
    vocabulary: tuple[str, ...],
    default: str,
) -> str:
    """The file's label for a picklist value, else the built-in one, else the value itself when it
    is already a vocabulary word, else ``default``."""
    if value is None:
        return default
    key = _key(value)
    found = table.get(key) or built_in.get(key)
    if found is not None:
        return found
    return key if key in vocabulary else default


@dataclass(frozen=True)
class ConnectorMapping:
    """The mapping file, checked and ready: every lookup falls back to its documented default."""

    origin: str = "built-in defaults"
    reps: Mapping[str, str] = field(default_factory=dict)
    cities: Mapping[str, str] = field(default_factory=dict)
    states: Mapping[str, str] = field(default_factory=dict)
    countries: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)
    currency: str = DEFAULT_CURRENCY
    #: The currency each CRM stores its amounts in, where its records carry none (vtiger's) or
    #: where they are not ISO's (a vtiger in Toman: ``IRT``).
    currencies: Mapping[str, str] = field(default_factory=dict)
    product: str = UNKNOWN_PRODUCT
    teams: Mapping[str, str] = field(default_factory=dict)
    customer_fields: Mapping[str, str] = field(default_factory=dict)
    kind_fields: Mapping[str, str] = field(default_factory=dict)
    stages: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    vtiger_won: tuple[str, ...] = VTIGER_WON
    vtiger_lost: tuple[str, ...] = VTIGER_LOST

    def rep(self, owner: object) -> str:
        """The rep for a vendor owner id: mapped, else the id as given, else ``unassigned``."""
        if owner is None or str(owner).strip() == "":
            return UNASSIGNED_REP
        return self.reps.get(str(owner).strip(), str(owner).strip())

    def region(self, *, city: object = None, state: object = None, country: object = None) -> str:
        """The most specific mapped place wins: city, then state, then country; else ``unknown``."""
        for table, value in ((self.cities, city), (self.states, state), (self.countries, country)):
            if value is not None and (found := table.get(_key(value))) is not None:
                return found
        return UNKNOWN_REGION

    def source(self, value: object) -> str:
        """A lead-source picklist value in the contract's vocabulary; unknown ones are ``other``."""
        return _translate(value, self.sources, BUILT_IN_SOURCES, source_vocabulary(), OTHER_SOURCE)

    def kind(self, value: object) -> str:
        """A deal type as a deal kind; unknown ones are ``new``."""
        return _translate(value, self.kinds, BUILT_IN_KINDS, kind_vocabulary(), NEW_KIND)

    def team(self, survey: object) -> str | None:
        """The team whose eNPS a survey (a form id) measures, or None for a customer NPS survey."""
        return None if survey is None else self.teams.get(str(survey).strip())

    def customer_field(self, vendor: str, default: str = "") -> str:
        """The vendor's field that holds the customer id."""
        return self.customer_fields.get(vendor) or BUILT_IN_CUSTOMER_FIELDS.get(vendor, default)

    def currency_of(self, vendor: str) -> str:
        """The currency of ``vendor``'s amounts when a record names none: ``currencies``, else
        ``currency``."""
        return self.currencies.get(vendor) or self.currency

    def kind_field(self, vendor: str) -> str:
        """The vendor's deal field that holds the deal's type ("" when there is none)."""
        return self.kind_fields.get(vendor) or BUILT_IN_KIND_FIELDS.get(vendor, "")

    def stage(self, vendor: str, value: object, label: str | None = None) -> str | None:
        """The name of a vendor's deal stage: the file's name for its id, else the vendor's own
        label, else the stage as given; None when the record has none."""
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        return self.stages.get(vendor, {}).get(text) or label or text

    @staticmethod
    def forecast_category(value: object) -> str | None:
        """A vendor's forecast category as the contract's, or None (closed, or a value none of
        the vendors uses): the opportunity's stage then decides."""
        return None if value is None else BUILT_IN_CATEGORIES.get(_key(value))

    def vtiger_outcome(self, sales_stage: object) -> str | None:
        """``won`` or ``lost`` for a closing vtiger ``sales_stage``, None for an open one."""
        stage = _key(sales_stage)
        if stage in {_key(s) for s in self.vtiger_won}:
            return "won"
        if stage in {_key(s) for s in self.vtiger_lost}:
            return "lost"
        return None


class _Reader:
    """Checks one parsed file, naming the file and the dotted key in every error."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, problem: str) -> MappingError:
        return MappingError(f"{self.origin}: {key}: {problem}")

    def text(self, key: str, value: object) -> str:
        # YAML reads an unquoted owner id (12597982) as a number: accept it as its digits.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(key, f"must be a string, not {type(value).__name__}")
        text = str(value).strip()
        if not text or len(text) > 200:
            raise self.fail(key, "must be 1 to 200 characters")
        return text

    def table(
        self, key: str, value: object, *, allowed: tuple[str, ...] = (), fold: bool = False
    ) -> dict[str, str]:
        """A map of vendor value to label; ``allowed`` limits the labels, ``fold`` the keys' case."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, not {type(value).__name__}")
        out: dict[str, str] = {}
        for raw_key, raw_value in value.items():
            name = self.text(f"{key} (a key)", raw_key)
            label = self.text(f"{key}.{name}", raw_value)
            if allowed and label not in allowed:
                raise self.fail(f"{key}.{name}", f"{label!r} is not one of {', '.join(allowed)}")
            out[_key(name) if fold else name] = label
        return out

    def vendor(self, key: str, vendor: object) -> str:
        if vendor not in VENDORS:
            raise self.fail(f"{key}.{vendor}", f"is not one of {', '.join(VENDORS)}")
        return str(vendor)

    def vendors(self, key: str, value: object) -> dict[str, str]:
        """A map of vendor to one of its field names."""
        return {self.vendor(key, vendor): name for vendor, name in self.table(key, value).items()}

    def stage_names(self, key: str, value: object) -> dict[str, dict[str, str]]:
        """Per vendor, a map of its stage ids to stage names (ids match exactly)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping of vendors, not {type(value).__name__}")
        return {self.vendor(key, v): self.table(f"{key}.{v}", table) for v, table in value.items()}

    def currency(self, key: str, value: object) -> str:
        """A currency code the event contract accepts (ISO 4217, or IRT, IRHR, IRHT)."""
        code = self.text(key, value)
        if not _currency_pattern().match(code):
            raise self.fail(key, f"{code!r} is not a 3-letter uppercase ISO 4217 code, IRT, IRHR or IRHT")
        return code

    def stages(self, key: str, value: object, default: tuple[str, ...]) -> tuple[str, ...]:
        if value is None:
            return default
        items = value if isinstance(value, list) else [value]
        stages = tuple(self.text(f"{key}[{i}]", item) for i, item in enumerate(items))
        if not stages:
            raise self.fail(key, "must name at least one sales stage")
        return stages


def parse_mapping(doc: object, origin: str) -> ConnectorMapping:
    """Check a parsed mapping document; raise :class:`MappingError` naming the bad key."""
    read = _Reader(origin)
    if doc is None:
        return ConnectorMapping(origin=origin)
    if not isinstance(doc, dict):
        raise read.fail("$", f"must be a mapping of sections, not {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in _SECTIONS)
    if unknown:
        raise read.fail(unknown[0], f"is not a section (known: {', '.join(sorted(_SECTIONS))})")
    regions = doc.get("regions") or {}
    if not isinstance(regions, dict):
        raise read.fail("regions", f"must be a mapping, not {type(regions).__name__}")
    for level in regions:
        if level not in _REGION_LEVELS:
            raise read.fail(f"regions.{level}", f"is not one of {', '.join(_REGION_LEVELS)}")
    vtiger = doc.get("vtiger") or {}
    if not isinstance(vtiger, dict):
        raise read.fail("vtiger", f"must be a mapping, not {type(vtiger).__name__}")
    for name in vtiger:
        if name not in _VTIGER_KEYS:
            raise read.fail(f"vtiger.{name}", "is not one of lost, won")
    customer_fields = read.vendors("customer_fields", doc.get("customer_fields"))
    kind_fields = read.vendors("kind_fields", doc.get("kind_fields"))
    currency = read.currency("currency", doc.get("currency", DEFAULT_CURRENCY))
    currencies = {
        vendor: read.currency(f"currencies.{vendor}", code)
        for vendor, code in read.vendors("currencies", doc.get("currencies")).items()
    }
    return ConnectorMapping(
        origin=origin,
        reps=read.table("reps", doc.get("reps")),
        cities=read.table("regions.cities", regions.get("cities"), fold=True),
        states=read.table("regions.states", regions.get("states"), fold=True),
        countries=read.table("regions.countries", regions.get("countries"), fold=True),
        sources=read.table("sources", doc.get("sources"), allowed=source_vocabulary(), fold=True),
        kinds=read.table("kinds", doc.get("kinds"), allowed=kind_vocabulary(), fold=True),
        currency=currency,
        currencies=currencies,
        product=read.text("product", doc.get("product", UNKNOWN_PRODUCT)),
        teams=read.table("teams", doc.get("teams")),
        customer_fields=customer_fields,
        kind_fields=kind_fields,
        stages=read.stage_names("stages", doc.get("stages")),
        vtiger_won=read.stages("vtiger.won", vtiger.get("won"), VTIGER_WON),
        vtiger_lost=read.stages("vtiger.lost", vtiger.get("lost"), VTIGER_LOST),
    )


def load_mapping(path: Path | None) -> ConnectorMapping:
    """The mapping file at ``path``, or the built-in defaults when there is none."""
    if path is None:
        return ConnectorMapping()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    return parse_mapping(doc, str(path))
