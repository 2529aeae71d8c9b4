"""Compiles the per-event hot path to C with mypyc; everything else stays plain Python.

The decoder, the engine, the rolling tables, dedupe and the eight KPIs run once or more per
event; compiled, the engine runs half the instructions an event (docs/benchmark.md).
They are the same typed source that mypy checks, so nothing is written twice. Without a C compiler, or with
``SALESPULSE_PURE_PYTHON=1``, the package installs as plain Python and behaves the same.

The folders ``streams/``, ``agents/`` and ``schemas/`` install as ``salespulse.*``
(pyproject's package-dir), but mypy and mypyc name a module after the folders it sits in.
So both read an import tree, ``build/import-tree/salespulse/``, whose entries link to the
folders: the compiled modules are then named ``salespulse.streams...`` like the Python ones.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
IMPORT_TREE = ROOT / "build" / "import-tree"
PACKAGES = ("streams", "agents", "schemas")

# The module list lives with the code that reports on it at run time.
sys.path.insert(0, str(ROOT / "streams"))
from hot_path import GROUP, pure_python_requested, source_files  # noqa: E402


def import_tree() -> Path:
    """Lay out ``build/import-tree/salespulse/{streams,agents,schemas}`` as links to the folders."""
    package = IMPORT_TREE / "salespulse"
    package.mkdir(parents=True, exist_ok=True)
    # Only mypy and mypyc read this file: the installed `salespulse` is a namespace package.
    (package / "__init__.py").write_text('"""The import tree mypy and mypyc read (setup.py)."""\n')
    for name in PACKAGES:
        link = package / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..", "..", "..", name), target_is_directory=True)
    return IMPORT_TREE


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
    tree = import_tree()
    reason = _can_compile()
    if reason is not None:
        print(f"salespulse: installing the hot path as plain Python: {reason}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    sources = [str((tree / path).relative_to(ROOT)) for path in source_files()]
    # A dotted group name keeps mypyc's shared library inside the package, not at the top.
    return list(mypycify(sources, opt_level="3", group_name=GROUP))


setup(ext_modules=ext_modules())
