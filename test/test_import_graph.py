"""The package's import graph, read from the source with ast: no cycles, the ROS-free runtime stands alone (no
rclpy, no message packages, nothing from the hosts, the CLI, evaluation, training or export), and the node
imports no offline tool (training, export, evaluation, benchmarks, batch engines).

Every import counts: those inside functions (a lazy import is still a dependency) and those under
`if TYPE_CHECKING:` (a type-only cycle still ties the modules together for a reader and for mypy).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "depth_ft_ros"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        imported = _imported_names(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py")
        graph[module] = {name for name in imported if name in files and name != module}
    return graph


def _external_imports(module_prefix: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        module = _module_name(path)
        if module == module_prefix or module.startswith(module_prefix + "."):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            out[module] = _imported_names(tree, module, path.name == "__init__.py")
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle() -> None:
    graph = _graph()
    assert "depth_ft_ros.alignment.aligner" in graph  # the walk found the package
    assert _cycles(graph) == []


RUNTIME = ("errors", "enums", "config", "model", "geometry", "alignment", "frame")


def _offenders(prefixes: tuple[str, ...], forbidden: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for prefix in prefixes:
        for module, names in _external_imports(f"depth_ft_ros.{prefix}").items():
            bad = sorted(name for name in names if name == forbidden or name.startswith(forbidden + "."))
            if bad:
                found[module] = bad
    return found


def test_type_checking_imports_count() -> None:
    """A cycle hidden behind `if TYPE_CHECKING:` is found (the walk reads those imports too)."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from depth_ft_ros.b import X\n")
    assert "depth_ft_ros.b" in _imported_names(tree, "depth_ft_ros.a", False)


@pytest.mark.parametrize(
    "forbidden",
    ["rclpy", "sensor_msgs", "std_msgs", "depth_ft_ros.node", "depth_ft_ros.msgs", "depth_ft_ros.replay",
     "depth_ft_ros.fleet", "depth_ft_ros.bench", "depth_ft_ros.cli", "depth_ft_ros.evaluation",
     "depth_ft_ros.training", "depth_ft_ros.export"],
)
def test_the_runtime_imports_only_itself(forbidden: str) -> None:
    assert _offenders(RUNTIME, forbidden) == {}


@pytest.mark.parametrize(
    "forbidden",
    ["depth_ft_ros.training", "depth_ft_ros.export", "depth_ft_ros.evaluation", "depth_ft_ros.bench",
     "depth_ft_ros.fleet", "depth_ft_ros.replay", "depth_ft_ros.cli", "ray"],
)
def test_the_node_imports_no_offline_tool(forbidden: str) -> None:
    assert _offenders(("node", "msgs"), forbidden) == {}
