"""The digest's "Detractors to call" section: the open cases and the follow-up rate.

Open detractor cases come from ``/detractors`` (customer-level, so the ingest token is
sent), oldest first, at most 20 with the count of the rest; the follow-up rate of the
period is compared with the previous one. Comments are customers' own words in any
script: each is wrapped in Unicode isolates (FSI ... PDI) so right-to-left text keeps its
direction inside a left-to-right page, in the HTML and the plain text alike; the
renderer escapes it like any other cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from salespulse.streams.endpoints.cluster import WorkerUnreachable
from salespulse.streams.endpoints.detractors_view import merged_cases
from salespulse.streams.report.formatting import COUNT, PERCENT
from salespulse.streams.report.model import Metric, Section

MAX_LISTED = 20
_ISOLATE, _POP = "\u2068", "\u2069"


def open_cases(workers: Sequence[str], token: str) -> tuple[list[dict[str, Any]], str]:
    """Every open case, oldest first, or no case and the reason they could not be read."""
    try:
        return merged_cases(workers, "open", "all", token)["cases"], ""
    except WorkerUnreachable as exc:
        return [], f"The cases could not be read ({exc}); set SALESPULSE_INGEST_TOKEN for the report."


def isolated(text: str) -> str:
    return f"{_ISOLATE}{text}{_POP}"


def detractor_section(
    window: str, current: dict[str, Any], previous: dict[str, Any], cases: list[dict[str, Any]], problem: str
) -> Section:
    now, before = current["windows"][window]["detractors"], previous["windows"][window]["detractors"]
    listed = cases[:MAX_LISTED]
    rest = len(cases) - len(listed)
    note = (
        problem
        or f"Open cases, oldest first{f'; {rest:,} more not listed' if rest else ''}. The follow-up rate "
        f"is the share of the {window}'s detractor answers followed up by a call, email, meeting or "
        "support contact. Full list: salespulse detractors --window all."
    )
    return Section(
        9,
        "detractors",
        "Detractors to call",
        Metric("Follow-up rate", now["follow_up_rate"], before["follow_up_rate"], PERCENT),
        (
            Metric(
                "Followed up within the target",
                now["follow_up_in_target_rate"],
                before["follow_up_in_target_rate"],
                PERCENT,
            ),
            Metric("Open cases", now["open"], kind=COUNT, higher_is_better=False, compare=False),
            Metric("Overdue cases", now["overdue"], kind=COUNT, higher_is_better=False, compare=False),
        ),
        table_head=("Customer", "Answered", "Hours open", "Owner", "Comment") if listed else (),
        table=tuple(
            (
                isolated(c["customer_id"]),
                c["answered_at"],
                f"{c['hours_open']:,.1f}",
                isolated(c["owner"]),
                isolated(c["comment"] or ""),
            )
            for c in listed
        ),
        note=note,
    )
