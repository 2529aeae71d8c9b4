"""The one typed settings object, read from ``SALESPULSE_*`` variables.

Every process (worker, CLI, tests) builds a :class:`Settings` here instead of reading the
environment itself, so defaults live in one place and secrets never reach a log line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from salespulse.agents.detractors import DEFAULT_HUMAN_CHANNELS, DEFAULT_SLA
from salespulse.schemas.validator import SCHEMA_DIR
from salespulse.streams.pipeline.codec import MAX_CLOCK_SKEW

EMBEDDED_BROKER = "127.0.0.1:9092"
SECRET_FIELDS = frozenset(
    {
        "ingest_token",
        "metrics_token",
        "sasl_password",
        "hubspot_client_secret",
        "hubspot_token",
        "pipedrive_password",
        "salesforce_secret",
        "delighted_api_key",
        "typeform_secret",
        "vtiger_access_key",
    }
)


#: A secret that is a URL path segment as it is: unreserved characters only, long enough.
SALESFORCE_SECRET = re.compile(r"[A-Za-z0-9._~-]{24,}")


class SettingsError(ValueError):
    """A ``SALESPULSE_*`` variable has a value that cannot be used."""


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


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, value: str) -> int:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``2d``."""
    raw = value.strip().lower()
    unit = _DURATION_UNITS.get(raw[-1:], 0)
    digits = raw[:-1] if unit else raw
    if not digits.isdigit() or int(digits) < 1:
        raise SettingsError(f"{name}={value!r} is not a duration such as 24h, 30m, 2d or 3600 (seconds)")
    return int(digits) * (unit or 1)


def activity_channels() -> tuple[str, ...]:
    """The channels the ``customer.activity`` contract allows, read from its schema."""
    schema = json.loads((SCHEMA_DIR / "customer.activity.schema.json").read_text(encoding="utf-8"))
    return tuple(schema["properties"]["data"]["properties"]["channel"]["enum"])


def _channels(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if not raw:
        return default
    channels = tuple(sorted({c.strip() for c in raw.split(",") if c.strip()}))
    known = activity_channels()
    unknown = [c for c in channels if c not in known]
    if not channels or unknown:
        raise SettingsError(f"{name}={raw!r}: channels must be some of {', '.join(known)}")
    return channels


Number = TypeVar("Number", int, float)


def _number(env: Mapping[str, str], name: str, default: Number, kind: type[Number]) -> Number:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int)


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


