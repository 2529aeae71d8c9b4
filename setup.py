"""Compiles the per-event hot path to C with mypyc; everything else stays plain Python.

The decoder, the engine, the rolling tables, dedupe and the eight KPIs run once or more per
event; compiled, the engine runs half the instructions an event (README, Benchmark).
They are the same typed source that mypy checks, so nothing is written twice. Without a C compiler, or with
``SALESPULSE_PURE_PYTHON=1``, the package installs as plain Python and behaves the same.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

# The module list lives with the code that reports on it at run time.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from streams.hot_path import pure_python_requested, source_files


def _can_compile() -> str | None:
    """Why the hot path cannot be compiled here, or None if it can."""
    if pure_python_requested():
        return "SALESPULSE_PURE_PYTHON is set"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers in {include}"
    return None


def ext_modules() -> list[Extension]:
    reason = _can_compile()
    if reason is not None:
        print(f"salespulse: installing the hot path as plain Python: {reason}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    return list(mypycify(source_files(), opt_level="3"))


setup(ext_modules=ext_modules())
