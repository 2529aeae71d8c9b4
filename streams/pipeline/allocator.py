"""Keep memory a worker has freed out of its resident size (glibc's malloc).

glibc gives a large block (above the "mmap threshold", 128 KiB at start) its own mapping,
which goes back to the system when freed. But each time such a block is freed, glibc raises
the threshold to its size, up to 32 MiB, and from then on serves blocks that large from its
heap, which gives memory back only from its top. A worker frees large blocks all the time:
fetched record batches, the seen-id columns rebuilt on every merge, packed per-customer
columns that grow by copying. Measured with ``salespulse bench --memory-customers 300000``
(peak RSS, one run each): 248 MB with the adaptive threshold, 220 MB with it fixed.

With the threshold fixed, every large block is a mapping of its own: returned when freed,
and grown in place (``mremap``) rather than copied, at the cost of a system call or two per
large allocation, a few hundred a second here.
"""

from __future__ import annotations

import ctypes
from typing import Final

#: ``mallopt`` parameter number of the mmap threshold (glibc's malloc.h).
M_MMAP_THRESHOLD: Final = -3
#: glibc's own starting value; setting it also stops the adaptation.
MMAP_THRESHOLD: Final = 128 * 1024


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold; False where the C library has no ``mallopt`` that takes it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
