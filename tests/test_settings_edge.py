"""Settings are read at the edge (a command, a worker's start), never when a module is imported.

An import-time read fixes a value before the edge could choose it (the embedded command's run, a
worker's role) and makes "which environment" depend on import order. Checked on the source: every
statement that runs at import (module and class bodies, decorators, default values), never a
function's or a lambda's body.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("broker", "checkpoints", "cli", "pipeline", "reports", "workers")
ENV_HELPERS = {"env_str", "env_int", "env_float", "env_choice", "visionfleet_home", "getenv", "prices_from_env"}


def _import_time(node: ast.AST):
    """The nodes that run when the module (or a class body in it) is executed."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from (n for part in (*child.decorator_list, child.args, child.returns) if part
                        for n in ast.walk(part))
        elif isinstance(child, ast.Lambda):
            yield from (n for n in ast.walk(child.args))
        else:
            yield child
            yield from _import_time(child)


def _reads(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
        return True
    if isinstance(node, ast.Name) and node.id == "environ":
        return True
    if isinstance(node, ast.Call):
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        return called in ENV_HELPERS or called == "from_env"
    return False


def test_no_product_module_reads_the_environment_when_imported():
    found = []
    for path in sorted(p for folder in PRODUCT for p in (REPO / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in _import_time(tree):
            if _reads(node):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []


def test_the_check_sees_an_import_time_read():
    tree = ast.parse("import os\nX = os.environ.get('A')\nclass C:\n    y = env_int('B', 1)\n"
                     "def f(z=Policy.from_env()):\n    return os.environ['C']\n")
    assert sorted(node.lineno for node in _import_time(tree) if _reads(node)) == [2, 4, 5]
