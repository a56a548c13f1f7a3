"""Imports run down the floor plan: no cycle among grocker's modules, and each wing imports only
the wings below it (the table ALLOWED).

The graph is read from the source (every import statement, function-level and TYPE_CHECKING
ones included), so a late import cannot hide a dependency. Importing `grocker.a.b` runs
`grocker/a/__init__.py` first: for cycles, an import of a submodule from outside its package is
also an edge to each enclosing package (but `grocker` itself, which always runs first); for the
directions, each module answers for the imports it writes (a package's __init__ for its own).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Set
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "grocker"

# Each module belongs to the wing of its longest matching prefix.
WINGS = {
    "grocker": "entry",
    "grocker.__main__": "entry",
    "grocker.cli": "entry",
    "grocker.api": "entry",
    "grocker.purge": "purge",
    "grocker.chain": "chain",
    "grocker.sbom": "sbom",
    "grocker.naming": "names",
    "grocker.trust": "names",
    "grocker.wheels": "names",
    "grocker.config": "config",
    "grocker.engine": "engine",
    # The engine's docker-free faces: what it must do (the protocols) and which one to reach.
    "grocker.engine.protocol": "engine-face",
    "grocker.engine.endpoint": "engine-face",
    # The shapes shared with the programs that run in containers: they import nothing of ours.
    "grocker.wire": "wire",
    "grocker._version": "leaf",
    "grocker.reference": "leaf",
    "grocker.errors": "leaf",
    "grocker.log": "leaf",
    "grocker.labels": "leaf",
    "grocker.layout": "leaf",
}

# The wings each wing may import, besides its own modules.
ALLOWED: Mapping[str, Set[str]] = {
    "entry": {"purge", "chain", "sbom", "names", "config", "engine", "engine-face", "wire", "leaf"},
    # purge and api are the only ones that reach docker-py's side of the engine (to connect).
    "purge": {"engine", "engine-face", "leaf"},
    "chain": {"sbom", "names", "config", "engine-face", "wire", "leaf"},
    "sbom": {"names", "config", "engine-face", "wire", "leaf"},
    "names": {"config", "leaf"},
    "config": {"leaf"},
    "engine": {"engine-face", "leaf"},
    "engine-face": {"leaf"},
    "wire": {"leaf"},
    "leaf": set(),
}


def module_files(package: Path) -> dict[str, Path]:
    """The dotted name of every module of the package (resources aside: they run in containers)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        if "resources" in relative.parts:
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(files: Mapping[str, Path], packages: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (`from pkg import mod` names the module).

    With `packages`, also the packages whose __init__ such an import runs.
    """
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: a relative import; the package uses absolute ones"
                module = node.module or ""
                targets.update(
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in files else module for alias in node.names
                )
        graph[name] = set()
        for target in targets & set(files):
            graph[name].add(target)
            parts = target.split(".")
            for depth in range(2, len(parts) if packages else 2):
                enclosing = ".".join(parts[:depth])
                if not (name == enclosing or name.startswith(f"{enclosing}.")):
                    graph[name].add(enclosing)
        graph[name].discard(name)
    return graph


def wing(module: str) -> str:
    """The wing of `module`: that of its longest prefix in WINGS."""
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        if prefix in WINGS:
            return WINGS[prefix]
    raise KeyError(module)


def cycles(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: Mapping[str, Set[str]]) -> list[str]:
    """The imports that the table ALLOWED does not allow, as `a (wing) -> b (wing)`."""
    wrong = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            source, destination = wing(name), wing(target)
            if source != destination and destination not in ALLOWED[source]:
                wrong.append(f"{name} ({source}) -> {target} ({destination})")
    return wrong


GRAPH = import_graph(module_files(PACKAGE))
WRITTEN = import_graph(module_files(PACKAGE), packages=False)


def test_every_module_has_a_wing() -> None:
    """A new top-level module falls in `grocker`'s wing (entry, which may import anything) unless
    it is placed: so only the modules listed as entry points may be there."""
    assert [name for name in GRAPH if name != "grocker" and wing(name) == "entry" and name not in WINGS] == []
    assert set(ALLOWED) == set(WINGS.values())


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_imports_run_down() -> None:
    assert upward(WRITTEN) == []


def test_the_leaves_import_nothing_but_leaves() -> None:
    """The version, the reference grammar, errors, log, labels and layout: the floor of the house."""
    leaves = [name for name in GRAPH if wing(name) == "leaf"]

    assert sorted(leaves) == sorted(name for name, kind in WINGS.items() if kind == "leaf" and name in GRAPH)
    assert {target for name in leaves for target in WRITTEN[name]} <= set(leaves)


def test_the_checks_catch_a_planted_cycle_and_an_upward_import() -> None:
    planted = {
        "grocker.engine.docker": {"grocker.config"},  # the engine reading the configuration
        "grocker.config": {"grocker.naming"},
        "grocker.naming": {"grocker.config"},  # the loop that config and naming once made
    }

    assert cycles(planted) == [["grocker.config", "grocker.naming"]]
    assert upward(planted) == [
        "grocker.config (config) -> grocker.naming (names)",
        "grocker.engine.docker (engine) -> grocker.config (config)",
    ]


def test_a_submodule_import_runs_its_package(tmp_path: Path) -> None:
    """`from grocker.config import pipconf` runs grocker/config/__init__.py: an edge to it too."""
    root = tmp_path / "grocker"
    (root / "config").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "config" / "__init__.py").write_text("from grocker import naming\n")
    (root / "config" / "pipconf.py").write_text("")
    (root / "naming.py").write_text("def late():\n    from grocker.config import pipconf\n")

    graph = import_graph(module_files(root))

    assert graph["grocker.naming"] == {"grocker.config", "grocker.config.pipconf"}
    assert cycles(graph) == [["grocker.config", "grocker.naming"]]
    assert cycles(import_graph(module_files(root), packages=False)) == []
