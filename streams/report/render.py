"""The plain-text and HTML versions of the digest.

Both versions show the same sections and numbers. The HTML uses only inline styles and
tables, which is what mail clients render reliably; the image source is a parameter so
the same markup serves the mail (``cid:`` references) and the file (``data:`` URIs).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from salespulse.streams.report.catalogue import Catalogue
from salespulse.streams.report.formatting import BLUE, GREEN, GREY, INK, RED
from salespulse.streams.report.model import Metric, Section


def _coverage(view: dict[str, Any], cat: Catalogue) -> str:
    def numbers(values: list[int]) -> str:
        return cat.t("list_separator").join(cat.num(str(v)) for v in values)

    parts = view.get("partitions", [])
    text = cat.t(
        "coverage",
        workers=cat.num(str(view.get("workers", 0))),
        partitions=numbers(parts) or cat.t("coverage.none"),
    )
    twice = view.get("partitions_exported_twice") or []
    if twice:
        text += cat.t("coverage.twice", partitions=numbers(twice))
    return text


def _heading(s: Section, cat: Catalogue) -> str:
    return cat.t("section.heading", number=cat.num(str(s.number)), title=s.title)


def _render_text(
    window: str, view: dict[str, Any], previous_clock: int, sections: Sequence[Section], cat: Catalogue
) -> str:
    lines = [
        cat.t("title", window=cat.window(window), stamp=cat.stamp(view["clock"])),
        cat.t("text.compare", window=cat.window(window), stamp=cat.stamp(previous_clock)),
        "",
    ]
    for s in sections:
        lines.append(_heading(s, cat))
        for m in (s.headline, *s.details):
            sentence = m.change_sentence(cat, window)
            change = f"  ({sentence})" if sentence else ""
            lines.append(f"   {m.label}: {m.text(cat)}{change}")
        if s.table:
            lines.append("   " + " | ".join(s.table_head))
            lines.extend("     " + " | ".join(row) for row in s.table)
        if s.note:
            lines.append("   " + cat.t("text.note", note=s.note))
        lines.append("")
    lines += [cat.t("text.source", coverage=_coverage(view, cat)), cat.t("text.history"), ""]
    return "\n".join(lines)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_MOOD = {"good": GREEN, "bad": RED, "neutral": GREY}


def _arrow(m: Metric) -> str:
    if m.value is None or m.previous is None or m.value == m.previous:
        return ""
    return "&#9650; " if m.value > m.previous else "&#9660; "


def _change_html(m: Metric, window: str, cat: Catalogue) -> str:
    change = m.change(cat)
    if not change:
        return ""
    if m.previous is None:
        return f'<span style="color:{GREY};font-size:12px">{_e(m.change_sentence(cat, window))}</span>'
    versus = _html(cat, "html.vs_previous", window=cat.window(window))
    return (
        f'<span style="color:{_MOOD[m.mood]};font-size:12px">{_arrow(m)}{_e(change)}'
        f' <span style="color:{GREY}">{versus}</span></span>'
    )


def _html(cat: Catalogue, key: str, **fields: str) -> str:
    """A catalogue message in HTML: its fields escaped, the message itself as written."""
    return cat.t(key, **{name: _e(value) for name, value in fields.items()})


def _render_html(
    window: str,
    view: dict[str, Any],
    previous_clock: int,
    sections: Sequence[Section],
    src: Callable[[str], str],
    cat: Catalogue,
    head: str = "",
) -> str:
    """The HTML digest; ``head`` is extra markup for ``<head>`` (a font, a refresh)."""
    font = f"font-family:{cat.html_font};color:" + INK
    start, end = cat.start, cat.end
    cards = []
    for s in sections:
        cards.append(
            f'<td width="50%" valign="top" style="padding:6px">'
            f'<div style="border:1px solid #e2e8f0;border-radius:6px;padding:10px 12px;background:#f8fafc">'
            f'<div style="font-size:12px;color:{GREY}">{_e(_heading(s, cat))}</div>'
            f'<div style="font-size:13px;margin-top:4px">{_e(s.headline.label)}</div>'
            f'<div style="font-size:26px;font-weight:bold;margin:2px 0">{_e(s.headline.text(cat))}</div>'
            f"{_change_html(s.headline, window, cat)}"
            + (f'<span style="color:{GREY};font-size:12px">{_e(s.card_note)}</span>' if s.card_note else "")
            + "</div></td>"
        )
    grid = "".join(
        f"<tr>{cards[i]}{cards[i + 1] if i + 1 < len(cards) else ''}</tr>" for i in range(0, len(cards), 2)
    )
    blocks = []
    for s in sections:
        rows = "".join(
            f'<tr><td style="padding:{cat.padding("3px", "8px", "3px", "0")}">{_e(m.label)}</td>'
            f'<td align="{end}" style="padding:3px 8px;font-weight:bold;white-space:nowrap">'
            f"{_e(m.text(cat))}</td>"
            f'<td style="padding:3px 0">{_change_html(m, window, cat)}</td></tr>'
            for m in (s.headline, *s.details)
        )
        parts = [
            f'<h2 style="font-size:17px;margin:26px 0 8px;border-bottom:2px solid {BLUE};padding-bottom:4px">'
            f"{_e(_heading(s, cat))}</h2>",
            f'<table cellpadding="0" cellspacing="0" style="font-size:14px">{rows}</table>',
        ]
        for chart, alt in s.charts:
            parts.append(
                f'<p style="margin:12px 0"><img src="{_e(src(chart))}" alt="{_e(alt)}" width="600" '
                'style="display:block;width:100%;max-width:600px;height:auto;border:0"></p>'
            )
        if s.table:
            head_cells = "".join(
                f'<th align="{start if i == 0 else end}" style="padding:4px 8px;border-bottom:1px solid '
                f'#cbd5e0;font-size:12px;color:{GREY}">{_e(h)}</th>'
                for i, h in enumerate(s.table_head)
            )
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td align="{start if i == 0 else end}" style="padding:3px 8px;'
                    f'border-bottom:1px solid #edf2f7">{_e(c)}</td>'
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in s.table
            )
            parts.append(
                f'<table cellpadding="0" cellspacing="0" style="font-size:13px;margin-top:8px;'
                f'border-collapse:collapse"><tr>{head_cells}</tr>{body}</table>'
            )
        if s.note:
            parts.append(f'<p style="font-size:12px;color:{GREY};margin:8px 0 0">{_e(s.note)}</p>')
        blocks.append("".join(parts))
    stamp, previous = cat.stamp(view["clock"]), cat.stamp(previous_clock)
    title = cat.t("title", window=cat.window(window), stamp=stamp)
    direction = "" if not cat.rtl else f' dir="{cat.direction}"'
    return (
        f'<!DOCTYPE html>\n<html lang="{cat.lang}"{direction}><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head}<title>{_e(title)}</title></head>"
        f'<body style="margin:0;padding:0;background:#edf2f7;{font}">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="background:#edf2f7"><tr><td align="center" style="padding:20px 8px">'
        '<table role="presentation" width="680" cellpadding="0" cellspacing="0" '
        'style="max-width:680px;width:100%;background:#ffffff;border-radius:8px">'
        f'<tr><td style="padding:22px 28px 8px;{font}">'
        f'<div style="font-size:12px;letter-spacing:1px;color:{BLUE};font-weight:bold">'
        f"{_html(cat, 'html.brand')}</div>"
        f'<h1 style="font-size:22px;margin:4px 0 2px">'
        f"{_html(cat, 'html.heading', window=cat.window(window))}</h1>"
        f'<div style="font-size:13px;color:{GREY}">'
        f"{_html(cat, 'html.subtitle', stamp=stamp, window=cat.window(window), previous=previous)}</div>"
        f'</td></tr><tr><td style="padding:8px 22px">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0">{grid}</table>'
        f'</td></tr><tr><td style="padding:0 28px 24px;{font}">{"".join(blocks)}'
        f'<p style="font-size:11px;color:{GREY};margin-top:28px;border-top:1px solid #e2e8f0;'
        'padding-top:8px">'
        f"{_html(cat, 'html.footer', coverage=_coverage(view, cat))}</p>"
        "</td></tr></table></td></tr></table></body></html>\n"
    )
