"""A worker's freed large blocks leave its resident size once the mmap threshold is fixed.

Each probe runs in a fresh process: it frees one large block, which makes glibc raise its
threshold, then frees 64 MiB of 1 MiB blocks kept apart by small blocks that stay, as a
worker's long-lived state does between its per-batch buffers.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import sys
from salespulse.streams.pipeline.allocator import fix_mmap_threshold

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = bytearray(4 << 20)
del big
base = rss_mb()
blocks, kept = [], []
for _ in range(64):
    blocks.append(bytearray(1 << 20))
    kept.append(bytearray(1024))
del blocks
print(rss_mb() - base)
"""


def _left_after_free(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_large_blocks_go_back_to_the_system_with_the_threshold_fixed() -> None:
    assert _left_after_free("adaptive") > 48, "the probe should show glibc keeping freed blocks"
    assert _left_after_free("fixed") < 8
