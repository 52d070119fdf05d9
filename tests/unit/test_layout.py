"""The library's shape: it knows no example project, imports nothing above it (kfp, the
components, the pipelines, the CLI, the service, the examples), and its modules import each
other without circles.

Read from the source with ``ast``, not by importing it: a lazy import inside a function counts
for "what the library imports" as much as one at the top. (tests/pipelines/test_compile.py
checks the same layering at run time: which modules an import of the library loads.)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from aiinfra.project.config import PROJECT_ROOT

LIBRARY = PROJECT_ROOT / "src" / "aiinfra"
# Words of the loan example: none may appear in the library, not even in a comment.
EXAMPLE_WORDS = re.compile(
    r"loan|applicant|zipcode|default_probability|defaulted|credit", re.IGNORECASE
)
# Top-level packages the library may never import: what sits above it, and the examples.
ABOVE = {"kfp", "components", "pipelines", "aiinfra_cli", "serving", "examples", "tests"}


def _modules() -> dict[str, Path]:
    """Every module of the library by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = list(path.relative_to(LIBRARY.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    assert "aiinfra.steps" in found and "aiinfra.monitoring.monitor" in found
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements of a module; ``module_level``: only those that run when the module
    is imported (not inside functions, not under ``if TYPE_CHECKING:``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif module_level and isinstance(node, ast.If) and _is_type_checking(node):
            yield from (i for n in node.orelse for i in _imports(n, module_level))
        else:
            yield from _imports(node, module_level)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute names an import statement reads (a module, or a name in one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1 more
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _library_edges(module: str, module_level: bool) -> set[str]:
    """The library modules ``module`` imports."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    edges = set()
    for node in _imports(tree, module_level):
        for name in _targets(module, node):
            # "from aiinfra.x import y": y is a module of its own, or a name in aiinfra.x.
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.add(name)
    return edges


def _graph(module_level: bool) -> dict[str, set[str]]:
    return {m: _library_edges(m, module_level) for m in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that ends where it starts), if any."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_library_names_no_example_project() -> None:
    hits = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}"
        for path in MODULES.values()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if EXAMPLE_WORDS.search(line)
    ]
    assert not hits, "loan-example words in the library:\n" + "\n".join(hits)


def test_the_library_imports_nothing_above_it() -> None:
    bad = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in _imports(tree, module_level=False):  # lazy imports count too
            for name in _targets(module, node):
                if name.partition(".")[0] in ABOVE:
                    bad.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}: {name}")
    assert not bad, "the library imports what sits above it:\n" + "\n".join(sorted(set(bad)))


def test_module_level_imports_have_no_circle() -> None:
    graph = _graph(module_level=True)
    assert graph["aiinfra.steps"], "the graph is empty: the import reading is broken"
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_steps_and_monitoring_import_in_one_direction_only() -> None:
    # The monitoring pipeline's step runs the monitor (steps.monitor_serving, a lazy import of
    # aiinfra.monitoring.monitor); monitoring and the retraining check read what steps left
    # in the registry, and must reach steps through no import at all, not even a lazy one.
    lazy_too = _graph(module_level=False)
    assert "aiinfra.monitoring.monitor" in lazy_too["aiinfra.steps"]
    assert "aiinfra.monitoring.monitor" not in _graph(module_level=True)["aiinfra.steps"]
    for module in ("aiinfra.monitoring.monitor", "aiinfra.monitoring.retraining"):
        assert "aiinfra.steps" not in _reachable(lazy_too, module), module


def test_the_cycle_finder_finds_a_circle() -> None:
    """The checks above would pass on a broken reader; this one would not."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    tree = ast.parse(
        "import kfp\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import serving\n"
        "def f():\n    from pipelines import training\n"
    )
    names = {n.lineno for n in _imports(tree, module_level=True)}
    assert names == {1, 2}
    assert {n.lineno for n in _imports(tree, module_level=False)} == {1, 2, 4, 6}
