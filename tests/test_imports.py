"""The import graph of the house: no circles, and the library never reaches up into the CLI.

Built from the source with ``ast`` (nothing is imported): every ``import`` and ``from ... import``
anywhere in a module, function bodies included, is an edge. A circle is looked for twice: between
modules, and between the house's units (a subpackage such as ``stages.train`` counts as one unit),
so that ``stages.a`` -> ``stages.train.data`` and ``stages.train.loop`` -> ``stages.a``
is a circle even though no module imports itself back.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("stages", "sesam_cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The house's modules that ``name`` (at ``path``) imports, resolved to known module names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    """Module -> the house's modules it imports."""
    modules = _modules()
    known = set(modules)
    return {name: _imported(name, path, known) for name, path in modules.items()}


def _unit(name: str) -> str:
    """The unit a module belongs to: a top-level module of a package, or a whole subpackage."""
    return ".".join(name.split(".")[:2])


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for name, targets in graph.items():
        edges = units.setdefault(_unit(name), set())
        edges.update(_unit(target) for target in targets if _unit(target) != _unit(name))
    return units


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_graph_sees_the_known_edges():
    graph = import_graph()
    assert "stages.errors" in graph["stages.io.artifacts"]
    assert "stages.train.model" in graph["stages.train.loop"]
    assert any(target.startswith("stages") for target in graph["sesam_cli.decompose"])


def test_find_cycle_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    assert find_cycle(import_graph()) is None


def test_no_import_cycle_between_units():
    assert find_cycle(unit_graph(import_graph())) is None


def test_stages_never_imports_sesam_cli():
    upward = {name: sorted(t for t in targets if t.startswith("sesam_cli"))
              for name, targets in import_graph().items() if name.startswith("stages")}
    assert {name: targets for name, targets in upward.items() if targets} == {}


def test_the_io_layer_imports_nothing_above_it():
    """``stages.io`` is the ground floor: every stage may use it, it uses only errors and presets."""
    allowed = {"stages", "stages.errors", "stages.presets"}
    upward = {name: sorted(t for t in targets if t not in allowed and not t.startswith("stages.io"))
              for name, targets in import_graph().items() if name.startswith("stages.io")}
    assert {name: targets for name, targets in upward.items() if targets} == {}
