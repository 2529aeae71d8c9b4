"""``GET /forecast``: this worker's share of the forecast, and the merge across workers.

Each worker answers for the partitions it owns. :func:`merge` is the one function that makes
the cluster's forecast of several shares, for ``salespulse forecast`` and the digest: raw
sums add (closed won, commit, best case, pipeline, weighted, the waterfall's movements, the
daily series of a closed period), quotas are static (the same on every worker: the largest,
never the sum), and everything derived (forecast, gap, attainment, coverage, accuracy) is
computed again from the merged sums by the code a worker uses for its own share.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from faust.web import Request, View

from salespulse.agents.forecast_numbers import MOVEMENTS, RAW, derive
from salespulse.streams.endpoints.cluster import fetch_json
from salespulse.streams.endpoints.replies import json_reply
from salespulse.streams.pipeline.engine import ReadRefused

if TYPE_CHECKING:
    import faust

    from salespulse.streams.pipeline.runtime import Runtime

#: What every share of one merge must agree on.
SAME: tuple[str, ...] = ("period", "calendar", "start", "end", "by", "as_of", "from", "to", "closed")
PARAMETERS: tuple[str, ...] = ("period", "by", "as_of", "from", "to")


class SharesDisagree(ValueError):
    """Shares answered for different queries (a period, a day): they cannot be merged."""


def install(app: faust.App, runtime: Runtime) -> None:
    """Register ``/forecast``."""

    @app.page("/forecast")
    class Forecast(View):
        async def get(self, request: Request) -> Any:
            params = {name: request.query[name] for name in PARAMETERS if name in request.query}
            try:
                return json_reply(200, runtime.engine.forecast(runtime.owned(), params))
            except ReadRefused as exc:
                return json_reply(400, {"error": str(exc)})


def _row_key(row: Mapping[str, Any], by: str) -> tuple[str, str, str]:
    return str(row.get(by, "")), row["unit"], row["currency"] or ""


def merge(shares: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One forecast from every worker's share."""
    if not shares:
        raise SharesDisagree("no share to merge")
    first = shares[0]
    for other in shares[1:]:
        differs = [name for name in SAME if other[name] != first[name]]
        if differs:
            raise SharesDisagree(f"shares answer different queries: {', '.join(differs)} differ")
    by = first["by"]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for share in shares:
        for row in share["rows"]:
            groups.setdefault(_row_key(row, by), []).append(row)
    rows = [_merged_row(group) for _, group in sorted(groups.items(), key=lambda kv: _order(kv[0]))]
    waterfall: dict[str, dict[str, float]] = {}
    for movement in MOVEMENTS:
        parts = [share["waterfall"][movement] for share in shares]
        currencies = sorted({c for part in parts for c in part})
        waterfall[movement] = {c: math.fsum(part.get(c, 0.0) for part in parts) for c in currencies}
    partitions = [p for share in shares for p in share["partitions"]]
    view = {name: first[name] for name in SAME}
    view.update(
        {
            "clock": max(share["clock"] for share in shares),
            "workers": len(shares),
            "partitions": sorted(partitions),
            "partitions_exported_twice": sorted({p for p in partitions if partitions.count(p) > 1}),
            "rows": rows,
            "waterfall": waterfall,
            "slips": sorted(
                (slip for share in shares for slip in share["slips"]),
                key=lambda s: (-s["slips"], s["opportunity_id"]),
            ),
        }
    )
    return derive(view)


def _order(key: tuple[str, str, str]) -> tuple[str, bool, str]:
    """The order a worker lists its rows in: by name, amounts before deals, by currency."""
    name, unit, currency = key
    return name, unit == "deals", currency


def _merged_row(group: Sequence[dict[str, Any]]) -> dict[str, Any]:
    row = {name: value for name, value in group[0].items() if name not in ("accuracy",)}
    quotas = [r["quota"] for r in group if r["quota"] is not None]
    row["quota"] = max(quotas) if quotas else None
    if "quota_mismatch" in row:
        row["quota_mismatch"] = next((r["quota_mismatch"] for r in group if r["quota_mismatch"]), None)
    for name in RAW:
        row[name] = math.fsum(r[name] for r in group)
    row["waterfall"] = {m: math.fsum(r["waterfall"][m] for r in group) for m in MOVEMENTS}
    if "daily" in row:
        days = row["daily"]["day"]
        row["daily"] = {
            "day": days,
            **{
                name: [math.fsum(r["daily"][name][i] for r in group) for i in range(len(days))]
                for name in row["daily"]
                if name != "day"
            },
        }
    return row


def fetch_share(worker: str, params: Mapping[str, str], token: str, timeout: float = 30.0) -> dict[str, Any]:
    return fetch_json(worker, "/forecast", urllib.parse.urlencode(params), timeout, token)


def cluster_forecast(workers: Sequence[str], params: Mapping[str, str], token: str = "") -> dict[str, Any]:
    """Every worker's share, merged. Without ``as_of``, workers whose clocks stand on two
    sides of midnight are asked again as of the earlier day."""
    shares = [fetch_share(w, params, token) for w in workers]
    days = {share["as_of"] for share in shares}
    if "as_of" not in params and len(days) > 1:
        again = {**params, "as_of": str(min(days))}
        shares = [fetch_share(w, again, token) for w in workers]
    return merge(shares)
