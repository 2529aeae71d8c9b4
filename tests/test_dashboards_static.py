"""Static checks of the Grafana dashboards, their provisioning and the alert runbook links.

Grafana itself is not installable here; a live test runs every panel query (see
tests/dashboard_queries.py) against a real Prometheus. These checks need no server,
except that the PromQL of every panel is parsed by promtool. Every key of the JSON is
checked against Grafana's own schema, as grafana-foundation-sdk's typed models (the
build for the Grafana in docker-compose.yml) read it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard as GrafanaDashboard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_queries import VARIABLES, iter_panels, panel_queries

register_default_plugins()  # the SDK's models of every core panel type and datasource query

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
RULES = REPO / "prometheus" / "rules"
DATASOURCE = {"type": "prometheus", "uid": "salespulse-prometheus"}
RUNBOOK_BASE = "https://github.com/salespulse/salespulse/blob/main/docs/alerts.md#"
UNIT_PANELS = {"stat", "timeseries", "bargauge"}

#: What the workers and the vtiger connector export (design brief), plus Prometheus' own `up`.
EXPORTED = {
    "salespulse_leads",
    "salespulse_opportunities",
    "salespulse_lead_target",
    "salespulse_customers_acquired",
    "salespulse_marketing_spend",
    "salespulse_deals_won",
    "salespulse_deals_lost",
    "salespulse_sales_amount",
    "salespulse_competitor_price",
    "salespulse_list_price",
    "salespulse_customers_engaged",
    "salespulse_customer_activities",
    "salespulse_customers_at_risk",
    "salespulse_customers_known",
    "salespulse_enps_responses",
    "salespulse_expansion_deals",
    "salespulse_expansion_amount",
    "salespulse_nps_responses",
    "salespulse_events_total",
    "salespulse_events_rejected_total",
    "salespulse_events_late_total",
    "salespulse_consumer_lag",
    "salespulse_event_to_state_seconds_bucket",
    "salespulse_event_to_state_seconds_sum",
    "salespulse_event_to_state_seconds_count",
    "salespulse_partitions_owned",
    "salespulse_connector_polls_total",
    "salespulse_connector_errors_total",
    "salespulse_connector_events_total",
    "salespulse_connector_records_dead_total",
    "salespulse_connector_last_success_timestamp_seconds",
    "up",
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def all_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES.glob("*.yml"))
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def alerts() -> list[dict[str, Any]]:
    return [r for r in all_rules() if "alert" in r]


def recorded() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(board["panels"]) if p.get("type") != "row"]


def load_board(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings that start with
    `salespulse`, plus `up`. Good enough for the expressions of these dashboards."""
    code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    code = re.sub(r"\[[^\]]*\]", "", code)  # range selectors
    names = set(re.findall(r"(?<![\w:])salespulse[\w:]*", code))
    if re.search(r"(?<![\w:])up\s*\{", code):
        names.add("up")
    return names


