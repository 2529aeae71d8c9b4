"""Prometheus and Alertmanager configuration, checked with the real tools.

promtool comes with the Debian package ``prometheus`` and amtool with
``prometheus-alertmanager``; a missing binary fails the test (nothing is skipped).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROM = REPO / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
ALERT_FILES = sorted((PROM / "rules").glob("alerts-*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*_test.yml"))

PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = PACKAGES[name]
        pytest.fail(
            f"{name} is not on PATH. Install the Debian package {package}: "
            f"sudo apt-get install -y --no-install-recommends {package}",
            pytrace=False,
        )
    return path


def run(*args: str | Path) -> str:
    cmd = [str(a) for a in args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{output}"
    return output


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(paths: list[Path]) -> list[dict[str, Any]]:
    return [rule for path in paths for group in load(path)["groups"] for rule in group["rules"]]


# ------------------------------------------------------------------ the real tools


def test_promtool_check_config_local() -> None:
    out = run(tool("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert f"{len(RULE_FILES)} rule files found" in out, out


def test_promtool_check_config_compose() -> None:
    run(tool("promtool"), "check", "config", "prometheus/prometheus-compose.yml")


def test_promtool_check_rules() -> None:
    assert RULE_FILES, "no rule files in prometheus/rules"
    run(tool("promtool"), "check", "rules", *(p.relative_to(REPO) for p in RULE_FILES))


def test_promtool_test_rules() -> None:
    assert TEST_FILES, "no promtool tests in prometheus/tests"
    run(tool("promtool"), "test", "rules", *(p.relative_to(REPO) for p in TEST_FILES))


def test_amtool_check_config() -> None:
    run(tool("amtool"), "check-config", "prometheus/alertmanager.yml")


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "salespulse-pager"), ("warning", "salespulse-notify"), ("info", "salespulse-notify")],
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    out = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        "--config.file=prometheus/alertmanager.yml",
        f"severity={severity}",
        "alertname=SalesPulseTest",
    )
    assert out.splitlines()[0].strip() == receiver, out


# ------------------------------------------------------------------ structure


def test_local_config_loads_every_rule_file() -> None:
    config = load(PROM / "prometheus.yml")
    listed = {(PROM / p).resolve() for p in config["rule_files"]}
    assert all(not Path(p).is_absolute() for p in config["rule_files"]), config["rule_files"]
    assert listed == {p.resolve() for p in RULE_FILES}


def test_local_and_compose_configs_agree() -> None:
    local, compose = load(PROM / "prometheus.yml"), load(PROM / "prometheus-compose.yml")
    assert local["global"] == compose["global"]
    assert compose["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    [job] = [j for j in local["scrape_configs"] if j["job_name"] == "salespulse"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:6066"]
    [job] = [j for j in compose["scrape_configs"] if j["job_name"] == "salespulse"]
    [sd] = job["dns_sd_configs"]
    assert (sd["names"], sd["type"], sd["port"]) == (["worker"], "A", 6066)


def test_recording_rules_are_named_salespulse_kpi_kind() -> None:
    names = [r["record"] for r in rules(RULE_FILES) if "record" in r]
    assert names
    bad = [n for n in names if not re.fullmatch(r"salespulse:[a-z0-9_]+:[a-z0-9_]+", n)]
    assert not bad, bad
    assert len(names) == len(set(names)), "a recording rule name is defined twice"


def test_every_threshold_is_used_by_an_alert() -> None:
    thresholds = [r["record"] for r in rules([PROM / "rules" / "thresholds.yml"])]
    assert thresholds and all(t.startswith("salespulse:threshold:") for t in thresholds)
    exprs = " ".join(r["expr"] for r in rules(ALERT_FILES))
    unused = [t for t in thresholds if not re.search(re.escape(t) + r"\b", exprs)]
    assert not unused, unused


def test_every_alert_group_has_a_test_file_with_firing_and_quiet_cases() -> None:
    for path in ALERT_FILES:
        for group in load(path)["groups"]:
            test_file = PROM / "tests" / f"{group['name']}_test.yml"
            assert test_file.exists(), f"{group['name']}: no {test_file.relative_to(REPO)}"
            cases = [case for test in load(test_file)["tests"] for case in test.get("alert_rule_test", [])]
            for rule in group["rules"]:
                name = rule["alert"]
                mine = [c for c in cases if c["alertname"] == name]
                assert any(c.get("exp_alerts") for c in mine), f"{name}: no firing case"
                assert any(not c.get("exp_alerts") for c in mine), f"{name}: no quiet case"
