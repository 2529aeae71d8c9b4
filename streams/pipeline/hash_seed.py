"""One string-hash seed per data directory, so a state snapshot means the same after a restart.

The engine keeps customer and event ids as ``hash(id)`` (agents/customers.py,
streams/pipeline/seen_ids.py): about 16 bytes an id instead of the id itself. Python seeds
``hash()`` of strings afresh in every process, so a state image saved by one process is
meaningless to the next, unless both run with the same ``PYTHONHASHSEED``. A worker
therefore keeps a random seed in its data directory (readable by its owner only, so ids
cannot be chosen to collide on purpose) and, started without it, re-executes itself with
it before it imports anything else.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

SEED_FILE = "hash-seed"
_VARIABLE = "PYTHONHASHSEED"


def _read(path: Path) -> str | None:
    try:
        seed = path.read_text().strip()
    except OSError:
        return None
    return seed if seed.isdigit() and int(seed) < 2**32 else None


def remember(data_dir: Path, seed: str) -> None:
    """Store ``seed`` as the directory's, atomically and readable by its owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = data_dir / f".{SEED_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(seed)
    os.replace(temporary, data_dir / SEED_FILE)


def pin(data_dir: Path) -> None:
    """Make this process run with the directory's seed, re-executing it if it does not yet.

    Call it first thing: the process is replaced, so nothing done before survives.
    """
    seed = _read(data_dir / SEED_FILE)
    if seed is None:
        seed = str(secrets.randbelow(2**32 - 1) + 1)  # 0 would turn randomisation off
        remember(data_dir, seed)
    if os.environ.get(_VARIABLE) != seed:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, _VARIABLE: seed})


def pinned(data_dir: Path) -> bool:
    """Whether this process hashes as the directory says; a directory wiped since start-up
    (state of another broker) takes this process's seed."""
    current = os.environ.get(_VARIABLE)
    if current is None or not current.isdigit() or current == "0":
        return False
    saved = _read(data_dir / SEED_FILE)
    if saved is None:
        remember(data_dir, current)
        return True
    return saved == current
