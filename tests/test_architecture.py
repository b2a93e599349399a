"""The shape of the package: the import graph of ``src/trivflow`` (read with ``ast``, nothing is
imported) has no cycle, and no library module imports the application (docs/architecture.md).

Application modules: ``trivflow.app.*`` and the command lines ``trivflow.run`` and
``trivflow.report`` on top of it. Everything else is library.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """module → the trivflow modules it imports when it runs (anywhere in the file, function
    bodies included; imports for type checkers only are left out).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        edges = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
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


#: library modules that adapt a config group themselves (``priors.factory`` builds priors from the
#: ``prior.*`` values, ``priors.ensemble`` reads the ensembles ``prior.ensemble`` names)
CONFIG_ADAPTERS = ("trivflow.priors.factory", "trivflow.priors.ensemble")
CONFIG_KEY = re.compile(r"\b(lattice|sampler|train|flow|prior|analysis)\.[a-z_]+")


def test_library_errors_name_library_parameters_not_config_keys():
    """A raise in the library never spells a config key (``sampler.num_steps``): it names its own
    parameter (trivflow.errors.ParameterError) and the application renames it."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        module = module_name(path)
        if is_application(module) or module in CONFIG_ADAPTERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise):
                texts = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                offenders += [f"{module}:{node.lineno}: {t}" for t in texts if CONFIG_KEY.search(t)]
    assert offenders == []


def test_the_application_renames_library_parameters():
    from trivflow.app.config import SAMPLER_KEYS, config_keys
    from trivflow.errors import ParameterError, must_be
    from trivflow.hmc import build_kernel

    with pytest.raises(ParameterError, match="^num_steps must be a positive integer, got num_steps=0$"):
        build_kernel(lambda x, p: x.sum(), num_steps=0)
    with pytest.raises(ParameterError, match="^sampler.num_steps must be a positive integer, got num_steps=0$"):
        with config_keys(SAMPLER_KEYS):
            build_kernel(lambda x, p: x.sum(), num_steps=0)
    err = ParameterError("{a}={x} with {b} and {c}", "a", "b")  # {x}, {c}: not parameter names
    assert str(err) == "a={x} with b and {c}" and isinstance(must_be("x", 1, "> 2"), ValueError)
    assert err.renamed({"a": "group.a"}) == "group.a={x} with b and {c}"


def test_the_entry_point_imports_no_library_a_job_may_not_need():
    """Startup time (docs/performance.md, seconds to the first sample): importing the command
    line, the pipeline and the HMC driver loads none of Flax, NumPyro/SciPy, Matplotlib,
    xarray/ArviZ, Optax — each is imported where it is used (a fresh interpreter: this test
    process has them all)."""
    import os
    import subprocess
    import sys

    heavy = ("matplotlib", "numpyro", "flax", "arviz", "xarray", "scipy", "optax")
    code = ("import sys, trivflow, trivflow.run, trivflow.app.experiment, trivflow.hmc; "
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT.parent)})
    assert out.stdout.split() == []
    assert trivflow.flows.Flow is not None and "flows" in dir(trivflow)  # subpackages still load on access


def test_validating_a_flow_job_imports_no_flax():
    """Startup time: the application validates every ``flow.*`` key (:class:`FlowConfig`, plain
    Python) before compute without importing Flax or Optax (≈ 0.45 s); they load when a flow is
    built, after a coarse prior's HMC ensemble has started. And ``trivflow.flows`` still gives its
    names and submodules on first access."""
    import os
    import subprocess
    import sys

    conf = ROOT / "conf"
    code = ("import sys\n"
            "from hydra import compose, initialize_config_dir\n"
            "from trivflow.app.config import register_configs, validate\n"
            "register_configs()\n"
            f"with initialize_config_dir(config_dir={str(conf)!r}, version_base=None):\n"
            "    cfg = compose(config_name='config', overrides=['experiment=coarse_interp'])\n"
            "validate(cfg)\n"
            "print(' '.join(m for m in ('flax', 'optax') if m in sys.modules))\n"
            "import trivflow.flows as f\n"
            "assert f.FlowConfig is f.config.FlowConfig and f.Flow.__module__ == 'trivflow.flows.flow'\n"
            "assert f.layers.AffineCoupling is f.AffineCoupling and 'flax' in sys.modules\n"
            "try:\n    f.no_such_name\nexcept AttributeError:\n    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT.parent)})
    assert out.stdout.split() == ["refused"]
