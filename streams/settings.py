"""The one typed settings object, read from ``SALESPULSE_*`` variables.

Every process (worker, CLI, tests) builds a :class:`Settings` here instead of reading the
environment itself, so defaults live in one place and secrets never reach a log line.
Each variable is declared once, as a field of a msgspec ``Struct``: its type, default,
bounds and meaning. msgspec (already the worker's decoder) converts and checks the values;
``docs/configuration.md``'s table is generated from the same declarations
(:func:`markdown_table`), so a variable cannot be missing from the docs. msgspec rather
than pydantic-settings: importing pydantic grows every process by about 25 MB, and the
worker's memory budget at a million customers has less than that to spare.

Values keep the plain forms people type into an environment: ``call,email`` for a list,
``24h`` for a duration (one syntax for every duration, :func:`parse_duration`), a path as
it is. A wrong value stops the process with one line naming the variable.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

from salespulse.agents.detractors import DEFAULT_HUMAN_CHANNELS, DEFAULT_SLA
from salespulse.agents.forecast_calendar import FiscalCalendar
from salespulse.agents.rolling import HOUR, OUTCOME_MEMORY, RETENTION_HOURS
from salespulse.schemas.codec import MAX_CLOCK_SKEW
from salespulse.schemas.validator import SCHEMA_DIR

PREFIX: Final = "SALESPULSE_"
EMBEDDED_BROKER: Final = "127.0.0.1:9092"

#: A secret that is a URL path segment as it is: unreserved characters only, long enough.
SALESFORCE_SECRET = re.compile(r"[A-Za-z0-9._~-]{24,}")


class SettingsError(ValueError):
    """A ``SALESPULSE_*`` variable has a value that cannot be used."""


class Secret(str):
    """A secret setting: a string everywhere it is used, ``'***'`` wherever it is shown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'" if self else "''"


#: The shortest token accepted: ``secrets.token_urlsafe(32)`` gives 43 characters.
MIN_SECRET_CHARS = 24
#: Values copied from examples and tutorials: never accepted as a token, whatever their length.
PLACEHOLDERS = frozenset(
    {"change-me", "changeme", "change_me", "replace-me", "secret", "token", "password", "your-token-here"}
)
GENERATE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_secret(name: str, value: str) -> None:
    """Refuse a token that is a known placeholder or shorter than :data:`MIN_SECRET_CHARS`."""
    if value.strip().lower() in PLACEHOLDERS:
        raise SettingsError(f"{name} is a placeholder ({value!r}); generate a token with {GENERATE_TOKEN}")
    if len(value) < MIN_SECRET_CHARS:
        raise SettingsError(
            f"{name} has {len(value)} characters, fewer than {MIN_SECRET_CHARS};"
            f" generate a token with {GENERATE_TOKEN}"
        )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``1.5m``, ``24h``, ``2d`` or ``1w`` (a bare number is seconds).

    The one duration syntax: every duration setting and ``report --every`` read it.
    """
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 24h, 2d, 1w or 3600 (seconds)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """``seconds`` in the largest unit that divides it (``600`` -> ``10m``), as
    :func:`parse_duration` reads it back."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def activity_channels() -> tuple[str, ...]:
    """The channels the ``customer.activity`` contract allows, read from its schema."""
    schema = json.loads((SCHEMA_DIR / "customer.activity.schema.json").read_text(encoding="utf-8"))
    return tuple(schema["properties"]["data"]["properties"]["channel"]["enum"])


def parse_brokers(value: str) -> tuple[str, ...]:
    """Turn ``kafka://h1:9092,h2:9092`` or ``h1:9092;h2`` into ``("h1:9092", "h2:9092")``."""
    hosts: list[str] = []
    for part in value.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "://" in part:
            part = part.split("://", 1)[1]
        if ":" not in part:
            part = f"{part}:9092"
        hosts.append(part)
    if not hosts:
        raise SettingsError(f"SALESPULSE_BROKER={value!r} names no broker")
    return tuple(hosts)


