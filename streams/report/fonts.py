"""The fonts a language's digest needs: found on the system, used by the charts, embedded in the HTML.

matplotlib's default font has no Persian letters, and a reader's machine may lack them too.
A catalogue names its font files (``font_files``); this module finds them among the
system's fonts (Debian's ``fonts-noto-core`` for Persian, installed by ``make``), draws the
charts with them and embeds them, cut down to the characters the page uses, in the HTML,
so the page stays one self-contained file.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from matplotlib import font_manager, rc_context

from salespulse.streams.report.catalogue import Catalogue
from salespulse.streams.report.errors import ReportError

#: The font family the HTML declares for embedded fonts.
EMBEDDED_FAMILY = "SalesPulse Text"
#: matplotlib's settings are process-wide; charts in different languages take turns.
_CHART_LOCK = threading.Lock()
_WEIGHTS = {"Bold": "bold"}


@cache
def font_paths(files: tuple[str, ...]) -> tuple[Path, ...]:
    """The system font files with these names, in that order."""
    if not files:
        return ()
    found = {Path(p).name: Path(p) for p in font_manager.findSystemFonts()}
    missing = [name for name in files if name not in found]
    if missing:
        raise ReportError(
            f"font {', '.join(missing)} not found among the system fonts: install Debian's "
            "fonts-noto-core (apt-get install -y --no-install-recommends fonts-noto-core)"
        )
    for name in files:
        font_manager.fontManager.addfont(str(found[name]))
    return tuple(found[name] for name in files)


@contextmanager
def chart_fonts(cat: Catalogue) -> Iterator[None]:
    """Draw the charts in the catalogue's fonts, falling back to matplotlib's for other scripts."""
    paths = font_paths(cat.font_files)
    with _CHART_LOCK:
        if not paths:
            yield
            return
        families = list(dict.fromkeys(font_manager.FontProperties(fname=p).get_name() for p in paths))
        with rc_context({"font.family": [*families, "DejaVu Sans"]}):
            yield


@lru_cache(maxsize=16)
def _subset_woff(path: Path, text: str) -> bytes:
    font = TTFont(path, recalcTimestamp=False)  # the same page bytes for the same content
    options = subset.Options()
    options.flavor = "woff"
    options.layout_features = ["*"]  # keep the joining forms the browser shapes with
    cutter = subset.Subsetter(options)
    cutter.populate(text=text)
    cutter.subset(font)
    out = BytesIO()
    font.flavor = "woff"
    font.save(out)
    return out.getvalue()


def font_face_css(cat: Catalogue, text: str) -> str:
    """``@font-face`` rules with the catalogue's fonts as ``data:`` URIs, cut to ``text``'s characters."""
    rules = []
    characters = "".join(sorted(set(text)))  # the same page content cuts the same font, from the cache
    for path in font_paths(cat.font_files):
        weight = _WEIGHTS.get(path.stem.rpartition("-")[2], "normal")
        data = base64.b64encode(_subset_woff(path, characters)).decode()
        rules.append(
            f'@font-face{{font-family:"{EMBEDDED_FAMILY}";font-weight:{weight};'
            f'src:url(data:font/woff;base64,{data}) format("woff")}}'
        )
    return "".join(rules)
