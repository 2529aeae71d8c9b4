"""Every PromQL query of a SalesPulse Grafana dashboard, ready to send to Prometheus.

Grafana expands template variables before it queries; this module does the same with
fixed values, so tests can run each panel's query against a real Prometheus:

    $window -> 24h, $region -> .*, $rep -> .*   (also written ${window}, ...)

The dashboards match region and rep with ``=~``, so ``.*`` selects every value (and
series without the label).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Values used for the template variables, like a viewer who picked window 24h and All.
VARIABLES = {"window": "24h", "region": ".*", "rep": ".*"}

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace $name and ${name} by their values; unknown variables stay as they are."""
    values = VARIABLES if variables is None else variables

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(replace, expr)


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels (collapsed rows) included; rows themselves too."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def panel_queries(path: str | Path) -> list[tuple[str, str]]:
    """(panel title, expanded expr) for every target of every panel, in dashboard order."""
    board = json.loads(Path(path).read_text())
    queries = []
    for panel in iter_panels(board.get("panels", [])):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                queries.append((panel.get("title", ""), expand(expr)))
    return queries