@dataclass(frozen=True)
class Settings:
    """Everything a SalesPulse process can be configured with."""

    brokers: tuple[str, ...] = (EMBEDDED_BROKER,)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path("data")
    ingest_token: str = ""
    #: Protects ``/metrics`` too when set (Prometheus sends it with ``authorization``).
    metrics_token: str = ""
    partitions: int = 4
    #: Replicas of every topic SalesPulse creates; None: 1 on the embedded broker, else 3.
    replication_factor: int | None = None
    targets_file: Path | None = None
    #: The connectors' mapping file (owners, regions, sources, kinds, ...); None: built-in defaults.
    connectors_file: Path | None = None
    workers: tuple[str, ...] = ("127.0.0.1:6066",)
    clock: str = "wall"
    #: Seconds an event's ``occurred_at`` may run ahead of its record's timestamp (beyond:
    #: dead-lettered as ``future``), and a read's ``at`` ahead of the worker's clock.
    max_clock_skew: int = MAX_CLOCK_SKEW
    end_offsets: str = "auto"
    label_cap: int = 50
    #: Most records one fetch hands to the engine. A fetch is one engine call and one
    #: changelog write per partition: the larger, the more events share a bucket record.
    #: 25,000 against 2,000 lifted the bench by a quarter; larger gained nothing. 15,000
    #: measured the same `vs_raw` as 25,000, and a fetch's records, changelog records and
    #: producer batches, alive together, peak 8-11 MB lower at a million customers.
    fetch_records: int = 15_000
    #: Seconds between commits of consumed offsets. Longer means more records replayed
    #: (and skipped by their applied offsets) after a crash, never a lost one.
    commit_interval: float = 1.0
    #: Seconds between images of a partition's state in the local snapshot under ``data_dir``
    #: (a restart replays only the changelog written after it); 0 turns snapshots off.
    snapshot_interval: float = 30.0
    app_id: str = "salespulse"
    max_body_bytes: int = 8 * 1024 * 1024
    max_event_bytes: int = 64 * 1024
    max_json_depth: int = 32
    broker_timeout: float = 10.0
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    #: The worker's external base URL (``https://sp.example.com``): the URL HubSpot signs.
    public_url: str = ""
    hubspot_client_secret: str = ""
    hubspot_token: str = ""
    hubspot_api: str = "https://api.hubapi.com"
    salesforce_org_id: str = ""
    #: The last segment of the Outbound Message URL (``/webhooks/salesforce/<secret>``).
    salesforce_secret: str = field(default="", repr=False)
    pipedrive_user: str = ""
    pipedrive_password: str = ""
    delighted_api_key: str = ""
    typeform_secret: str = ""
    typeform_score_field: str = ""
    typeform_customer_field: str = "customer_id"
    typeform_comment_field: str = ""
    #: The digest's language: a catalogue file in streams/report/locales (``en``, ``fa``).
    locale: str = "en"
    #: Seconds a detractor case may stay open before it is overdue.
    detractor_sla: int = DEFAULT_SLA
    #: ``customer.activity`` channels that count as a human follow-up of a detractor.
    human_channels: tuple[str, ...] = DEFAULT_HUMAN_CHANNELS
    #: The vtiger CRM the ``connect vtiger`` poller reads (its base URL), and as whom.
    vtiger_url: str = ""
    vtiger_user: str = ""
    vtiger_access_key: str = field(default="", repr=False)
    #: Seconds between two polls of vtiger: how far behind the boards can be.
    vtiger_poll: float = 60.0
    #: The zone of vtiger's zone-less ``YYYY-MM-DD HH:MM:SS`` times (UTC unless changed).
    vtiger_timezone: str = "UTC"
    #: How far back a first start reads (ISO date or time); empty: the 62-day bucket retention.
    vtiger_since: str = ""
    #: The connector's own HTTP port, for ``/metrics`` and ``/healthz``.
    connector_port: int = 6067

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

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
            config["sasl_plain_password"] = self.sasl_password
        if self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        return config

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply CLI flags; a ``None`` flag means "not given" and keeps the setting."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "brokers" in given and isinstance(given["brokers"], str):
            given["brokers"] = parse_brokers(given["brokers"])
        return dataclasses.replace(self, **given)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``SALESPULSE_*`` variables; unset ones keep the defaults."""
        env = os.environ if env is None else env
        defaults = cls()
        targets = env.get("SALESPULSE_TARGETS")
        workers = env.get("SALESPULSE_WORKERS")
        connectors = env.get("SALESPULSE_CONNECTORS")
        web_port = _int(env, "SALESPULSE_WEB_PORT", defaults.web_port)
        settings = cls(
            brokers=parse_brokers(env["SALESPULSE_BROKER"])
            if env.get("SALESPULSE_BROKER")
            else defaults.brokers,
            web_host=env.get("SALESPULSE_WEB_HOST") or defaults.web_host,
            web_port=web_port,
            data_dir=Path(env.get("SALESPULSE_DATA_DIR") or defaults.data_dir),
            ingest_token=env.get("SALESPULSE_INGEST_TOKEN", ""),
            metrics_token=env.get("SALESPULSE_METRICS_TOKEN", ""),
            partitions=_int(env, "SALESPULSE_PARTITIONS", defaults.partitions),
            replication_factor=_int(env, "SALESPULSE_REPLICATION_FACTOR", 0)
            if env.get("SALESPULSE_REPLICATION_FACTOR")
            else None,
            targets_file=Path(targets) if targets else None,
            connectors_file=Path(connectors) if connectors else None,
            workers=tuple(w.strip() for w in workers.split(",") if w.strip())
            if workers
            else (f"127.0.0.1:{web_port}",),  # the local worker, wherever it listens
            clock=env.get("SALESPULSE_CLOCK") or defaults.clock,
            max_clock_skew=parse_duration("SALESPULSE_MAX_CLOCK_SKEW", env["SALESPULSE_MAX_CLOCK_SKEW"])
            if env.get("SALESPULSE_MAX_CLOCK_SKEW")
            else defaults.max_clock_skew,
            end_offsets=env.get("SALESPULSE_END_OFFSETS") or defaults.end_offsets,
            label_cap=_int(env, "SALESPULSE_LABEL_CAP", defaults.label_cap),
            fetch_records=_int(env, "SALESPULSE_FETCH_RECORDS", defaults.fetch_records),
            commit_interval=_number(env, "SALESPULSE_COMMIT_INTERVAL", defaults.commit_interval, float),
            snapshot_interval=_number(env, "SALESPULSE_SNAPSHOT_INTERVAL", defaults.snapshot_interval, float),
            broker_timeout=_number(env, "SALESPULSE_BROKER_TIMEOUT", defaults.broker_timeout, float),
            security_protocol=env.get("SALESPULSE_SECURITY_PROTOCOL") or defaults.security_protocol,
            sasl_mechanism=env.get("SALESPULSE_SASL_MECHANISM", ""),
            sasl_username=env.get("SALESPULSE_SASL_USERNAME", ""),
            sasl_password=env.get("SALESPULSE_SASL_PASSWORD", ""),
            ssl_cafile=env.get("SALESPULSE_SSL_CAFILE", ""),
            public_url=env.get("SALESPULSE_PUBLIC_URL", ""),
            hubspot_client_secret=env.get("SALESPULSE_HUBSPOT_CLIENT_SECRET", ""),
            hubspot_token=env.get("SALESPULSE_HUBSPOT_TOKEN", ""),
            hubspot_api=env.get("SALESPULSE_HUBSPOT_API") or defaults.hubspot_api,
            salesforce_org_id=env.get("SALESPULSE_SALESFORCE_ORG_ID", ""),
            salesforce_secret=env.get("SALESPULSE_SALESFORCE_SECRET", "").strip(),
            pipedrive_user=env.get("SALESPULSE_PIPEDRIVE_USER", ""),
            pipedrive_password=env.get("SALESPULSE_PIPEDRIVE_PASSWORD", ""),
            delighted_api_key=env.get("SALESPULSE_DELIGHTED_API_KEY", ""),
            typeform_secret=env.get("SALESPULSE_TYPEFORM_SECRET", ""),
            typeform_score_field=env.get("SALESPULSE_TYPEFORM_SCORE_FIELD", ""),
            typeform_customer_field=env.get("SALESPULSE_TYPEFORM_CUSTOMER_FIELD")
            or defaults.typeform_customer_field,
            typeform_comment_field=env.get("SALESPULSE_TYPEFORM_COMMENT_FIELD", ""),
            locale=env.get("SALESPULSE_LOCALE") or defaults.locale,
            detractor_sla=parse_duration("SALESPULSE_DETRACTOR_SLA", env["SALESPULSE_DETRACTOR_SLA"])
            if env.get("SALESPULSE_DETRACTOR_SLA")
            else defaults.detractor_sla,
            human_channels=_channels(env, "SALESPULSE_HUMAN_CHANNELS", defaults.human_channels),
            vtiger_url=env.get("SALESPULSE_VTIGER_URL", "").strip(),
            vtiger_user=env.get("SALESPULSE_VTIGER_USER", "").strip(),
            vtiger_access_key=env.get("SALESPULSE_VTIGER_ACCESS_KEY", "").strip(),
            vtiger_poll=_number(env, "SALESPULSE_VTIGER_POLL", defaults.vtiger_poll, float),
            vtiger_timezone=env.get("SALESPULSE_VTIGER_TIMEZONE") or defaults.vtiger_timezone,
            vtiger_since=env.get("SALESPULSE_VTIGER_SINCE", "").strip(),
            connector_port=_int(env, "SALESPULSE_CONNECTOR_PORT", defaults.connector_port),
        )
        for name, secret in (
            ("SALESPULSE_INGEST_TOKEN", settings.ingest_token),
            ("SALESPULSE_METRICS_TOKEN", settings.metrics_token),
        ):
            if secret:
                check_secret(name, secret)
        if settings.partitions < 1:
            raise SettingsError("SALESPULSE_PARTITIONS must be at least 1")
        if settings.replication_factor is not None and settings.replication_factor < 1:
            raise SettingsError("SALESPULSE_REPLICATION_FACTOR must be at least 1")
        if settings.end_offsets not in {"auto", "fetch", "listoffsets"}:
            raise SettingsError("SALESPULSE_END_OFFSETS must be auto, fetch or listoffsets")
        if settings.label_cap < 1:
            raise SettingsError("SALESPULSE_LABEL_CAP must be at least 1")
        if settings.fetch_records < 1:
            raise SettingsError("SALESPULSE_FETCH_RECORDS must be at least 1")
        if not (settings.locale.isascii() and settings.locale.isalpha()):
            raise SettingsError(
                f"SALESPULSE_LOCALE={settings.locale!r} is not a language code such as en or fa"
            )
        if settings.snapshot_interval < 0:
            raise SettingsError("SALESPULSE_SNAPSHOT_INTERVAL must be 0 (off) or more seconds")
        if settings.commit_interval <= 0:
            raise SettingsError("SALESPULSE_COMMIT_INTERVAL must be above 0 seconds")
        if settings.salesforce_secret and not SALESFORCE_SECRET.fullmatch(settings.salesforce_secret):
            raise SettingsError(
                "SALESPULSE_SALESFORCE_SECRET must be at least 24 letters, digits, '-', '_', '.' or '~' "
                "(it is a URL path segment): generate one with `openssl rand -hex 32`"
            )
        if settings.vtiger_poll <= 0:
            raise SettingsError("SALESPULSE_VTIGER_POLL must be above 0 seconds")
        try:
            ZoneInfo(settings.vtiger_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"SALESPULSE_VTIGER_TIMEZONE={settings.vtiger_timezone!r} is not an IANA time zone"
            ) from None
        if settings.vtiger_since:
            try:
                settings.vtiger_since_time()
            except ValueError:
                raise SettingsError(
                    f"SALESPULSE_VTIGER_SINCE={settings.vtiger_since!r} is not an ISO date or date and time"
                ) from None
        return settings

    def vtiger_since_time(self) -> datetime | None:
        """``SALESPULSE_VTIGER_SINCE`` as an aware time (a bare date or time is in vtiger's zone)."""
        if not self.vtiger_since:
            return None
        moment = datetime.fromisoformat(self.vtiger_since)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo(self.vtiger_timezone))
