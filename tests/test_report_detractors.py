"""The digest's "Detractors to call" section, rendered by Chromium.

A worker holds detractor cases with a Persian comment and a comment full of markup; the
digest lists the open ones oldest first (20 at most, with the count of the rest), and
headless Chromium shows the Persian right to left and the markup as text.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from salespulse.streams.report.command import report_command
from tests.chromium import chromium
from tests.conftest import FIXED_NOW, wait_until
from tests.detractor_corpus import HOUR, MARKUP, PERSIAN, answer, corpus
from tests.reference import expected

NOW = int(FIXED_NOW.timestamp())

#: Finds the two comments in the rendered page and reports where their glyphs landed.
PROBE = """<script>
const out = {};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
let persian = null, markup = null;
while (walker.nextNode()) {
  const n = walker.currentNode;
  if (n.parentElement.tagName === "SCRIPT") continue;
  if (n.data.includes("پشتیبانی")) persian = n;
  if (n.data.includes("alert(")) markup = n;
}
function left(node, i) {
  const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
  return r.getBoundingClientRect().left;
}
out.first_x = left(persian, persian.data.indexOf("پ"));
out.last_x = left(persian, persian.data.lastIndexOf("د"));
out.direction = getComputedStyle(persian.parentElement).direction;
out.markup = markup.data;
out.scripts = document.scripts.length;
out.bold = document.querySelectorAll("td b").length;
const pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def events() -> list[dict[str, Any]]:
    many = [answer(NOW - 60 * (i + 1), f"many-{i}", f"C-many-{i:02d}", i % 7) for i in range(22)]
    return [*corpus(NOW), answer(NOW - 3 * HOUR, "markup", "C-markup", 1, comment=MARKUP), *many]


def test_the_digest_lists_the_open_detractors_and_chromium_shows_persian_rtl_and_markup_as_text(
    spawn_worker: Any, producer: Any, tmp_path: Path
) -> None:
    worker = spawn_worker("digest")
    worker.wait_ready()
    sent = events()
    for event in sent:
        producer.send(event)
    producer.flush()
    wait_until(lambda: worker.progress()["events"] + worker.progress()["duplicates"] == len(sent))
    ref = expected(sent, NOW)
    open_cases = ref.listed("open", "all")
    assert len(open_cases) > 20
    out = tmp_path / "digest"
    report_command(out, window="7d", workers=[worker.address])
    text = (out / "digest.txt").read_text()
    assert "9. Detractors to call" in text
    assert f"{len(open_cases) - 20:,} more not listed" in text
    section = text.split("9. Detractors to call")[1].split("10. Forecast")[0]
    rows = [line for line in section.splitlines() if line.startswith("     \u2068")]
    listed = [row.split(" | ")[0].strip("\u2068\u2069 ") for row in rows]
    assert listed == [c["customer_id"] for c in open_cases[:20]]  # oldest first
    followed, opened = (ref.windows["7d"]["detractors"][k] for k in ("cases_followed_up", "cases_opened"))
    assert f"Follow-up rate: {followed / opened:.1%}" in text
    page = (out / "digest.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page

    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    done = chromium(tmp_path / "chromium-profile", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri())
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:]
    seen = json.loads(html.unescape(found.group(1)))
    # Persian reads right to left: its first letter is drawn to the right of its last.
    assert seen["first_x"] > seen["last_x"], seen
    # The markup is text in the page: the probe is the only script, and no <b> came alive.
    assert MARKUP in seen["markup"]
    assert seen["scripts"] == 1 and seen["bold"] == 0, seen
    assert PERSIAN in text
