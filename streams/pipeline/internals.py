"""The private parts of faust, mode and aiokafka that the runtime touches, checked at start.

The batch path (``consumer.py``), the state table (``state_table.py``), the runtime's
producer and metadata access (``runtime.py``), the app (``app.py``) and the access
middleware (``web.py``) override or read attributes that these libraries do not promise to
keep. ``constraints.txt`` pins the
versions they were written against, and :func:`check_internals` makes a worker that runs
on other versions stop at start with a message naming the package, its version and the
attribute, instead of failing later in the middle of a fetch or a recovery.

An attribute set on instances (``self._n_acked = ...``) has nothing to look up on the
class: it counts as present when some method of the class (or a base) still uses the name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any


class InternalsChanged(RuntimeError):
    """An installed library lacks a private attribute the runtime relies on."""


@dataclass(frozen=True)
class Internal:
    """One private attribute: its distribution, where it lives, and whether instances hold it."""

    package: str
    owner: str  # "module" or "module:Class"
    name: str
    instance: bool = False


_FAUST_CONSUMER = "faust.transport.drivers.aiokafka:Consumer"
_FAUST_THREAD = "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread"
_RECOVERY = "faust.tables.recovery:Recovery"

#: Every private attribute the runtime overrides, calls, reads or sets.
INTERNALS: tuple[Internal, ...] = (
    # consumer.py: records of the input topics go out as aiokafka parsed them.
    Internal("aiokafka", "aiokafka.consumer.fetcher", "PartitionRecords"),
    Internal("aiokafka", "aiokafka.consumer.fetcher:PartitionRecords", "_consumer_record"),
    # consumer.py: the short fetch wait, set on the consumer faust creates.
    Internal("faust-streaming", _FAUST_THREAD, "_create_worker_consumer"),
    Internal("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetch_max_wait_ms", True),
    # consumer.py: the batch path in faust's drain loop and its offset bookkeeping.
    Internal("faust-streaming", _FAUST_CONSUMER, "_new_consumer_thread"),
    Internal("faust-streaming", _FAUST_CONSUMER, "_new_offset"),
    Internal("faust-streaming", _FAUST_CONSUMER, "_drain_messages"),
    Internal("faust-streaming", _FAUST_CONSUMER, "_wait_next_records"),
    Internal("faust-streaming", _FAUST_CONSUMER, "_to_message"),
    Internal("faust-streaming", _FAUST_CONSUMER, "_acked", True),
    Internal("faust-streaming", _FAUST_CONSUMER, "_n_acked", True),
    Internal("faust-streaming", _FAUST_CONSUMER, "_read_offset", True),
    Internal("faust-streaming", _FAUST_CONSUMER, "_commit_every", True),
    Internal("mode-streaming", "mode.services:Service", "_stopped", True),
    # consumer.py: changelog batches restored in one go, keeping Recovery's books.
    Internal("faust-streaming", _RECOVERY, "_active_events_received_at", True),
    Internal("faust-streaming", _RECOVERY, "_last_active_event_processed_at", True),
    Internal("faust-streaming", _RECOVERY, "_standby_events_received_at", True),
    Internal("faust-streaming", _RECOVERY, "_last_flush_at", True),
    Internal("faust-streaming", _RECOVERY, "_set_recovery_ended"),
    # runtime.py: the aiokafka producer for batches, the consumer's metadata for partitions.
    Internal("faust-streaming", "faust.transport.drivers.aiokafka:Producer", "_ensure_producer"),
    Internal("faust-streaming", _FAUST_CONSUMER, "_thread", True),
    Internal("faust-streaming", _FAUST_THREAD, "_ensure_consumer"),
    Internal("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_client", True),
    # app.py and state_table.py: the batch transport, the engine store, the prompt table manager.
    Internal("faust-streaming", "faust.app.base:App", "_new_transport"),
    Internal("faust-streaming", "faust.tables.base:Collection", "_new_store"),
    Internal("faust-streaming", "faust.tables.manager:TableManager", "_update_channels"),
    # web.py: the access middleware goes on the aiohttp application under faust's web driver.
    Internal("faust-streaming", "faust.web.drivers.aiohttp:Web", "web_app", True),
)


def _resolve(owner: str) -> Any:
    module, _, qualname = owner.partition(":")
    found: Any = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        found = getattr(found, part)
    return found


def _functions(cls: type) -> Iterator[Any]:
    """Every function defined on ``cls`` and its bases, properties' accessors included."""
    for klass in cls.__mro__:
        for value in vars(klass).values():
            if isinstance(value, property):
                yield from (f for f in (value.fget, value.fset, value.fdel) if f is not None)
            elif isinstance(value, staticmethod | classmethod):
                yield value.__func__
            elif inspect.isfunction(value):
                yield value


def _used_by(cls: type, name: str) -> bool:
    """Whether some method of ``cls`` (or a nested function in one) names attribute ``name``."""
    pending = [f.__code__ for f in _functions(cls) if hasattr(f, "__code__")]
    while pending:
        code = pending.pop()
        if name in code.co_names:
            return True
        pending += [c for c in code.co_consts if inspect.iscode(c)]
    return False


def _present(internal: Internal) -> bool:
    try:
        owner = _resolve(internal.owner)
    except (ImportError, AttributeError):
        return False
    if internal.instance:
        return isinstance(owner, type) and _used_by(owner, internal.name)
    return hasattr(owner, internal.name)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def missing(internals: Iterable[Internal] = INTERNALS) -> list[str]:
    """One line per private attribute the installed libraries lack."""
    return [
        f"{i.package} {_version(i.package)} has no {i.owner.replace(':', '.')}.{i.name},"
        " which SalesPulse's runtime uses; install the versions in constraints.txt"
        for i in internals
        if not _present(i)
    ]


def check_internals(internals: Iterable[Internal] = INTERNALS) -> None:
    """Raise :class:`InternalsChanged` naming each missing attribute (at a worker's start)."""
    problems = missing(internals)
    if problems:
        raise InternalsChanged("; ".join(problems))
