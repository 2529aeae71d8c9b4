"""Writing the digest to disk: the self-contained HTML page, the text and the PNGs.

Every file is written atomically (temporary file, then rename), so a reader or a web
server never sees half a digest, and the outbox uses the same writer for its messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from salespulse.streams.report.model import Digest


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def image_filename(content_id: str) -> str:
    return content_id.split("@", 1)[0] + ".png"


def write_digest(digest: Digest, out_dir: Path) -> Path:
    """Write ``digest.html`` (self-contained), ``digest.txt`` and the PNGs; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for content_id, png in digest.images.items():
        _write_atomic(out_dir / image_filename(content_id), png)
    _write_atomic(out_dir / "digest.txt", digest.text.encode())
    page = out_dir / "digest.html"
    _write_atomic(page, digest.html_file.encode())
    return page
