"""The digest in Persian, at the fixed clock, against a real worker; and the catalogues themselves.

- Every catalogue has the English one's keys, so adding a language is adding a file.
- Dates are Jalali (30 November 2026 is ۹ آذر ۱۴۰۵), numbers have Persian digits and
  separators (٬ ٫ ٪), and the page is ``lang="fa" dir="rtl"``.
- No English word is left in what a reader sees (text nodes, alt texts, the plain text and
  the subject) other than ids, product names and currency codes from the data, and the
  name of a setting to set.
- The charts draw every Persian character from a font that has it (matplotlib warns of
  no missing glyph), and Chromium renders ``digest.html`` with its text on the right.
- The font ships inside the package, with its license: the wheel the Dockerfile builds,
  installed into a fresh virtual environment on a machine where no Noto font is visible,
  writes the Persian digest with every glyph.
"""

from __future__ import annotations

import fnmatch
import glob
import importlib.metadata
import importlib.resources
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from fontTools.ttLib import TTFont
from matplotlib import font_manager

from salespulse.streams.endpoints.detractors_view import merged_cases
from salespulse.streams.endpoints.forecast_view import cluster_forecast
from salespulse.streams.report.catalogue import LOCALES, UnknownLocale, available, catalogue
from salespulse.streams.report.digest import build_digest
from salespulse.streams.report.files import write_digest
from salespulse.streams.report.fonts import PACKAGED, chart_fonts, font_face_css, font_paths
from salespulse.streams.report.formatting import COUNT, MONEY, PERCENT, SCORE, format_change, format_value
from salespulse.streams.report.render import _render_html
from tests.chromium import console_errors, screenshot
from tests.conftest import REPO, TOKEN
from tests.test_report import NOW, chart_pixels, png_size, worker  # noqa: F401 (the module's worker)

FA = catalogue("fa")
JALALI_CLOCK = "۵ آذر ۱۴۰۵"  # 26 November 2026, the fixed clock
LATIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def test_every_catalogue_has_the_keys_of_the_english_one() -> None:
    english = catalogue("en")
    assert set(available()) >= {"en", "fa"}
    for code in available():
        cat = catalogue(code)
        assert set(cat.messages) == set(english.messages), code
        assert set(cat.windows) == set(english.windows), code
        assert len(cat.months) == 12 and len(cat.weekdays) == 7, code
    with pytest.raises(UnknownLocale, match="available: en, fa"):
        catalogue("xx")


def test_a_catalogue_missing_a_key_is_refused_naming_it(tmp_path: Path, monkeypatch) -> None:
    text = (LOCALES / "fa.toml").read_text().replace('"nps.promoters" = ', '"nps.promoterz" = ')
    (tmp_path / "fa.toml").write_text(text)
    (tmp_path / "en.toml").write_text((LOCALES / "en.toml").read_text())
    monkeypatch.setattr("salespulse.streams.report.catalogue.LOCALES", tmp_path)
    catalogue.cache_clear()
    try:
        with pytest.raises(UnknownLocale, match=r"lacks messages\.nps\.promoters"):
            catalogue("fa")
    finally:
        catalogue.cache_clear()


def test_persian_dates_are_jalali_and_numbers_persian() -> None:
    assert FA.day(int(datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp())) == "۹ آذر"
    assert FA.stamp(int(datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp())).startswith("دوشنبه ۹ آذر ۱۴۰۵")
    assert FA.stamp(int(datetime(2026, 3, 21, 0, tzinfo=UTC).timestamp())).startswith("شنبه ۱ فروردین ۱۴۰۵")
    assert format_value(COUNT, 1234567, FA) == "۱٬۲۳۴٬۵۶۷"
    assert format_value(PERCENT, 0.1234, FA) == "۱۲٫۳٪"
    assert format_value(SCORE, -4.25, FA) == "-۴٫۲"
    assert format_value(MONEY, 1234.5, FA) == "۱٬۲۳۴٫۵۰"
    assert format_value(COUNT, None, FA) == "ناموجود"
    assert format_change(PERCENT, 0.30, 0.25, FA) == "+۵٫۰ واحد درصد"
    assert format_change(COUNT, 1100, 1000, FA) == "+۱۰۰ (+۱۰٫۰٪)"


