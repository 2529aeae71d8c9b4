"""The fonts a language's digest needs: found, used by the charts, embedded in the HTML.

matplotlib's default font has no Persian letters, and a reader's machine may lack them too.
A catalogue names its font files (``font_files``); this module finds each among the
system's fonts first (an operator who installs a fuller or newer cut overrides ours), else
in the package itself (``typefaces/``: Noto Sans Arabic cut to the digest's scripts, under
the SIL Open Font License in ``typefaces/OFL.txt``), so a plain ``pip install`` or the
Docker image writes the Persian digest with no system package. It draws the charts with
them and embeds them, cut down to the characters the page uses, in the HTML, so the page
stays one self-contained file.
"""

from __future__ import annotations

import base64
import logging
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
#: The font files that ship inside the package, with their license.
PACKAGED = Path(__file__).with_name("typefaces")
#: matplotlib's settings are process-wide; charts in different languages take turns.
_CHART_LOCK = threading.Lock()
_WEIGHTS = {"Bold": "bold"}
# The subsetter reports each table it prunes, and each character the font lacks (Latin, which
# falls back), at INFO: hundreds of lines a page in the digest's log, none of them news.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)


@cache
def font_paths(files: tuple[str, ...]) -> tuple[Path, ...]:
    """The font files with these names, in that order: a system font, else the package's."""
    if not files:
        return ()
    system = {Path(p).name: Path(p) for p in font_manager.findSystemFonts()}
    found = {name: system.get(name) or PACKAGED / name for name in files}
    missing = [name for name, path in found.items() if not path.is_file()]
    if missing:
        raise ReportError(
            f"font {', '.join(missing)} is neither among the system fonts nor in the package "
            f"({PACKAGED}): reinstall salespulse, or install the font"
        )
    for path in found.values():
        font_manager.fontManager.addfont(str(path))
    return tuple(found.values())


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
