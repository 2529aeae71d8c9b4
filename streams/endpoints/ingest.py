"""HTTP ingest rules: parse a request body into events, all or nothing.

A body is one JSON event, a JSON array of events, or NDJSON. If any event is invalid the
whole request is refused, naming every bad event by index, field and reason, and nothing
is written. Size and nesting are bounded before any event is looked at. An event from the
future (``occurred_at`` beyond the clock skew after the worker's clock, which is about the
timestamp its record would get) is refused here by the rule the worker dead-letters it by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from salespulse.schemas import exact_json
from salespulse.schemas.codec import MAX_CLOCK_SKEW, Rejected, check_not_future, checked


@dataclass(frozen=True)
class Problem:
    index: int
    field: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


class IngestError(Exception):
    """A refused request: HTTP status and the problems to report."""

    def __init__(self, status: int, error: str, problems: list[Problem] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems or []

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "problems": [p.as_json() for p in self.problems]}


def _depth(value: Any, limit: int) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (a value inside a container is one
    level below it). Iterative and visiting only containers: it runs for every event of a
    request, up to some 35,000 of them."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if level > limit:
            return False
        if isinstance(item, dict | list):
            children = item.values() if isinstance(item, dict) else item
            if children and level == limit:
                return False
            pending += [(child, level + 1) for child in children if isinstance(child, dict | list)]
    return True


def _loads(raw: bytes, index: int, max_depth: int) -> tuple[Any, Problem | None]:
    """The JSON value of ``raw``; its depth is checked per event, by the caller."""
    try:
        return exact_json.loads(raw), None
    except exact_json.DecodeError as exc:
        if isinstance(exc, RecursionError) or "depth" in str(exc):
            return None, Problem(index, "$", f"nesting deeper than {max_depth} levels")
        return None, Problem(index, "$", f"not valid JSON: {exc}")


def parse_events(
    body: bytes,
    *,
    max_depth: int,
    max_events: int = 100_000,
    now_ms: int | None = None,
    max_skew: int = MAX_CLOCK_SKEW,
) -> list[dict[str, Any]]:
    """Events in ``body``, or :class:`IngestError` listing every bad one; with ``now_ms`` (the
    worker's clock), an event from the future is a bad one."""
    if not body.strip():
        raise IngestError(400, "empty body")
    whole, problem = _loads(body, 0, max_depth + 1)
    items: list[Any]
    problems: list[Problem] = []
    if problem is None:
        items = whole if isinstance(whole, list) else [whole]
    elif b"\n" in body.strip() and "nesting" not in problem.reason:
        items = []
        for i, line in enumerate(body.strip().split(b"\n")):
            value, problem = _loads(line, i, max_depth)
            items.append(value)
            if problem is not None:
                problems.append(problem)
    else:
        raise IngestError(400, "body is not JSON, a JSON array or NDJSON", [problem])
    if len(items) > max_events:
        raise IngestError(413, f"{len(items)} events is over the {max_events}-event limit")
    events: list[dict[str, Any]] = []
    bad = {p.index for p in problems}
    for i, item in enumerate(items):
        if i in bad:
            continue
        if not _depth(item, max_depth):
            problems.append(Problem(i, "$", f"nesting deeper than {max_depth} levels"))
            continue
        try:
            event, t = checked(item)
            check_not_future(t, now_ms, max_skew)
            events.append(event)
        except Rejected as exc:
            field, _, reason = exc.detail.partition(": ")
            problems.append(Problem(i, exc.field or field, reason or exc.detail))
    if problems:
        problems.sort(key=lambda p: p.index)
        raise IngestError(400, f"{len(problems)} of {len(items)} events are invalid", problems)
    return events