def links(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(board.get("links", []))
    for panel in iter_panels(board["panels"]):
        found.extend(panel.get("links", []))
    return found


# --------------------------------------------------------------------- dashboards


def test_the_two_dashboards_exist() -> None:
    titles = {load_board(p)["title"] for p in DASHBOARDS}
    assert titles == {"SalesPulse - Sales KPIs", "SalesPulse - Pipeline health"}, titles
    uids = [load_board(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


def test_dashboard_json_is_up_to_date_with_its_generator() -> None:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", REPO / "dashboards" / "build_dashboards.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run: python dashboards/build_dashboards.py"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_queries_the_salespulse_datasource(path: Path) -> None:
    board = load_board(path)
    assert panels(board)
    for panel in panels(board):
        title = panel["title"]
        assert panel.get("datasource") == DATASOURCE, title
        targets = panel.get("targets") or []
        assert targets, f"{title}: no targets"
        for t in targets:
            assert t.get("expr", "").strip(), f"{title}: target {t.get('refId')} has no expr"
            assert t.get("datasource", DATASOURCE) == DATASOURCE, title
        if panel["type"] in UNIT_PANELS:
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit, f"{title}: no unit"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_use_only_exported_metrics_and_recording_rules(path: Path) -> None:
    known = EXPORTED | recorded()
    for title, expr in panel_queries(path):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        unknown = names - known
        assert not unknown, f"{title}: unknown metrics {sorted(unknown)} in {expr}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_template_variables_are_expanded_and_matched_as_regexes(path: Path) -> None:
    board = load_board(path)
    for panel in panels(board):
        for t in panel["targets"]:
            expr = t["expr"]
            for name in ("region", "rep"):
                # region="$region" would break with All (.*) and with several values.
                assert not re.search(rf'{name}\s*!?=\s*"\$\{{?{name}\b', expr), (
                    f"{panel['title']}: match {name} with =~"
                )
    for title, expr in panel_queries(path):
        assert "$" not in expr, f"{title}: unexpanded variable in {expr}"


def test_panel_queries_expands_the_variables() -> None:
    [kpis] = [p for p in DASHBOARDS if p.name == "salespulse-kpis.json"]
    queries = panel_queries(kpis)
    targets = sum(len(p["targets"]) for p in panels(load_board(kpis)))
    assert len(queries) == targets
    assert any(f'window="{VARIABLES["window"]}"' in e for _, e in queries)
    assert any('region=~".*"' in e and 'rep=~".*"' in e for _, e in queries)


def test_kpi_dashboard_has_a_row_per_kpi_and_the_variables() -> None:
    board = load_board(REPO / "dashboards" / "salespulse-kpis.json")
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert len(rows) == 9, [r["title"] for r in rows]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    window = variables["window"]
    assert window["type"] == "custom"
    assert window["query"].split(",") == ["1h", "24h", "7d", "30d"]
    assert [o["value"] for o in window["options"]] == ["1h", "24h", "7d", "30d"]
    for name in ("region", "rep"):
        v = variables[name]
        assert v["type"] == "query", name
        assert v["datasource"] == DATASOURCE, name
        assert v["includeAll"] is True and v["allValue"] == ".*", name
        # Grafana's schema has no "definition" (its editor writes one on save): the query holds it.
        query = v["query"]["query"]
        assert "label_values(" in query and query.endswith(f", {name})"), query
    types = {p["type"] for p in panels(board)}
    assert types >= UNIT_PANELS, types


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every expanded panel query, as a recording rule, passes `promtool check rules`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not on PATH. Install the Debian package prometheus: "
            "sudo apt-get install -y --no-install-recommends prometheus",
            pytrace=False,
        )
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": expr}
        for i, (_, expr) in enumerate(q for path in DASHBOARDS for q in panel_queries(path))
    ]
    doc = {"groups": [{"name": "dashboard-queries", "rules": rules}]}
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [promtool, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def through_grafanas_schema(board: dict[str, Any]) -> Any:
    """The board read into the SDK's typed models and written back: keys the schema lacks are gone.

    Panel options and field config are read by the model of the panel's type, queries by
    that of their datasource's type, so ``colorMode`` is checked against the stat panel's
    options and ``fillOpacity`` against the time series' field config.
    """
    return json.loads(json.dumps(GrafanaDashboard.from_json(board), cls=JSONEncoder))


def unknown_keys(given: Any, kept: Any, path: str = "") -> list[str]:
    """The paths of the keys in ``given`` that ``kept`` lost."""
    if isinstance(given, dict) and isinstance(kept, dict):
        return [
            lost
            for key, value in given.items()
            for lost in (
                [f"{path}.{key}"] if key not in kept else unknown_keys(value, kept[key], f"{path}.{key}")
            )
        ]
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [
            lost
            for i, (a, b) in enumerate(zip(given, kept, strict=True))
            for lost in unknown_keys(a, b, f"{path}[{i}]")
        ]
    return []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_option_name_is_one_grafanas_schema_knows(path: Path) -> None:
    board = load_board(path)
    for panel in panels(board):
        # A type the SDK has no model for would pass its options through unchecked.
        assert runtime.panelcfg_config(panel["type"]) is not None, panel["type"]
        assert all(t["datasource"]["type"] in runtime.Runtime().dataquery_variants for t in panel["targets"])
    assert unknown_keys(board, through_grafanas_schema(board)) == []


def test_the_sdk_is_pinned_to_the_build_for_the_grafana_compose_runs() -> None:
    [image] = re.findall(r"image:\s*grafana/grafana:(\S+)", (REPO / "docker-compose.yml").read_text())
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    [pin] = extras["dashboards"]
    name, _, version = pin.partition("==")
    epoch, _, grafana = version.partition("!")
    assert (name, grafana) == ("grafana-foundation-sdk", image) and epoch.isdigit(), pin
    assert importlib.metadata.version(name) == version  # what the tests and the builder run with
    assert "salespulse[dashboards]" in extras["test"]


def test_a_misspelled_option_name_fails_the_schema_check() -> None:
    board = load_board(REPO / "dashboards" / "salespulse-kpis.json")
    where = {p["type"]: i for i, p in reversed(list(enumerate(board["panels"])))}  # the first of each type
    row, single, bars, series = (board["panels"][where[t]] for t in ("row", "stat", "bargauge", "timeseries"))
    row["colapsed"] = row.pop("collapsed")
    single["options"]["colourMode"] = single["options"].pop("colorMode")
    bars["options"]["reduceOptions"]["calc"] = bars["options"]["reduceOptions"].pop("calcs")
    series["fieldConfig"]["defaults"]["custom"]["fillOpacty"] = series["fieldConfig"]["defaults"][
        "custom"
    ].pop("fillOpacity")
    series["fieldConfig"]["defaults"]["unitt"] = series["fieldConfig"]["defaults"].pop("unit")
    series["targets"][0]["legendFromat"] = series["targets"][0].pop("legendFormat")
    board["templating"]["list"][0]["inclueAll"] = board["templating"]["list"][0].pop("includeAll")

    assert sorted(unknown_keys(board, through_grafanas_schema(board))) == sorted(
        [
            f".panels[{where['row']}].colapsed",
            f".panels[{where['stat']}].options.colourMode",
            f".panels[{where['bargauge']}].options.reduceOptions.calc",
            f".panels[{where['timeseries']}].fieldConfig.defaults.custom.fillOpacty",
            f".panels[{where['timeseries']}].fieldConfig.defaults.unitt",
            f".panels[{where['timeseries']}].targets[0].legendFromat",
            ".templating.list[0].inclueAll",
        ]
    )


# -------------------------------------------------------------------- provisioning


def test_datasource_provisioning_has_the_fixed_uid() -> None:
    doc = load_yaml(REPO / "dashboards" / "provisioning" / "datasources" / "prometheus.yml")
    [ds] = doc["datasources"]
    assert (ds["uid"], ds["type"], ds["url"]) == (
        "salespulse-prometheus",
        "prometheus",
        "http://prometheus:9090",
    )


def test_dashboard_provider_reads_the_mounted_directory() -> None:
    doc = load_yaml(REPO / "dashboards" / "provisioning" / "dashboards" / "salespulse.yml")
    [provider] = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# ------------------------------------------------------------------------ runbooks


def test_every_alert_has_severity_summary_description_and_its_runbook() -> None:
    found = alerts()
    assert len(found) >= 10
    for rule in found:
        name = rule["alert"]
        # Alphanumeric names: GitHub's anchor for "### Name" is then just name.lower().
        assert re.fullmatch(r"SalesPulse[A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower(), name


def headings(path: Path) -> set[str]:
    return set(re.findall(r"^### (SalesPulse\w+)\s*$", path.read_text(), re.MULTILINE))


def test_alerts_doc_has_the_runbook_sections_the_alerts_link_to() -> None:
    doc = REPO / "docs" / "alerts.md"
    assert doc.exists(), "docs/alerts.md is missing"
    missing = {r["alert"] for r in alerts()} - headings(doc)
    assert not missing, f"docs/alerts.md lacks the runbook headings {sorted(missing)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_runbook_links_point_at_alert_sections(path: Path) -> None:
    anchors = {r["alert"].lower() for r in alerts()}
    board = load_board(path)
    runbook_links = [link for link in links(board) if link.get("title", "").startswith("Runbook")]
    assert runbook_links, "no runbook links"
    for link in runbook_links:
        url = link["url"]
        assert url.startswith(RUNBOOK_BASE), url
        assert url.removeprefix(RUNBOOK_BASE) in anchors, url
