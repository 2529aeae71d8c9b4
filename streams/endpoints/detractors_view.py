"""``GET /detractors``: this worker's detractor cases, and the merge across workers.

Customer-level data (ids, comments), behind the token like every read (``access.py``).
``salespulse detractors`` merges every worker's share, sorted the same way a single worker
sorts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.web import Request, View

from salespulse.agents.detractors import STATUSES, order_cases
from salespulse.agents.rolling import WINDOW_NAMES
from salespulse.streams.endpoints.cluster import fetch_json
from salespulse.streams.endpoints.replies import json_reply

if TYPE_CHECKING:
    import faust

    from salespulse.streams.pipeline.runtime import Runtime

LIST_WINDOWS = (*WINDOW_NAMES, "all")


def query_error(status: str, window: str) -> str | None:
    if status not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}"
    if window not in LIST_WINDOWS:
        return f"window must be one of {', '.join(LIST_WINDOWS)}"
    return None


def install(app: faust.App, runtime: Runtime) -> None:
    """Register ``/detractors``."""

    @app.page("/detractors")
    class Detractors(View):
        async def get(self, request: Request) -> Any:
            status = request.query.get("status", "open")
            window = request.query.get("window", "30d")
            if (error := query_error(status, window)) is not None:
                return json_reply(400, {"error": error})
            return json_reply(200, runtime.engine.detractors(runtime.owned(), status, window))


def fetch_cases(worker: str, status: str, window: str, token: str, timeout: float = 5.0) -> dict[str, Any]:
    return fetch_json(worker, "/detractors", f"status={status}&window={window}", timeout, token)


def merged_cases(
    workers: Sequence[str], status: str = "open", window: str = "30d", token: str = ""
) -> dict[str, Any]:
    """Every worker's cases in one list (each customer lives on one partition, so on one worker)."""
    shares = [fetch_cases(w, status, window, token) for w in workers]
    cases = [case for share in shares for case in share["cases"]]
    return {
        "clock": max((s["clock"] for s in shares), default=0),
        "workers": len(shares),
        "window": window,
        "status": status,
        "cases": order_cases(cases),
    }
