"""The code's shape stays what README's Layout says: layers import downwards only, and
functions and interfaces stay small. Read from the source with ``ast``: nothing is imported."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Highest first: a package may import those after it, never those before it.
LAYERS = ("cli", "workers", "reports", "broker", "checkpoints", "pipeline")
MAX_FUNCTION_LINES = 40
MAX_PUBLIC_METHODS = 12


def _modules():
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path, ast.parse(path.read_text(), filename=str(path))


def _imported(tree: ast.AST):
    """Every ``visionfleet.X`` module a file imports, at the top or inside a function, with its line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)


def test_no_layer_imports_a_higher_one():
    upward = []
    for layer, path, tree in _modules():
        for line, module in _imported(tree):
            parts = module.split(".")
            if parts[0] == "visionfleet" and len(parts) > 1 and parts[1] in LAYERS:
                if LAYERS.index(parts[1]) < LAYERS.index(layer):
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    tree = ast.parse("def f():\n    from visionfleet.workers.tasks import relabel_shard\n")
    assert list(_imported(tree)) == [(2, "visionfleet.workers.tasks")]


@pytest.mark.parametrize("layer", LAYERS)
def test_functions_stay_short(layer):
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for _, path, tree in _modules() if _ == layer
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_interfaces_stay_small():
    big = []
    for _, path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                public = [f for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                          and not f.name.startswith("_")]
                if len(public) > MAX_PUBLIC_METHODS:
                    big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(public)} methods)")
    assert big == []


def test_broker_settings_are_read_at_three_edges_at_most():
    """The command, the ``celery -A`` app and a backend service's client: every other part is handed them."""
    reads = [f"{path.relative_to(ROOT)}:{node.lineno}" for _, path, tree in _modules() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_env"
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "BrokerSettings"]
    assert 1 <= len(reads) <= 3, reads