#: A duration, written as :func:`parse_duration` reads it: seconds, and whole seconds.
Duration = Annotated[float, Meta(extra={"duration": True})]
Seconds = Annotated[int, Meta(extra={"duration": True})]
#: A comma-separated list.
Names = tuple[str, ...]


def meaning(text: str, *, shown: str | None = None, **bounds: Any) -> Meta:
    """A field's documentation (``docs/configuration.md``) and bounds; ``shown`` replaces the
    default in the docs where the value alone would mislead (it depends on other settings)."""
    return Meta(description=" ".join(text.split()), extra={"shown": shown} if shown else {}, **bounds)


# Variables whose name is not the field's upper-cased: the names the docs always had.
_RENAMED: Final = {"brokers": "BROKER", "targets_file": "TARGETS", "connectors_file": "CONNECTORS"}


class Settings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename=lambda name: PREFIX + _RENAMED.get(name, name.upper()),
):
    """Everything a SalesPulse process can be configured with."""

    brokers: Annotated[
        tuple[str, ...],
        meaning(
            "`host:port` or `kafka://host:port`, comma-separated for a cluster (faust gets them"
            " joined with `;`, kafka-python a list)"
        ),
    ] = (EMBEDDED_BROKER,)
    web_host: Annotated[str, meaning("address of the worker's HTTP server")] = "127.0.0.1"
    web_port: Annotated[int, meaning("port of the worker's HTTP server", ge=1, le=65535)] = 6066
    data_dir: Annotated[
        Path,
        meaning(
            "the worker's local directory (broker identity marker, [state"
            " snapshot](operations.md#local-state-snapshot), the generated `ingest-token`)"
        ),
    ] = Path("data")
    ingest_token: Annotated[
        Secret,
        meaning(
            "the token every endpoint but `/metrics`, `/healthz` and `/readyz` needs, as"
            " `Authorization: Bearer <token>` or as the password of HTTP Basic (for browsers). At"
            " least 24 characters and not a placeholder such as `change-me`, or the worker stops at"
            " start. Empty: the worker generates one into `SALESPULSE_DATA_DIR/ingest-token`, which"
            " the CLI on the same machine reads. See [Access](#access)",
            shown="generated",
        ),
    ] = Secret("")
    metrics_token: Annotated[
        Secret,
        meaning(
            "when set, `/metrics` needs it too (same rules); Prometheus sends it with"
            " `authorization`. See [Access](#access)"
        ),
    ] = Secret("")
    partitions: Annotated[int, meaning("partitions of every input topic and of the changelog", ge=1)] = 4
    replication_factor: Annotated[
        Annotated[int, Meta(ge=1)] | None,
        meaning(
            "replicas of every topic SalesPulse creates (the `crm.*` topics, the dead letters, the"
            " changelog, faust's leader topic, the probe, the connector state); a worker or"
            " connector refuses to start on a cluster with fewer brokers or on its topics with"
            " fewer replicas. See [Topics and replication](operations.md#topics-and-replication)"
            " and `salespulse topics plan`",
            shown="`1` on the embedded broker, else `3`",
        ),
    ] = None
    targets_file: Annotated[
        Path | None,
        meaning("YAML file of monthly lead targets per (region, rep)"),
    ] = None
    connectors_file: Annotated[
        Path | None,
        meaning(
            "YAML mapping file for the connectors (owner ids to reps, places to regions, lead"
            " sources, deal types, currency, product, survey teams, customer-id fields, vtiger's"
            " closing stages); without it, built-in defaults. See [the mapping"
            " file](connectors.md#the-mapping-file)"
        ),
    ] = None
    workers: Annotated[
        Names,
        meaning(
            "workers `salespulse kpis`, `report` and the worker's `GET /report` page merge"
            " (by default the local worker)",
            shown="`127.0.0.1:<SALESPULSE_WEB_PORT>`",
        ),
    ] = ()
    clock: Annotated[
        str,
        meaning(
            "`wall`, `stream` or a fixed RFC 3339 time; a fixed time is the vtiger connector's clock"
            " too (what is planned, what is past the retention), `stream` is the wall clock there"
        ),
    ] = "wall"
    max_clock_skew: Annotated[
        Seconds,
        meaning(
            "how far an event's `occurred_at` may run ahead of its Kafka record's timestamp before"
            " it is [refused as `future`](semantics.md#events-from-the-future) (whatever the clock),"
            " and how far a read's `at` may run ahead of the worker's clock",
            ge=0,
        ),
    ] = MAX_CLOCK_SKEW
    outcome_memory: Annotated[
        Seconds,
        meaning(
            "how long a deal's win, a deal's loss and a survey response are remembered after the"
            " event time of their first copy: another copy within it is a"
            " [duplicate](semantics.md#deal-outcomes) (a repeat, for a response), whatever its"
            " event id and time. At least the 62-day retention (`62d`); each remembered outcome"
            " costs a worker about 25 bytes of memory",
            ge=RETENTION_HOURS * HOUR,
        ),
    ] = OUTCOME_MEMORY
    end_offsets: Annotated[
        Literal["auto", "fetch", "listoffsets"],
        meaning(
            "`auto` probes the broker at start-up; `fetch` always reads end offsets from Fetch"
            " high watermarks; `listoffsets` trusts ListOffsets"
        ),
    ] = "auto"
    label_cap: Annotated[
        int, meaning("distinct values per label per worker before folding into `other`", ge=1)
    ] = 50
    #: 25,000 against 2,000 lifted the bench by a quarter; larger gained nothing. 15,000
    #: measured the same `vs_raw` as 25,000, and a fetch's records, changelog records and
    #: producer batches, alive together, peak 8-11 MB lower at a million customers.
    fetch_records: Annotated[
        int,
        meaning(
            "most records one fetch hands to the engine; larger fetches write fewer changelog"
            " records an event, smaller ones lower the worker's peak memory (see [fetch size and"
            " memory](benchmark.md#fetch-size-and-memory))",
            ge=1,
        ),
    ] = 15_000
    commit_interval: Annotated[
        Duration,
        meaning(
            "time between commits of consumed offsets; longer means more records replayed (and"
            " skipped by their applied offsets) after a crash, never a lost one",
            gt=0,
        ),
    ] = 1.0
    snapshot_interval: Annotated[
        Duration,
        meaning(
            "time between images of each partition's state in the [local state"
            " snapshot](operations.md#local-state-snapshot); a restart replays only the changelog"
            " written after the last one; `0` turns the snapshot off (every restart replays the"
            " whole changelog)",
            ge=0,
        ),
    ] = 30.0
    app_id: Annotated[
        str, meaning("the faust application id: the consumer group and the changelog's prefix")
    ] = "salespulse"
    max_body_bytes: Annotated[int, meaning("largest `POST /events` body accepted", ge=1)] = 8 * 1024 * 1024
    max_event_bytes: Annotated[int, meaning("largest event accepted, on a topic or over HTTP", ge=1)] = (
        64 * 1024
    )
    max_json_depth: Annotated[int, meaning("deepest nesting of an event accepted over HTTP", ge=1)] = 32
    broker_timeout: Annotated[
        Duration, meaning("how long to wait for the broker (ingest, SDK, emit)", gt=0)
    ] = 10.0
    security_protocol: Annotated[
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        meaning("`SSL`, `SASL_PLAINTEXT` or `SASL_SSL` for a real cluster"),
    ] = "PLAINTEXT"
    sasl_mechanism: Annotated[str, meaning("SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, ...)")] = ""
    sasl_username: Annotated[str, meaning("SASL user name")] = ""
    sasl_password: Annotated[Secret, meaning("SASL password")] = Secret("")
    ssl_cafile: Annotated[str, meaning("CA bundle for TLS to the brokers")] = ""
    public_url: Annotated[
        str,
        meaning(
            "the workers' external base URL (`https://sp.example.com`); the HubSpot signature"
            " covers the URL HubSpot called. Empty: the request's own scheme and host"
        ),
    ] = ""
    hubspot_client_secret: Annotated[
        Secret,
        meaning(
            "HubSpot app's client secret; enables `POST /webhooks/hubspot` (with the token)."
            " See [HubSpot](connectors.md#hubspot)"
        ),
    ] = Secret("")
    hubspot_token: Annotated[
        Secret, meaning("HubSpot private-app token, for reading deals, contacts, companies and pipelines")
    ] = Secret("")
    hubspot_api: Annotated[str, meaning("HubSpot's CRM API base URL")] = "https://api.hubapi.com"
    salesforce_org_id: Annotated[
        str,
        meaning(
            "the Salesforce org (15 or 18 characters) whose Outbound Messages the endpoint accepts,"
            " checked after the secret"
        ),
    ] = ""
    salesforce_secret: Annotated[
        Secret,
        meaning(
            "the last segment of the Outbound Message's endpoint URL, `POST"
            " /webhooks/salesforce/<secret>` (at least 24 of `A-Z a-z 0-9 - _ . ~`: `openssl rand -hex"
            " 32`); enables the endpoint (with the org id). See [Salesforce](connectors.md#salesforce)"
        ),
    ] = Secret("")
    pipedrive_user: Annotated[
        str,
        meaning(
            "the HTTP Basic user set on the Pipedrive webhooks; with the password, enables"
            " `POST /webhooks/pipedrive`. See [Pipedrive](connectors.md#pipedrive)"
        ),
    ] = ""
    pipedrive_password: Annotated[
        Secret, meaning("the HTTP Basic password set on the Pipedrive webhooks")
    ] = Secret("")
    delighted_api_key: Annotated[
        Secret,
        meaning(
            "Delighted API key, which signs its webhooks; enables `POST /webhooks/delighted`."
            " See [Delighted](connectors.md#delighted)"
        ),
    ] = Secret("")
    typeform_secret: Annotated[
        Secret,
        meaning(
            "the Typeform webhook's secret; enables `POST /webhooks/typeform` (with the score"
            " field). See [Typeform](connectors.md#typeform)"
        ),
    ] = Secret("")
    typeform_score_field: Annotated[str, meaning("field id or ref of the NPS question")] = ""
    typeform_customer_field: Annotated[str, meaning("hidden field holding the customer id")] = "customer_id"
    typeform_comment_field: Annotated[str, meaning("field id or ref of an optional comment question")] = ""
    locale: Annotated[
        str,
        meaning(
            "language of the digest and of `GET /report`'s default: `en` or `fa` (Persian: Jalali"
            " dates, Persian digits, right to left); one catalogue file per language in"
            " `streams/report/locales/`. See [Languages](digest.md#languages)",
            pattern="^[A-Za-z]+$",
        ),
    ] = "en"
    reporting_currency: Annotated[
        str,
        meaning(
            "the ISO code every amount is also added up in (`EUR`; rials are `IRR`, shown as Toman"
            " by `SALESPULSE_DISPLAY_UNIT`): the `*_reporting` series, and the digest, `/report` and"
            " `salespulse kpis` show it first. Empty: no conversion, no reporting series. See"
            " [Money](semantics.md#money)",
            pattern="^([A-Z]{3})?$",
        ),
    ] = ""
    fx_rates: Annotated[
        Path | None,
        meaning(
            "the rates file: CSV with the header `date,currency,rate`, one line per UTC day a rate"
            " starts (`2026-11-01,USD,0.90`: 1 USD is 0.90 of the reporting currency);"
            " `IRT`/`IRHR`/`IRHT` lines are per Toman / 1,000 / 10,000 rials. Checked at start (a"
            " bad file stops the worker naming the line); read again within seconds when it"
            " changes, without a restart, and a bad new file keeps the old rates"
            " (`salespulse_fx_rates_file_valid` 0). Needs `SALESPULSE_REPORTING_CURRENCY`"
        ),
    ] = None
    display_unit: Annotated[
        Literal["", "toman", "rial"],
        meaning(
            'how the digest and `/report` show rial amounts: `toman` (a tenth, "تومان"/"Toman")'
            " or `rial` (IRR). Amounts are stored and exported in rials either way",
            shown="`toman` for `fa`, else `rial`",
        ),
    ] = ""
    detractor_sla: Annotated[
        Seconds,
        meaning(
            "follow-up target for a detractor case: a case open longer is overdue"
            " (`salespulse_detractors_overdue`, alert SalesPulseDetractorsUnanswered)",
            gt=0,
        ),
    ] = DEFAULT_SLA
    human_channels: Annotated[
        Names,
        meaning(
            "`customer.activity` channels that follow a detractor up (comma-separated, from the"
            " contract's channels)"
        ),
    ] = DEFAULT_HUMAN_CHANNELS
    fiscal_calendar: Annotated[
        str,
        meaning(
            "the forecast's calendar: `gregorian` (fiscal year from January), `gregorian:N` (from"
            " month N) or `jalali` (from 1 Farvardin); see [Forecast](forecast.md)"
        ),
    ] = "gregorian"
    vtiger_url: Annotated[
        str,
        meaning(
            "the vtiger CRM's base URL, as in the browser without `/index.php`"
            " (`https://crm.example.com`), for `salespulse connect vtiger`; see"
            " [vtiger](connectors.md#vtiger)"
        ),
    ] = ""
    vtiger_user: Annotated[str, meaning("the vtiger user name the connector logs in as")] = ""
    vtiger_access_key: Annotated[
        Secret, meaning("that user's access key (My Preferences), not the password")
    ] = Secret("")
    vtiger_poll: Annotated[
        Duration, meaning("time between polls of vtiger: how far behind the boards can be", gt=0)
    ] = 60.0
    vtiger_timezone: Annotated[
        str,
        meaning(
            "IANA zone of vtiger's zone-less times (`Asia/Tehran`); see [checking the time"
            " zone](connectors.md#checking-vtigers-time-zone)"
        ),
    ] = "UTC"
    vtiger_since: Annotated[
        str,
        meaning(
            "how far back a first start reads: an ISO date or time (`2026-01-01`, in vtiger's"
            " zone unless it names one); empty: the 62-day bucket retention"
        ),
    ] = ""
    connector_port: Annotated[
        int,
        meaning(
            "the connector's own HTTP port (`/metrics`, `/healthz`), on `SALESPULSE_WEB_HOST`", ge=1, le=65535
        ),
    ] = 6067

    def __post_init__(self) -> None:
        # Checks that span fields or need more than a type; msgspec reports a ValueError
        # raised here as a ValidationError, which from_env turns into one line.
        for name, secret in (
            ("SALESPULSE_INGEST_TOKEN", self.ingest_token),
            ("SALESPULSE_METRICS_TOKEN", self.metrics_token),
        ):
            if secret:
                check_secret(name, secret)
        known = activity_channels()
        unknown = [c for c in self.human_channels if c not in known]
        if not self.human_channels or unknown:
            raise SettingsError(f"SALESPULSE_HUMAN_CHANNELS: channels must be some of {', '.join(known)}")
        if self.salesforce_secret and not SALESFORCE_SECRET.fullmatch(self.salesforce_secret):
            raise SettingsError(
                "SALESPULSE_SALESFORCE_SECRET must be at least 24 letters, digits, '-', '_', '.' or '~' "
                "(it is a URL path segment): generate one with `openssl rand -hex 32`"
            )
        try:
            FiscalCalendar.parse(self.fiscal_calendar)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        try:
            ZoneInfo(self.vtiger_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"SALESPULSE_VTIGER_TIMEZONE={self.vtiger_timezone!r} is not an IANA time zone"
            ) from None
        if self.reporting_currency == "IRT":  # the pattern lets it through: it is 3 letters
            raise SettingsError(
                "SALESPULSE_REPORTING_CURRENCY=IRT: report in IRR; SALESPULSE_DISPLAY_UNIT=toman"
                " shows rials as Toman"
            )
        if self.fx_rates is not None and not self.reporting_currency:
            raise SettingsError(
                "SALESPULSE_FX_RATES is set but SALESPULSE_REPORTING_CURRENCY is not: set both"
            )
        if self.vtiger_since:
            try:
                self.vtiger_since_time()
            except ValueError:
                raise SettingsError(
                    f"SALESPULSE_VTIGER_SINCE={self.vtiger_since!r} is not an ISO date or date and time"
                ) from None

    @property
    def embedded(self) -> bool:
        """True when the broker is the embedded Tansu one (loopback, no TLS/SASL)."""
        return self.security_protocol == "PLAINTEXT" and all(
            host.split(":")[0] in {"127.0.0.1", "localhost"} for host in self.brokers
        )

    @property
    def replication(self) -> int:
        """``SALESPULSE_REPLICATION_FACTOR``, else 1 on the embedded broker and 3 on a cluster.

        A real cluster loses a single replica's data with its broker, and managed Kafka
        services refuse topics with fewer than 3 replicas.
        """
        if self.replication_factor is not None:
            return self.replication_factor
        return 1 if self.embedded else 3

    @property
    def worker_addresses(self) -> tuple[str, ...]:
        """``SALESPULSE_WORKERS``, else the local worker, wherever it listens."""
        return self.workers or (f"127.0.0.1:{self.web_port}",)

    @property
    def faust_broker(self) -> str:
        """faust wants one URL with hosts joined by ``;``."""
        return "kafka://" + ";".join(self.brokers)

    @property
    def kafka_python_config(self) -> dict[str, Any]:
        """Connection keywords shared by every kafka-python client."""
        config: dict[str, Any] = {
            "bootstrap_servers": list(self.brokers),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = str(self.sasl_password)
        if self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        return config

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply CLI flags; a ``None`` flag means "not given" and keeps the setting."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "brokers" in given and isinstance(given["brokers"], str):
            given["brokers"] = parse_brokers(given["brokers"])
        return msgspec.structs.replace(self, **given)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``SALESPULSE_*`` variables; unset (or empty) ones keep the defaults."""
        return read(cls, os.environ if env is None else env, {"brokers": parse_brokers})

    def shows_toman(self, locale: str | None = None) -> bool:
        """Whether rial amounts are shown as Toman: ``SALESPULSE_DISPLAY_UNIT``, else in Persian."""
        if self.display_unit:
            return self.display_unit == "toman"
        return (locale or self.locale) == "fa"

    def vtiger_since_time(self) -> datetime | None:
        """``SALESPULSE_VTIGER_SINCE`` as an aware time (a bare date or time is in vtiger's zone)."""
        if not self.vtiger_since:
            return None
        moment = datetime.fromisoformat(self.vtiger_since)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo(self.vtiger_timezone))


S = TypeVar("S", bound=msgspec.Struct)

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _flag(text: str) -> bool:
    word = text.lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ValueError("is not 0 or 1 (or true/false, yes/no, on/off)")


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({v.strip() for v in text.split(",") if v.strip()}))


