"""The house rules of the code: one import name, no import cycle, agents apart from streams.

The folders ``streams/``, ``agents/`` and ``schemas/`` install as ``salespulse.*``. Upstream
services install SalesPulse into their own environments, so the distribution must own
exactly one import name, and the KPI logic must not reach into the plumbing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("streams", "agents", "schemas")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["salespulse", *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for folder in FOLDERS for path in (REPO / folder).rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every project module a module imports, wherever the import stands (functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_is_read_from_every_module() -> None:
    graph = _graph()
    assert "salespulse.streams.composition" in graph
    assert "salespulse.streams.endpoints.web" in graph["salespulse.streams.composition"]
    # TYPE_CHECKING imports count too: a cycle hidden behind one is still a cycle.
    assert "salespulse.streams.pipeline.runtime" in graph["salespulse.streams.endpoints.web"]


def test_no_module_imports_itself_through_others() -> None:
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _imports_out_of(package: str, allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """Imports from modules of ``package`` into project modules outside ``allowed``."""
    return sorted(
        (name, target)
        for name, targets in _graph().items()
        if name.startswith(package)
        for target in targets
        if not target.startswith(allowed)
    )


def _imports_into(package: str, target: str) -> list[tuple[str, str]]:
    """Imports from modules of ``package`` into modules of ``target``."""
    return sorted(
        (name, to)
        for name, tos in _graph().items()
        if name.startswith(package)
        for to in tos
        if to.startswith(target)
    )


def test_agents_import_only_agents_and_the_contract_not_streams() -> None:
    assert _imports_out_of("salespulse.agents", ("salespulse.agents", "salespulse.schemas")) == []


def test_the_contract_imports_nothing_but_itself() -> None:
    assert _imports_out_of("salespulse.schemas", ("salespulse.schemas",)) == []


def test_kafka_administration_sits_below_the_pipeline_and_the_endpoints() -> None:
    """Topics and end offsets are one room that the worker, the connectors and the CLI share."""
    allowed = ("salespulse.streams.kafka", "salespulse.streams.settings", "salespulse.schemas")
    assert _imports_out_of("salespulse.streams.kafka", allowed) == []
    graph = _graph()
    for user in (
        "salespulse.streams.pipeline.worker",
        "salespulse.streams.endpoints.connectors.vtiger.service",
    ):
        assert "salespulse.streams.kafka.admin" in graph[user]
    connectors = set().union(
        *(t for n, t in graph.items() if n.startswith("salespulse.streams.endpoints.connectors"))
    )
    assert "salespulse.streams.pipeline.worker" not in connectors


def test_the_pipeline_never_imports_the_endpoints() -> None:
    """The worker's composition (``streams/composition.py``) installs the views and the
    exporter on the pipeline; the pipeline only offers the runtime they read."""
    assert [
        i for i in _imports_out_of("salespulse.streams.pipeline", ("salespulse.",)) if ".endpoints" in i[1]
    ] == []
    graph = _graph()
    assert {"salespulse.streams.endpoints.web", "salespulse.streams.pipeline.worker"} <= graph[
        "salespulse.streams.composition"
    ]


def test_the_connectors_never_import_the_pipeline() -> None:
    """A connector checks its events with the contract's codec and creates its topics in the
    Kafka room, as the worker does, without reaching into the worker."""
    connectors = "salespulse.streams.endpoints.connectors"
    assert _imports_into(connectors, "salespulse.streams.pipeline") == []
    assert "salespulse.schemas.codec" in _graph()["salespulse.streams.endpoints.connectors.vtiger.records"]


def _run_away_from_the_repository(code: str, where: Path) -> str:
    """What ``code`` prints in a fresh interpreter run from ``where``, where the repository's
    folders are not importable as they are."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=where, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_installed_distribution_owns_one_import_name(tmp_path: Path) -> None:
    probe = (
        "import importlib.util as u, salespulse.streams.endpoints.producer, salespulse.agents.base;"
        "print([n for n in ('streams', 'agents', 'schemas') if u.find_spec(n)])"
    )
    assert _run_away_from_the_repository(probe, tmp_path) == "[]"
    # Read from site-packages: the build's egg-info in the repository root would answer first.
    (dist,) = importlib.metadata.distributions(name="salespulse", path=[sysconfig.get_paths()["purelib"]])
    assert (dist.read_text("top_level.txt") or "").split() == ["salespulse"]
    files = {str(file) for file in dist.files or []}
    if "salespulse/streams/pipeline/engine.py" in files:  # a wheel install; editable ones hold a finder
        top = {name.split("/")[0] for name in files if not name.startswith("..")}
        assert top == {"salespulse", f"salespulse-{dist.version}.dist-info"}
        assert "salespulse/schemas/deal.won.schema.json" in files


def test_a_worker_loads_the_charting_stack_only_to_draw(tmp_path: Path) -> None:
    # matplotlib, fontTools and PIL are about 40 MB of a worker's memory; only /report uses them.
    probe = (
        "import sys, salespulse.streams.composition;"
        "print(sorted(m for m in ('matplotlib', 'fontTools', 'PIL') if m in sys.modules))"
    )
    assert _run_away_from_the_repository(probe, tmp_path) == "[]"
