"""The digest's "Detractors to call" section: the open cases and the follow-up rate.

Open detractor cases come from ``/detractors``, oldest first, at most 20 with the count of
the rest; the follow-up rate of the period is compared with the previous one. Comments are
customers' own words in any script: each is wrapped in Unicode isolates (FSI ... PDI) so
right-to-left text keeps its direction inside a page of either direction, in the HTML and
the plain text alike; the renderer escapes it like any other cell. Its words come from the
catalogue (``detractors.*`` keys in ``locales/<code>.toml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from salespulse.schemas.event_time import parse_time
from salespulse.streams.endpoints.cluster import WorkerUnreachable
from salespulse.streams.endpoints.detractors_view import merged_cases
from salespulse.streams.report.catalogue import Catalogue
from salespulse.streams.report.formatting import COUNT, PERCENT, format_value
from salespulse.streams.report.model import Metric, Section

MAX_LISTED = 20
COLUMNS = ("customer", "answered", "hours_open", "owner", "comment")
_ISOLATE, _POP = "\u2068", "\u2069"


def open_cases(workers: Sequence[str], token: str) -> tuple[list[dict[str, Any]], str]:
    """Every open case, oldest first, or no case and why they could not be read."""
    try:
        return merged_cases(workers, "open", "all", token)["cases"], ""
    except WorkerUnreachable as exc:
        return [], str(exc)


def isolated(text: str) -> str:
    return f"{_ISOLATE}{text}{_POP}"


def detractor_section(
    window: str,
    current: dict[str, Any],
    previous: dict[str, Any],
    cases: list[dict[str, Any]],
    problem: str,
    cat: Catalogue,
) -> Section:
    now, before = current["windows"][window]["detractors"], previous["windows"][window]["detractors"]
    t = cat.t
    listed = cases[:MAX_LISTED]
    rest = len(cases) - len(listed)
    more = t("detractors.more", count=format_value(COUNT, rest, cat)) if rest else ""
    note = t("detractors.problem", error=problem) if problem else t("detractors.note", more=more)
    return Section(
        9,
        "detractors",
        t("detractors.title"),
        Metric(t("detractors.follow_up_rate"), now["follow_up_rate"], before["follow_up_rate"], PERCENT),
        (
            Metric(
                t("detractors.in_target"),
                now["follow_up_in_target_rate"],
                before["follow_up_in_target_rate"],
                PERCENT,
            ),
            Metric(t("detractors.open"), now["open"], kind=COUNT, higher_is_better=False, compare=False),
            Metric(
                t("detractors.overdue"), now["overdue"], kind=COUNT, higher_is_better=False, compare=False
            ),
        ),
        table_head=tuple(t(f"detractors.{column}") for column in COLUMNS) if listed else (),
        table=tuple(
            (
                isolated(c["customer_id"]),
                cat.stamp(parse_time(c["answered_at"])),
                cat.num(f"{c['hours_open']:,.1f}"),
                isolated(c["owner"]),
                isolated(c["comment"] or ""),
            )
            for c in listed
        ),
        note=note,
    )