def _decode(kind: type, value: Any) -> Any:
    """The types msgspec leaves to its caller: paths and secrets, from their text."""
    if kind is Path:
        return Path(value)
    if kind is Secret:
        return Secret(value)
    raise NotImplementedError(kind)  # msgspec's dec_hook protocol: "not a type this hook knows"


def _fields(cls: type[msgspec.Struct]) -> list[tuple[msgspec.structs.FieldInfo, Any]]:
    """Each field with msgspec's description of its type (bounds, docs, markers)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return list(zip(msgspec.structs.fields(cls), (f.type for f in info.fields), strict=True))


def _reader(kind: Any) -> Callable[[str], Any] | None:
    """How a variable's text becomes what msgspec converts: a duration, a list, a flag."""
    if isinstance(kind, msgspec.inspect.Metadata):
        if (kind.extra or {}).get("duration"):
            return parse_duration
        kind = kind.type
    if isinstance(kind, msgspec.inspect.VarTupleType):
        return _names
    if isinstance(kind, msgspec.inspect.BoolType):
        return _flag
    return None  # msgspec converts the text itself ("8" to 8)


def read(
    cls: type[S], env: Mapping[str, str], parsers: Mapping[str, Callable[[str], Any]] | None = None
) -> S:
    """Build ``cls`` from the variables in ``env`` that are set and not empty.

    A field named in ``parsers`` is read by its parser, a duration by :func:`parse_duration`,
    a list split at commas, a flag from 0/1; msgspec converts the rest and checks every bound.
    Any error is one line naming the variable.
    """
    given: dict[str, Any] = {}
    for field, kind in _fields(cls):
        raw = env.get(field.encode_name, "").strip()
        if not raw:
            continue
        parser = (parsers or {}).get(field.name) or _reader(kind)
        try:
            given[field.encode_name] = raw if parser is None else parser(raw)
        except ValueError as exc:
            raise SettingsError(
                f"{field.encode_name}={_shown_value(field.encode_name, raw)}: {exc}"
            ) from None
    try:
        return msgspec.convert(given, cls, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        raise SettingsError(_one_line(cls, exc, env)) from None


def _shown_value(name: str, raw: str) -> str:
    return "'***'" if name.endswith(("_TOKEN", "_PASSWORD", "_SECRET", "_KEY")) else repr(raw)


def _one_line(cls: type[msgspec.Struct], exc: msgspec.ValidationError, env: Mapping[str, str]) -> str:
    """msgspec's ``Expected `int` >= 1 - at `$.SALESPULSE_PARTITIONS``` as
    ``SALESPULSE_PARTITIONS='0': expected `int` >= 1``."""
    what, _, where = str(exc).rpartition(" - at `$.")
    if not what:
        return str(exc)  # a check of __post_init__: it names its variable itself
    name = where.rstrip("`")
    kind = next((k for f, k in _fields(cls) if f.encode_name == name), None)
    if isinstance(kind, msgspec.inspect.Metadata):
        if (kind.extra or {}).get("duration") and what.startswith("Expected `int`, got"):
            what = "expected whole seconds"
        kind = kind.type
    if isinstance(kind, msgspec.inspect.LiteralType):
        field = next(f.name for f in msgspec.structs.fields(cls) if f.encode_name == name)
        choices = [str(c) for c in _choices(get_type_hints(cls)[field]) if c != ""]  # "" is unset
        what += f" (one of {', '.join(choices)})"
    return f"{name}={_shown_value(name, env.get(name, '').strip())}: {what[:1].lower()}{what[1:]}"


def _choices(hint: Any) -> tuple[Any, ...]:
    """The values of a ``Literal``, in the order declared, inside any ``Annotated``."""
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    return get_args(hint)


def markdown_table(*classes: type[msgspec.Struct]) -> str:
    """The ``| variable | default | meaning |`` table of ``docs/configuration.md``, one row a
    variable, from the declarations of ``classes``."""
    rows = ["| variable | default | meaning |", "|----------|---------|---------|"]
    for cls in classes:
        for field, kind in _fields(cls):
            extra = kind.extra or {} if isinstance(kind, msgspec.inspect.Metadata) else {}
            doc = kind.extra_json_schema or {} if isinstance(kind, msgspec.inspect.Metadata) else {}
            shown = extra.get("shown") or _shown_default(field.default, bool(extra.get("duration")))
            text = doc.get("description", "")
            if _is_secret(kind):
                text += "; secret, masked wherever settings are shown"
            elif extra.get("duration"):
                text += "; a duration (`90s`, `10m`, `24h`, `2d`, `1w`; a bare number is seconds)"
            rows.append(f"| `{field.encode_name}` | {shown} | {text} |")
    return "\n".join(rows) + "\n"


def shown_values(settings: msgspec.Struct) -> list[tuple[str, str]]:
    """Each variable of ``settings`` with its value as a variable would hold it; secrets masked."""
    shown = []
    for field, kind in _fields(type(settings)):
        value = getattr(settings, field.name)
        if _is_secret(kind):
            text = "***" if value else ""
        elif isinstance(value, tuple):
            text = ",".join(value)
        elif value is None:
            text = ""
        elif isinstance(value, bool):
            text = "1" if value else "0"
        else:
            text = str(value)
        shown.append((field.encode_name, text))
    return shown


def _is_secret(kind: Any) -> bool:
    if isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    return isinstance(kind, msgspec.inspect.CustomType) and kind.cls is Secret


def _shown_default(value: Any, duration: bool) -> str:
    if value is None or value == "" or value == () or value is msgspec.NODEFAULT:
        return "empty"
    if duration:
        return f"`{format_duration(value)}`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    return f"`{value}`"
