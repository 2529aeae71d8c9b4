"""Settings are declared once: every variable has its type, default and bounds in one field,
its line in docs/configuration.md comes from that field, and a wrong value of any kind
stops a process with one line naming the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from salespulse.streams.report.smtp import SmtpSettings
from salespulse.streams.settings import (
    Settings,
    SettingsError,
    format_duration,
    markdown_table,
    parse_duration,
    shown_values,
)

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "configuration.md"
TOKEN = "t" * 32


def test_every_field_is_a_salespulse_variable_with_a_meaning_and_a_line_in_the_docs() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for cls in (Settings, SmtpSettings):
        for field in msgspec.structs.fields(cls):
            assert re.fullmatch(r"SALESPULSE_[A-Z0-9_]+", field.encode_name), field.name
            assert f"| `{field.encode_name}` |" in doc, f"{field.encode_name} is missing from {DOC.name}"
    for row in markdown_table(Settings, SmtpSettings).splitlines()[2:]:
        variable, default, text = (cell.strip() for cell in row.strip("|").split(" | "))
        assert default and text, f"{variable} has no default or no meaning"


def test_the_docs_table_is_the_one_generated_from_the_declarations() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert markdown_table(Settings, SmtpSettings) in doc, (
        "docs/configuration.md's table differs from the declarations: paste the output of"
        " `salespulse config --docs` over it"
    )


def test_values_valid_before_keep_their_meaning() -> None:
    settings = Settings.from_env(
        {
            "SALESPULSE_BROKER": "kafka://k1:9093;k2",
            "SALESPULSE_HUMAN_CHANNELS": "call, email",
            "SALESPULSE_DETRACTOR_SLA": "24h",
            "SALESPULSE_MAX_CLOCK_SKEW": "600",
            "SALESPULSE_SNAPSHOT_INTERVAL": "0",
            "SALESPULSE_COMMIT_INTERVAL": "0.5",
            "SALESPULSE_VTIGER_POLL": "90",
            "SALESPULSE_WORKERS": "w1:6066,w2:6066",
            "SALESPULSE_DATA_DIR": "/var/lib/salespulse",
            "SALESPULSE_REPLICATION_FACTOR": "3",
            "SALESPULSE_WEB_PORT": "7000",
            "SALESPULSE_INGEST_TOKEN": TOKEN,
            "SALESPULSE_TARGETS": "targets.yml",
        }
    )
    assert settings.brokers == ("k1:9093", "k2:9092")
    assert settings.human_channels == ("call", "email")
    assert (settings.detractor_sla, settings.max_clock_skew) == (86400, 600)
    assert (settings.snapshot_interval, settings.commit_interval, settings.vtiger_poll) == (0.0, 0.5, 90.0)
    assert settings.worker_addresses == ("w1:6066", "w2:6066")
    assert settings.data_dir == Path("/var/lib/salespulse") and settings.targets_file == Path("targets.yml")
    assert (settings.replication, settings.web_port, settings.ingest_token) == (3, 7000, TOKEN)
    # Unset and empty both keep the default; the local worker follows the web port.
    plain = Settings.from_env({"SALESPULSE_WEB_PORT": "7001", "SALESPULSE_CLOCK": ""})
    assert plain.clock == "wall" and plain.worker_addresses == ("127.0.0.1:7001",)
    assert plain.replication == 1 and plain.targets_file is None


def test_one_duration_syntax_for_every_duration() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "1.5m", "24h", "2d", "1w", " 10M ")] == [
        90,
        90,
        90,
        86400,
        172800,
        604800,
        600,
    ]
    for bad in ("", "soon", "-1h", "1y", "h", "1 h h"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)
    for seconds in (1, 30, 90, 600, 3600, 5400, 86400, 604800, 1.5):
        assert parse_duration(format_duration(seconds)) == seconds
    assert SmtpSettings.from_env({"SALESPULSE_SMTP_TIMEOUT": "1m"}).timeout == 60


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SALESPULSE_PARTITIONS", "0", "SALESPULSE_PARTITIONS='0': expected `int` >= 1"),
        ("SALESPULSE_PARTITIONS", "four", "SALESPULSE_PARTITIONS='four': expected `int`, got `str`"),
        ("SALESPULSE_WEB_PORT", "70000", "SALESPULSE_WEB_PORT='70000': expected `int` <= 65535"),
        ("SALESPULSE_COMMIT_INTERVAL", "0", "SALESPULSE_COMMIT_INTERVAL='0': expected `float` > 0.0"),
        ("SALESPULSE_BROKER_TIMEOUT", "soon", "SALESPULSE_BROKER_TIMEOUT='soon': 'soon' is not a duration"),
        ("SALESPULSE_DETRACTOR_SLA", "1.5s", "SALESPULSE_DETRACTOR_SLA='1.5s': expected whole seconds"),
        (
            "SALESPULSE_END_OFFSETS",
            "latest",
            "SALESPULSE_END_OFFSETS='latest': invalid enum value 'latest' (one of auto, fetch, listoffsets)",
        ),
        ("SALESPULSE_HUMAN_CHANNELS", "pigeon", "SALESPULSE_HUMAN_CHANNELS: channels must be some of"),
        ("SALESPULSE_INGEST_TOKEN", "change-me", "SALESPULSE_INGEST_TOKEN is a placeholder"),
        ("SALESPULSE_METRICS_TOKEN", "short", "SALESPULSE_METRICS_TOKEN has 5 characters, fewer than 24"),
        ("SALESPULSE_VTIGER_TIMEZONE", "Mars/Olympus", "is not an IANA time zone"),
        ("SALESPULSE_LOCALE", "f1", "SALESPULSE_LOCALE='f1': expected `str` matching regex"),
        (
            "SALESPULSE_REPORTING_CURRENCY",
            "eur",
            "SALESPULSE_REPORTING_CURRENCY='eur': expected `str` matching",
        ),
        ("SALESPULSE_REPORTING_CURRENCY", "IRT", "SALESPULSE_REPORTING_CURRENCY=IRT: report in IRR"),
        (
            "SALESPULSE_FX_RATES",
            "rates.csv",
            "SALESPULSE_FX_RATES is set but SALESPULSE_REPORTING_CURRENCY is not",
        ),
        (
            "SALESPULSE_DISPLAY_UNIT",
            "dinar",
            "SALESPULSE_DISPLAY_UNIT='dinar': invalid enum value 'dinar' (one of toman, rial)",
        ),
        ("SALESPULSE_SMTP_STARTTLS", "maybe", "SALESPULSE_SMTP_STARTTLS='maybe': is not 0 or 1"),
        ("SALESPULSE_SMTP_PORT", "0", "SALESPULSE_SMTP_PORT='0': expected `int` >= 1"),
    ],
)
def test_a_wrong_value_of_each_kind_is_one_line_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    cls = SmtpSettings if variable.startswith("SALESPULSE_SMTP_") else Settings
    with pytest.raises(SettingsError) as refused:
        cls.from_env({variable: value})
    error = str(refused.value)
    assert message in error and "\n" not in error, error


def test_rials_show_as_toman_in_persian_unless_the_display_unit_says_otherwise() -> None:
    assert Settings.from_env({}).shows_toman("fa") and not Settings.from_env({}).shows_toman("en")
    assert Settings.from_env({"SALESPULSE_LOCALE": "fa"}).shows_toman()
    assert not Settings.from_env({"SALESPULSE_DISPLAY_UNIT": "rial"}).shows_toman("fa")
    assert Settings.from_env({"SALESPULSE_DISPLAY_UNIT": "toman"}).shows_toman("en")
    money = Settings.from_env({"SALESPULSE_REPORTING_CURRENCY": "EUR", "SALESPULSE_FX_RATES": "fx.csv"})
    assert (money.reporting_currency, money.fx_rates) == ("EUR", Path("fx.csv"))


def test_a_secret_never_shows_its_value() -> None:
    settings = Settings.from_env({"SALESPULSE_INGEST_TOKEN": TOKEN, "SALESPULSE_SASL_PASSWORD": "hunter2"})
    assert TOKEN not in repr(settings) and "hunter2" not in repr(settings)
    assert ("SALESPULSE_INGEST_TOKEN", "***") in shown_values(settings)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"SALESPULSE_VTIGER_ACCESS_KEY": TOKEN, "SALESPULSE_PARTITIONS": "x"})
    assert TOKEN not in str(refused.value)
    smtp = SmtpSettings.from_env({"SALESPULSE_SMTP_PASSWORD": "s3cret-password"})
    assert "s3cret-password" not in repr(smtp)


def test_a_worker_with_a_wrong_value_stops_with_that_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "SALESPULSE_DATA_DIR": str(tmp_path), "SALESPULSE_PARTITIONS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "SALESPULSE_PARTITIONS='0': expected `int` >= 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_prints_the_environment_s_settings_with_secrets_masked(tmp_path: Path) -> None:
    env = {**os.environ, "SALESPULSE_INGEST_TOKEN": TOKEN, "SALESPULSE_PARTITIONS": "6"}
    done = subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "SALESPULSE_PARTITIONS=6" in lines and "SALESPULSE_INGEST_TOKEN=***" in lines
    assert TOKEN not in done.stdout and "SALESPULSE_SMTP_HOST=localhost" in lines
