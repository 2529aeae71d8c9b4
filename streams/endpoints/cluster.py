"""The cluster-wide view: every worker's share of ``/kpis``, merged.

Each worker exports only the partitions it owns, so cluster numbers are sums over the
workers' series (``max`` for static series such as targets), and ratios are recomputed
from the merged numerators and denominators by the same KPI code the workers use.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

from salespulse.agents.base import Series
from salespulse.streams.pipeline.engine import summarize
from salespulse.streams.tokens import TOKEN_SETTING


class WorkerUnreachable(RuntimeError):
    """A worker named in ``--workers`` did not answer, or refused to."""


class WorkerRefused(WorkerUnreachable):
    """A worker answered with an error status: its message says why (a bad ``at``, ...)."""


def fetch_json(
    worker: str, path: str, query: str = "", timeout: float = 5.0, token: str = ""
) -> dict[str, Any]:
    """A worker's JSON answer at ``path``, sending the token when there is one."""
    url = worker if worker.startswith("http") else f"http://{worker}"
    request = urllib.request.Request(f"{url}{path}{'?' + query if query else ''}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return dict(orjson.loads(response.read()))
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise WorkerRefused(f"worker {worker} answered {exc.code} to {path}: {_error(exc)}") from None
        hint = (
            f"the token sent is not the worker's: set {TOKEN_SETTING} to the workers' token"
            if token
            else f"set {TOKEN_SETTING} to the workers' token (a worker with none configured keeps"
            " its own in SALESPULSE_DATA_DIR/ingest-token, which the CLI reads on the same machine)"
        )
        raise WorkerRefused(f"worker {worker} refused {path} (401): {hint}") from None
    except OSError as exc:
        raise WorkerUnreachable(f"worker {worker} did not answer {path}: {exc}") from None


def _error(answer: urllib.error.HTTPError) -> str:
    """The ``error`` of a worker's JSON answer, else its text."""
    text = answer.read().decode(errors="replace").strip()
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text or str(answer.reason)
    return str(body.get("error", text)) if isinstance(body, dict) else text


def fetch_share(worker: str, timeout: float = 5.0, at: int | None = None, token: str = "") -> dict[str, Any]:
    return fetch_json(worker, "/kpis", "" if at is None else f"at={at}", timeout, token)


def merge(shares: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge workers' shares into one cluster view."""
    series = Series()
    counters: dict[str, Any] = {}
    partitions: list[int] = []
    overlap: set[int] = set()
    for share in shares:
        for name, labels, value in share["series"]:
            series.add(name, labels, value)
        for name, counts in share["counters"].items():
            if isinstance(counts, int):
                counters[name] = counters.get(name, 0) + counts
                continue
            merged = counters.setdefault(name, {})
            for label, n in counts.items():
                merged[label] = merged.get(label, 0) + n
        overlap |= set(partitions) & set(share["partitions"])
        partitions += share["partitions"]
    return {
        "clock": max((s["clock"] for s in shares), default=0),
        "workers": len(shares),
        "partitions": sorted(partitions),
        "partitions_exported_twice": sorted(overlap),
        "counters": counters,
        "series": [[n, lab, v] for n, lab, v in series.rows()],
        "windows": summarize(series),
    }


def cluster_view(
    workers: Sequence[str], timeout: float = 5.0, at: int | None = None, token: str = ""
) -> dict[str, Any]:
    """The merged view now, or at an earlier clock (epoch seconds)."""
    return merge([fetch_share(w, timeout, at, token) for w in workers])