class VisibleText(HTMLParser):
    """What a reader sees: text outside <style> and <title>, and every alt text."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0
        self.root: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.root = dict(attrs)
        if tag in {"style", "title"}:
            self.skip += 1
        self.parts.extend(v or "" for k, v in attrs if k == "alt")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "title"}:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def data_labels(view: dict[str, Any], address: str) -> set[str]:
    """Ids, product names and currency codes the data brings (shown as they came), and the
    detractors' ids, owners and comments (customers' own words, in their own language)."""
    labels: set[str] = set()
    for _, row, _ in view["series"]:
        for key, value in row.items():
            if key in {"region", "rep", "team", "product", "competitor", "currency"}:
                labels.add(value)
    for case in merged_cases([address], "open", "all", TOKEN)["cases"]:
        labels.update((case["customer_id"], case["owner"]))
        labels.update(LATIN.findall(case["comment"] or ""))
    return labels


def english_words(text: str, allowed: set[str]) -> list[str]:
    """Latin words and ASCII-digit numbers that are not data labels (so no ``672`` either)."""
    return sorted({w for w in LATIN.findall(text) if w not in allowed and not w.startswith("SALESPULSE_")})


@pytest.fixture(scope="module")
def persian(worker: Any) -> Any:  # noqa: F811 (the imported module fixture)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        digest = build_digest([worker.address], "7d", locale="fa")
    return digest, [str(w.message) for w in caught]


def test_persian_digest_is_rtl_jalali_and_has_no_english_left(persian: Any, worker: Any) -> None:  # noqa: F811
    digest, _ = persian
    page = VisibleText()
    page.feed(digest.html_file)
    assert page.root == {"lang": "fa", "dir": "rtl"}
    seen = " ".join(page.parts)
    for shown in (seen, digest.text, digest.subject):
        assert JALALI_CLOCK in shown
        assert "آذر" in shown and "Nov" not in shown
    allowed = data_labels(digest.view, worker.address)
    for name, shown in (("page", seen), ("text", digest.text), ("subject", digest.subject)):
        assert english_words(shown, allowed) == [], name
    # The numbers are those of /kpis, in Persian digits and separators.
    now = worker.kpis()["windows"]["7d"]
    assert f"{FA.t('leads.leads')}: {format_value(COUNT, now['leads']['leads'], FA)}" in digest.text
    assert format_value(PERCENT, now["sales"]["win_rate"], FA) in seen
    assert "٪" in seen and "٫" in seen and "٬" in seen


def test_persian_charts_draw_every_glyph_from_a_font_that_has_it(persian: Any) -> None:
    digest, caught = persian
    assert not [m for m in caught if "missing from" in m.lower() or "glyph" in m.lower()], caught
    assert len(digest.images) == 6
    (regular, _) = font_paths(FA.font_files)
    with chart_fonts(FA):
        chosen = font_manager.findfont(font_manager.FontProperties(family=matplotlib.rcParams["font.family"]))
    assert Path(chosen).name == regular.name  # the charts' first font is the Persian one
    covered = TTFont(regular).getBestCmap()
    persian_chars = {c for c in FA.characters if "\u0600" <= c <= "\u06ff"}
    assert persian_chars and not [c for c in persian_chars if ord(c) not in covered]


def test_chromium_renders_the_persian_digest_right_to_left(persian: Any, tmp_path: Path) -> None:
    digest, _ = persian
    page = write_digest(digest, tmp_path)
    assert "@font-face" in page.read_text() and "url(data:font/woff;base64," in page.read_text()
    shot = tmp_path / "screenshot.png"
    done = screenshot(page, shot, tmp_path / "chromium-profile", (1200, 2000))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not console_errors(done.stderr)
    assert png_size(shot.read_bytes()) == (1200, 2000)
    assert chart_pixels(shot) > 20_000, "the charts did not render"
    # The heading starts on the right: the ink of the title band is on the right half.
    from matplotlib.image import imread

    band = imread(shot)[40:110, :, :3].sum(axis=2) < 1.5
    left, right = int(band[:, :600].sum()), int(band[:, 600:].sum())
    assert right > 3 * left, (left, right)


#: Every letter of the Persian alphabet, with hamza forms, the kasra-ye ezafe, tatweel and
#: ZWNJ; Persian and Arabic digits: what upstream labels and comments may bring.
PERSIAN = "آاأإبپتثجچحخدذرزژسشصضطظعغفقکگلمنوؤهۀةیئيكءٔـ\u200c" + "۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩"


def test_the_package_carries_the_persian_font_and_its_license() -> None:
    typefaces = importlib.resources.files("salespulse.streams.report") / "typefaces"
    # The installed wheel's own record (a checkout's stray salespulse.egg-info would answer first).
    site = str(Path(str(typefaces)).parents[3])
    [wheel] = importlib.metadata.Distribution.discover(name="salespulse", path=[site])
    installed = {str(f) for f in wheel.files or ()}
    for name in (*FA.font_files, "OFL.txt"):
        assert f"salespulse/streams/report/typefaces/{name}" in installed, name
        assert (typefaces / name).is_file(), name
    license_text = (typefaces / "OFL.txt").read_text()
    assert "SIL OPEN FONT LICENSE Version 1.1" in license_text
    assert license_text.startswith("Copyright 2015-2020 Google LLC.")
    for name in FA.font_files:
        font = TTFont(PACKAGED / name)
        assert font["name"].getDebugName(1) == "Noto Sans Arabic", name  # the family the charts ask for
        assert "Open Font License" in (font["name"].getDebugName(13) or ""), name
        cmap = font.getBestCmap()
        needed = {c for c in FA.characters + PERSIAN if not c.isascii() and c not in " \u00a0"}
        # What Noto Sans Arabic lacks (— × ÷) the charts take from DejaVu Sans, which matplotlib ships.
        fallback = TTFont(font_manager.findfont("DejaVu Sans")).getBestCmap()
        missing = sorted(c for c in needed if ord(c) not in cmap and ord(c) not in fallback)
        assert not missing, (name, missing)
        assert {ord(c) for c in PERSIAN} <= set(cmap), name
        assert (PACKAGED / name).stat().st_size < 200_000, "keep the subset small"


NOTO = Path("/usr/share/fonts/truetype/noto")


def dockerfile_steps() -> tuple[list[str], list[str], list[str]]:
    """The build stage's COPY sources and its ``pip wheel`` command, and the runtime stage's
    ``pip install`` of the wheel, as the Dockerfile has them."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages = [stage.splitlines() for stage in re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]]
    [build] = [lines for lines in stages if lines[0].split()[1:] == ["AS", "build"]]
    sources = [src for line in build if line.startswith("COPY ") for src in line.split()[1:-1]]
    [wheel] = [shlex.split(line[4:]) for line in build if line.startswith("RUN pip wheel ")]
    [install] = [line[4:].split("&&")[0] for line in stages[-1] if line.startswith("RUN pip install ")]
    return sources, wheel, shlex.split(install)


