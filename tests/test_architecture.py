"""Imports inside labelsmooth run one way: no module imports one above it, even in a function.

The layers, from the bottom: backend facts and argument checks; the numerical core; the
kernel interface and the array-API kernel; the backend kernels; the loss assembled around
a kernel, problem preparation and the lean path of small problems; PyTorch's and JAX's
autodiff of the losses; the public functions; the framework adapters and the command line.
A module may import from its own layer or below, and the graph of imports has no cycle.
"""

from __future__ import annotations

import ast
import pathlib

import labelsmooth

LAYERS = [
    {"_version", "_docs", "typing"},
    {"_backend"},
    {"_validation"},
    {"_core"},
    {"_kernel"},
    {"_numpy_fast", "_jax_fast", "_torch_fast"},
    {"_assembly", "_problem", "_small"},
    {"_torch_autograd", "_jax_autodiff", "_vocab_parallel"},
    {"_torch_vocab_parallel", "_jax_vocab_parallel"},
    {"_losses", "_linear", "_kl", "_binary", "_softmax", "metrics", "schedules", "testing"},
    {"__init__"},
    {"torch", "jax", "__main__"},
]
PACKAGE = pathlib.Path(labelsmooth.__file__).parent


def _unit(module: str) -> str:
    """The layer unit of a dotted module name inside the package (``testing.x`` -> ``testing``)."""
    parts = module.split(".")[1:] or ["__init__"]
    return parts[0]


def _module_name(path: pathlib.Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every labelsmooth module that ``path`` imports, at any depth of its code."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    return _imports_of(path.read_text(), package)


def _imports_of(source: str, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            if node.module:
                found.add(".".join([*base, node.module]))
            else:
                found.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labelsmooth"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("labelsmooth"))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = "__init__" if path.parent == PACKAGE and path.name == "__init__.py" else _unit(_module_name(path))
        targets = {"__init__" if target == "labelsmooth" else _unit(target) for target in _imports(path)}
        graph.setdefault(unit, set()).update(targets - {unit})
    return graph


def _layer(unit: str) -> int:
    for index, members in enumerate(LAYERS):
        if unit in members:
            return index
    msg = f"module {unit!r} has no layer in LAYERS: place it there"
    raise AssertionError(msg)


def test_every_module_has_a_layer():
    for unit in _graph():
        _layer(unit)


def test_no_module_imports_one_above_it():
    upward = [
        (unit, target) for unit, targets in _graph().items() for target in targets if _layer(target) > _layer(unit)
    ]
    assert upward == []


def test_imports_have_no_cycle():
    graph = _graph()
    state: dict[str, str] = {}

    def visit(unit: str, trail: list[str]) -> None:
        if state.get(unit) == "done":
            return
        assert state.get(unit) != "open", f"import cycle: {' -> '.join([*trail, unit])}"
        state[unit] = "open"
        for target in sorted(graph.get(unit, ())):
            visit(target, [*trail, unit])
        state[unit] = "done"

    for unit in sorted(graph):
        visit(unit, [])


def test_the_check_sees_imports_inside_functions():
    source = "def f():\n    from . import _losses\n    from ._core import row_softmax\n"
    assert _imports_of(source, "labelsmooth") == {"labelsmooth._losses", "labelsmooth._core"}
    assert _imports_of("from .. import _core\n", "labelsmooth.testing") == {"labelsmooth._core"}
