"""The plain-text and HTML versions of the digest.

Both versions show the same sections and numbers. The HTML uses only inline styles and
tables, which is what mail clients render reliably; the image source is a parameter so
the same markup serves the mail (``cid:`` references) and the file (``data:`` URIs).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from salespulse.streams.report.formatting import BLUE, GREEN, GREY, INK, RED, _stamp
from salespulse.streams.report.model import Metric, Section


def _coverage(view: dict[str, Any]) -> str:
    parts = view.get("partitions", [])
    text = f"{view.get('workers', 0)} worker(s), partitions {', '.join(map(str, parts)) or 'none'}"
    twice = view.get("partitions_exported_twice") or []
    if twice:
        text += f"; WARNING: partitions {', '.join(map(str, twice))} exported by two workers"
    return text


def _render_text(window: str, view: dict[str, Any], previous_clock: int, sections: Sequence[Section]) -> str:
    lines = [
        f"SalesPulse KPI digest: last {window} to {_stamp(view['clock'])}",
        f"Changes compare with the previous {window} (to {_stamp(previous_clock)}).",
        "",
    ]
    for s in sections:
        lines.append(f"{s.number}. {s.title}")
        for m in (s.headline, *s.details):
            sentence = m.change_sentence(window)
            change = f"  ({sentence})" if sentence else ""
            lines.append(f"   {m.label}: {m.text}{change}")
        if s.table:
            lines.append("   " + " | ".join(s.table_head))
            lines.extend("     " + " | ".join(row) for row in s.table)
        if s.note:
            lines.append(f"   Note: {s.note}")
        lines.append("")
    lines += [
        f"Source: /kpis of {_coverage(view)}.",
        "Previous periods and trends come from the workers' retained hour buckets (/kpis?at=, 62 days).",
        "",
    ]
    return "\n".join(lines)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_MOOD = {"good": GREEN, "bad": RED, "neutral": GREY}


def _arrow(m: Metric) -> str:
    if not m.change or m.value is None or m.previous is None or m.value == m.previous:
        return ""
    return "&#9650; " if m.value > m.previous else "&#9660; "


def _change_html(m: Metric, window: str) -> str:
    if not m.change:
        return ""
    if m.previous is None:
        return f'<span style="color:{GREY};font-size:12px">{_e(m.change_sentence(window))}</span>'
    return (
        f'<span style="color:{_MOOD[m.mood]};font-size:12px">{_arrow(m)}{_e(m.change)}'
        f' <span style="color:{GREY}">vs previous {_e(window)}</span></span>'
    )


def _render_html(
    window: str,
    view: dict[str, Any],
    previous_clock: int,
    sections: Sequence[Section],
    src: Callable[[str], str],
) -> str:
    font = "font-family:Helvetica,Arial,sans-serif;color:" + INK
    cards = []
    for s in sections:
        cards.append(
            f'<td width="50%" valign="top" style="padding:6px">'
            f'<div style="border:1px solid #e2e8f0;border-radius:6px;padding:10px 12px;background:#f8fafc">'
            f'<div style="font-size:12px;color:{GREY}">{s.number}. {_e(s.title)}</div>'
            f'<div style="font-size:13px;margin-top:4px">{_e(s.headline.label)}</div>'
            f'<div style="font-size:26px;font-weight:bold;margin:2px 0">{_e(s.headline.text)}</div>'
            f"{_change_html(s.headline, window)}"
            + (f'<span style="color:{GREY};font-size:12px">{_e(s.card_note)}</span>' if s.card_note else "")
            + "</div></td>"
        )
    grid = "".join(
        f"<tr>{cards[i]}{cards[i + 1] if i + 1 < len(cards) else ''}</tr>" for i in range(0, len(cards), 2)
    )
    blocks = []
    for s in sections:
        rows = "".join(
            f'<tr><td style="padding:3px 8px 3px 0">{_e(m.label)}</td>'
            f'<td align="right" style="padding:3px 8px;font-weight:bold;white-space:nowrap">{_e(m.text)}</td>'
            f'<td style="padding:3px 0">{_change_html(m, window)}</td></tr>'
            for m in (s.headline, *s.details)
        )
        parts = [
            f'<h2 style="font-size:17px;margin:26px 0 8px;border-bottom:2px solid {BLUE};padding-bottom:4px">'
            f"{s.number}. {_e(s.title)}</h2>",
            f'<table cellpadding="0" cellspacing="0" style="font-size:14px">{rows}</table>',
        ]
        for chart, alt in s.charts:
            parts.append(
                f'<p style="margin:12px 0"><img src="{_e(src(chart))}" alt="{_e(alt)}" width="600" '
                'style="display:block;width:100%;max-width:600px;height:auto;border:0"></p>'
            )
        if s.table:
            head = "".join(
                f'<th align="{"left" if i == 0 else "right"}" style="padding:4px 8px;border-bottom:1px solid '
                f'#cbd5e0;font-size:12px;color:{GREY}">{_e(h)}</th>'
                for i, h in enumerate(s.table_head)
            )
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td align="{"left" if i == 0 else "right"}" style="padding:3px 8px;'
                    f'border-bottom:1px solid #edf2f7">{_e(c)}</td>'
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in s.table
            )
            parts.append(
                f'<table cellpadding="0" cellspacing="0" style="font-size:13px;margin-top:8px;'
                f'border-collapse:collapse"><tr>{head}</tr>{body}</table>'
            )
        if s.note:
            parts.append(f'<p style="font-size:12px;color:{GREY};margin:8px 0 0">{_e(s.note)}</p>')
        blocks.append("".join(parts))
    title = f"SalesPulse KPI digest: last {window} to {_stamp(view['clock'])}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title></head>"
        f'<body style="margin:0;padding:0;background:#edf2f7;{font}">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="background:#edf2f7"><tr><td align="center" style="padding:20px 8px">'
        '<table role="presentation" width="680" cellpadding="0" cellspacing="0" '
        'style="max-width:680px;width:100%;background:#ffffff;border-radius:8px">'
        f'<tr><td style="padding:22px 28px 8px;{font}">'
        f'<div style="font-size:12px;letter-spacing:1px;color:{BLUE};font-weight:bold">SALESPULSE</div>'
        f'<h1 style="font-size:22px;margin:4px 0 2px">KPI digest: last {_e(window)}</h1>'
        f'<div style="font-size:13px;color:{GREY}">to {_e(_stamp(view["clock"]))}; changes compare '
        f"with the previous {_e(window)} (to {_e(_stamp(previous_clock))})</div>"
        f'</td></tr><tr><td style="padding:8px 22px">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0">{grid}</table>'
        f'</td></tr><tr><td style="padding:0 28px 24px;{font}">{"".join(blocks)}'
        f'<p style="font-size:11px;color:{GREY};margin-top:28px;border-top:1px solid #e2e8f0;'
        'padding-top:8px">'
        f"Source: /kpis of {_e(_coverage(view))}. Previous periods and trends come from the "
        "workers' retained hour buckets (/kpis?at=, 62 days, hour resolution).</p>"
        "</td></tr></table></td></tr></table></body></html>\n"
    )