def docker_context(into: Path, sources: list[str]) -> Path:
    """The files a ``docker build`` of a fresh clone sends: the COPY sources less .dockerignore."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:  # a folder's pattern leaves out what is in it; **/ matches anywhere
        prefixes = [path.rsplit("/", n)[0] for n in range(path.count("/") + 1)]
        return any(
            fnmatch.fnmatch(
                prefix.rsplit("/", 1)[-1] if p.startswith("**/") else prefix, p.removeprefix("**/")
            )
            for p in patterns
            for prefix in prefixes
        )

    # Tracked and new files, as a clone of the commit would have them; not what git ignores.
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *sources]
    files = subprocess.run(listed, cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if not ignored(name):
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, into / name)
    return into


def without_noto(*command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a mount namespace where Debian's Noto fonts are hidden (as root)."""
    hide = 'if [ -d "$1" ]; then mount --bind "$2" "$1" || exit 97; fi; shift 2; exec "$@"'
    empty = Path(env["HOME"]) / "empty"
    empty.mkdir(exist_ok=True)
    done = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", hide, "sh", str(NOTO), str(empty), *command],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=env["HOME"],
        timeout=300,
    )
    hidden = done.returncode != 97 and "unshare failed" not in done.stderr
    assert hidden, f"could not hide {NOTO}: a mount namespace needs root ({done.stderr.strip()})"
    return done


