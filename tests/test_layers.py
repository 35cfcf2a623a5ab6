"""The architecture, from the imports themselves: pure packages stay pure, arrows point down, no circles.

Layers, lowest first (README, "Architecture"): a module may import its own
layer and those below it, never one above. The pure layers (and the API's
query and export modules, which the command line uses without a worker)
import nothing of Faust, Kafka clients, RocksDB or the web server.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [  # (layer, its modules' dotted prefixes), lowest first
    ("lifecycle", ["orderflow.streams.lifecycle"]),
    ("stock", ["orderflow.streams.stock"]),
    ("book", ["orderflow.streams.book"]),
    ("analytics", ["orderflow.streams.analytics"]),
    ("shared", ["orderflow.streams.config", "orderflow.schemas"]),
    ("tables", ["orderflow.tables"]),
    ("kafka", ["orderflow.streams.kafka"]),
    ("api", ["orderflow.streams.api"]),
    ("worker", ["orderflow.streams.worker"]),
    ("cli", ["orderflow.streams.cli", "orderflow.streams.__main__"]),
]
PURE = ["orderflow.streams.lifecycle", "orderflow.streams.stock", "orderflow.streams.book",
        "orderflow.streams.analytics", "orderflow.streams.api.order_query", "orderflow.streams.api.export"]
FORBIDDEN_IN_PURE = {"faust", "mode", "aiokafka", "kafka", "confluent_kafka", "rocksdict", "aiohttp"}
DIRS = {"orderflow.streams": ROOT / "streams", "orderflow.tables": ROOT / "tables", "orderflow.schemas": ROOT / "schemas"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the project: dotted name -> (file, is a package's __init__)."""
    found = {}
    for package, folder in DIRS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join([package, *(parts[:-1] if is_package else parts)])] = (path, is_package)
    return found


MODULES = _modules()


def _imports(name: str, top_level_only: bool = False) -> set[str]:
    """The modules `name` imports (absolute names), lazy imports inside functions included unless
    `top_level_only`."""
    path, is_package = MODULES[name]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                module = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module
            submodules = {f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES}
            found |= submodules if len(submodules) == len(node.names) else submodules | {module}
    return found


def _layer(name: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return rank
    return None


def test_every_module_has_a_layer_and_a_first_line_docstring():
    for name, (path, _) in MODULES.items():
        if name in DIRS:
            continue
        assert _layer(name) is not None, f"{name} belongs to no layer of this test"
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and docstring.splitlines()[0].strip(), f"{path}: no docstring saying what it is for"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if any(m == p or m.startswith(p + ".") for p in PURE)))
def test_pure_modules_import_nothing_of_faust_kafka_rocksdb_or_the_web(name):
    bad = {module for module in _imports(name) if module.split(".")[0] in FORBIDDEN_IN_PURE}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_arrows_point_down(name):
    rank = _layer(name)
    if rank is None:
        return  # a package's own __init__ (orderflow.streams, tables, schemas)
    up = {module for module in _imports(name) if module.startswith("orderflow.")
          and (target := _layer(module)) is not None and target > rank}
    assert not up, f"{name} (layer {LAYERS[rank][0]}) imports from a layer above it: {sorted(up)}"


def test_no_import_circles():
    graph = {name: {m for m in _imports(name, top_level_only=True) if m in MODULES and m != name} for name in MODULES}
    done, path = set(), []

    def visit(name: str) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        path.append(name)
        for module in sorted(graph[name]):
            visit(module)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_rules_see_a_forbidden_import(tmp_path, monkeypatch):
    """The walk finds lazy imports too: a pure module importing Faust inside a function is caught."""
    module = tmp_path / "sneaky.py"
    module.write_text('"""A module that imports Faust late."""\n\ndef f():\n    import faust\n    return faust\n')
    monkeypatch.setitem(MODULES, "orderflow.streams.lifecycle.sneaky", (module, False))
    with pytest.raises(AssertionError, match="faust"):
        test_pure_modules_import_nothing_of_faust_kafka_rocksdb_or_the_web("orderflow.streams.lifecycle.sneaky")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_project_import_names_a_module_that_exists(name):
    """Lazy imports inside functions too, which only fail when their command runs."""
    missing = {module for module in _imports(name) if module.startswith("orderflow.") and module not in MODULES}
    assert not missing, f"{name} imports modules that do not exist: {sorted(missing)}"

