"""Which modules every event passes through, and whether they run compiled.

``setup.py`` compiles these with mypyc where a C compiler is at hand, and installs them as
plain Python where not. The two behave the same, but the compiled engine runs half the
instructions an event, so the benchmark and the worker's start-up log say which one is
running.
"""

from __future__ import annotations

import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Final

#: In the order an event meets them.
HOT_MODULES: Final = (
    "salespulse.schemas.event_time",
    "salespulse.schemas.fast_decoder",
    "salespulse.schemas.partitions",
    "salespulse.schemas.codec",
    "salespulse.schemas.topics",
    "salespulse.streams.pipeline.seen_ids",
    "salespulse.streams.pipeline.outcomes",
    "salespulse.streams.pipeline.engine",
    "salespulse.agents.money",
    "salespulse.agents.customers",
    "salespulse.agents.rolling",
    "salespulse.agents.base",
    "salespulse.agents.leads",
    "salespulse.agents.acquisition",
    "salespulse.agents.sales",
    "salespulse.agents.pricing",
    "salespulse.agents.engagement",
    "salespulse.agents.enps",
    "salespulse.agents.expansion",
    "salespulse.agents.nps",
    "salespulse.agents.detractors",
    "salespulse.agents.forecast_calendar",
    "salespulse.agents.forecast_plan",
    "salespulse.agents.forecast_state",
    "salespulse.agents.forecast",
)


def pure_python_requested() -> bool:
    """Whether ``SALESPULSE_PURE_PYTHON`` asks for the plain Python build (read at install)."""
    return os.environ.get("SALESPULSE_PURE_PYTHON", "") not in ("", "0")


#: mypyc's group: its shared library is ``salespulse/streams/hot__mypyc``, inside the package.
GROUP: Final = "salespulse.streams.hot"


def source_files() -> list[str]:
    """The hot modules as paths under the import tree (``salespulse/...``), for the build."""
    return [name.replace(".", "/") + ".py" for name in HOT_MODULES]


def plain_python() -> list[str]:
    """Hot modules that were imported from Python source rather than compiled."""
    return [
        name
        for name in HOT_MODULES
        if not str(getattr(importlib.import_module(name), "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES))
    ]


def describe() -> str:
    """``compiled (mypyc)``, or which hot modules run as plain Python."""
    plain = plain_python()
    if not plain:
        return "compiled (mypyc)"
    if len(plain) == len(HOT_MODULES):
        return "plain Python"
    return "partly compiled; plain Python: " + ", ".join(plain)
