"""The shape of the package: the import graph of ``src/trivflow`` (read with ``ast``, nothing is
imported) has no cycle, and no library module imports the application (docs/architecture.md).

Application modules: ``trivflow.app.*`` and the command lines ``trivflow.run`` and
``trivflow.report`` on top of it. Everything else is library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trivflow

ROOT = Path(trivflow.__file__).parent
APPLICATION = ("trivflow.app", "trivflow.run", "trivflow.report")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module → the trivflow modules it imports (anywhere in the file, function bodies included).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = resolve(module, path.name == "__init__.py", node)
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in files else target for a in node.names]
            else:
                continue
            edges |= {n for n in names if n in files and n != module}
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first = last), or None (iterative DFS)."""
    state, parent = {}, {}
    for root in graph:
        if root in state:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        state[root] = "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = "done"
                stack.pop()
            elif state.get(child) == "open":
                cycle = [child]
                while node != child:
                    cycle.append(node)
                    node = parent[node]
                return [child, *reversed(cycle)]
            elif child not in state:
                state[child], parent[child] = "open", node
                stack.append((child, iter(sorted(graph[child]))))
    return None


def is_application(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in APPLICATION)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) in (
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_is_acyclic():
    graph = import_graph()
    assert "trivflow.app.experiment" in graph and "trivflow.hmc.kernel" in graph["trivflow.hmc"]
    # a package's __init__ importing its own submodules is an edge package → submodule; a
    # submodule importing its package's __init__ back would close a cycle and is refused too
    assert find_cycle(graph) is None


def test_library_never_imports_the_application():
    graph = import_graph()
    offenders = {m: sorted(e for e in edges if is_application(e))
                 for m, edges in graph.items() if not is_application(m)}
    assert {m: e for m, e in offenders.items() if e} == {}