@pytest.mark.slow
def test_the_dockerfile_install_steps_in_a_fresh_venv_write_the_persian_digest_with_no_system_font(
    worker: Any,  # noqa: F811 (the imported module fixture)
    tmp_path: Path,
) -> None:
    sources, wheel, install = dockerfile_steps()
    assert sources[:1] == ["pyproject.toml"] and "streams/" in sources, sources
    venv, wheels = tmp_path / "venv", tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Two departures from the image, neither touching what the wheel carries: pip's cache is
    # kept (the Dockerfile's --no-cache-dir only keeps it out of the image), and the hot path
    # is not compiled (a minute and a half of both cores; `salespulse report` does not run it).
    pip_env = {k: v for k, v in os.environ.items() if k != "PIP_NO_CACHE_DIR"}
    pip_env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        SALESPULSE_PURE_PYTHON="1",
        PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
    )

    def run(command: list[str], cwd: Path) -> None:
        argv = [str(wheels) if a == "/wheels" else a for a in command if a != "--no-cache-dir"]
        argv = [a.replace("/tmp/constraints.txt", str(REPO / "constraints.txt")) for a in argv]
        argv = [p for a in argv for p in (sorted(glob.glob(a.replace("/tmp/wheels", str(wheels)))) or [a])]
        done = subprocess.run(argv, cwd=cwd, env=pip_env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-3000:]}"

    run(wheel, docker_context(tmp_path / "context", sources))  # the build stage
    run(install, tmp_path)  # the runtime stage

    home = tmp_path / "home"
    home.mkdir()
    clean = {"HOME": str(home), "MPLCONFIGDIR": str(home / "mpl"), "PATH": pip_env["PATH"]}
    listed = without_noto("fc-list", **clean)
    assert listed.returncode == 0 and listed.stdout.strip(), f"fc-list (fontconfig): {listed.stderr}"
    assert "noto" not in listed.stdout.lower(), listed.stdout
    seen = without_noto(
        str(venv / "bin" / "python"),
        "-c",
        "from matplotlib import font_manager; print(*font_manager.findSystemFonts(), sep='\\n')",
        **clean,
    )
    assert seen.returncode == 0 and "NotoSansArabic" not in seen.stdout, seen.stdout + seen.stderr

    out = home / "digest"
    command = ["salespulse", "report", "--locale", "fa", "--workers", worker.address, "--out", str(out)]
    done = without_noto(*command, **clean)
    assert done.returncode == 0, done.stderr
    assert "missing from font" not in done.stderr, done.stderr  # matplotlib's warning for a box
    assert len(done.stderr.splitlines()) < 10, done.stderr  # the subsetter keeps its INFO to itself
    page = (out / "digest.html").read_text()
    assert 'lang="fa" dir="rtl"' in page and "url(data:font/woff;base64," in page
    assert JALALI_CLOCK in (out / "digest.txt").read_text()
    assert len(list(out.glob("*.png"))) == 6


def test_the_persian_forecast_section_names_the_quarter_in_jalali_and_chromium_lays_it_out_right_to_left(
    persian: Any,
    worker: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The current quarter (2026-Q4 of the workers' Gregorian fiscal calendar) is named in
    Persian words and digits, its first and last days in the Jalali calendar; its numbers are
    ``salespulse forecast``'s; Chromium renders the section on its own with its text on the right."""
    digest, _ = persian
    [section] = [s for s in digest.sections if s.kpi == "forecast"]
    assert section.title == "پیش‌بینی فروش، فصل ۴ سال مالی ۲۰۲۶ (از ۹ مهر ۱۴۰۵ تا ۱۰ دی ۱۴۰۵)"
    merged = cluster_forecast([worker.address], {"by": "rep", "as_of": str(NOW)}, TOKEN)
    rows = [r for r in merged["rows"] if r["unit"] == "amount"]
    assert rows and len(section.table) == min(20, len(rows))
    shown = {
        (cells[0].strip("\u2068\u2069"), cells[1].strip("\u2068\u2069")): cells for cells in section.table
    }
    for row in rows[:20]:
        cells = shown.get((row["rep"], row["currency"]))
        if cells is not None:
            assert cells[3] == format_value(MONEY, row["closed_won"], FA)
    assert any("٬" in cells[3] for cells in section.table), "Persian separators"
    assert "فروش قطعی" in section.table_head
    assert "Q4" not in section.title + section.note
    text = section.title + section.note + "".join(c for cells in section.table for c in cells)
    head = f"<style>{font_face_css(FA, text + FA.characters)}</style>"
    page = tmp_path / "forecast.html"
    page.write_text(_render_html("7d", digest.view, digest.previous_clock, [section], lambda c: "", FA, head))
    shot = tmp_path / "forecast.png"
    done = screenshot(page, shot, tmp_path / "chromium-profile", (1200, 1400))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not console_errors(done.stderr)
    from matplotlib.image import imread

    ink = imread(shot)[:, :, :3].sum(axis=2) < 1.5
    # Lines of text (bands of rows with ink) below the heading, and where each one's ink spans.
    inked = ink[120:].any(axis=1)
    edges = [y for y in range(1, len(inked)) if inked[y] != inked[y - 1]]
    bands = list(zip(edges[::2], edges[1::2], strict=False))
    spans = [ink[120 + a : 120 + b].any(axis=0).nonzero()[0] for a, b in bands]
    spans = [(int(s.min()), int(s.max())) for s in spans]
    assert len(spans) > 20, "the section's lines and table rows"
    # Each line starts on the right: it is at least as near the right edge of the page's
    # column as the left (table rows fill the column), and the page's ink leans right.
    column_left, column_right = min(a for a, _ in spans), max(b for _, b in spans)
    assert all(column_right - b <= a - column_left + 20 for a, b in spans), spans
    left, right = int(ink[120:, :600].sum()), int(ink[120:, 600:].sum())
    assert right > left, (left, right)
