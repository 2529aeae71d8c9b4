"""The private parts of faust, mode and aiokafka the runtime touches: present as pinned, named when not."""

from __future__ import annotations

import io
import itertools
import re
import tokenize
from importlib.metadata import version
from pathlib import Path

import pytest

from salespulse.streams.pipeline import app, consumer, state_table
from salespulse.streams.pipeline.internals import (
    INTERNALS,
    Internal,
    InternalsChanged,
    check_internals,
    missing,
)

REPO = Path(__file__).resolve().parent.parent
STREAMS = REPO / "streams"


def test_every_private_attribute_is_present_in_the_installed_versions() -> None:
    assert missing() == []
    check_internals()


def test_the_installed_versions_are_the_pinned_ones() -> None:
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for package in {i.package for i in INTERNALS}:
        assert pins.get(package) == version(package), package


def test_a_missing_attribute_names_the_package_its_version_and_the_attribute() -> None:
    gone = Internal("faust-streaming", "faust.transport.drivers.aiokafka:Consumer", "_drain_messages_v2")
    field = Internal("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetch_max_wait", True)
    with pytest.raises(InternalsChanged) as changed:
        check_internals([*INTERNALS, gone, field])
    message = str(changed.value)
    assert f"faust-streaming {version('faust-streaming')} has no" in message
    assert "faust.transport.drivers.aiokafka.Consumer._drain_messages_v2" in message
    assert (
        f"aiokafka {version('aiokafka')} has no" in message and "AIOKafkaConsumer._fetch_max_wait," in message
    )
    assert "constraints.txt" in message and "\n" not in message


def test_an_instance_attribute_counts_only_while_the_library_s_code_uses_it() -> None:
    assert not missing(
        [Internal("faust-streaming", "faust.tables.recovery:Recovery", "_last_flush_at", True)]
    )
    assert missing([Internal("faust-streaming", "faust.tables.recovery:Recovery", "_last_flushed_at", True)])
    assert missing([Internal("faust-streaming", "faust.tables.nowhere:Recovery", "_last_flush_at", True)])


def test_the_list_covers_every_private_name_the_runtime_reads_or_sets_on_a_library_object() -> None:
    """Each ``._name`` in streams/ is defined there (a method, or set by our code) or listed."""
    listed = {i.name for i in INTERNALS}
    ours: set[str] = set()
    used: set[str] = set()
    for path in STREAMS.rglob("*.py"):
        text = path.read_text()
        ours |= set(re.findall(r"def (_\w+)\(", text)) | set(re.findall(r"self\.(_\w+)(?:: [^=]+)? = ", text))
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        used |= {
            token.string
            for before, token in itertools.pairwise(tokens)
            if before.string == "."
            and token.type == tokenize.NAME
            and token.string.startswith("_")
            and not token.string.startswith("__")
        }
    assert used - ours - listed - {"_exit"} == set()


def test_the_list_covers_every_private_method_the_pipeline_overrides() -> None:
    listed = {i.name for i in INTERNALS}
    overridden = set()
    for module in (app, consumer, state_table):
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == module.__name__):
                continue
            libraries = [base for base in cls.__mro__[1:] if not base.__module__.startswith("salespulse.")]
            for name in vars(cls):
                inherited = any(name in vars(b) for b in libraries)
                if name.startswith("_") and not name.startswith("__") and name != "_abc_impl" and inherited:
                    overridden.add(name)
    assert overridden >= {"_new_transport", "_drain_messages", "_consumer_record"}
    assert overridden - listed == set()
