"""The python examples in docs/ import kamalpy only through the public API module, kamalpy.plugin, and compile."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import kamalpy.plugin

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        for index, code in enumerate(BLOCK.findall(path.read_text(encoding="utf-8"))):
            found.append((f"{path.relative_to(DOCS)}#{index + 1}", code))
    return found


def kamalpy_imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every import of a kamalpy module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "kamalpy"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kamalpy":
            found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def test_there_are_examples():
    assert len(examples()) > 10


@pytest.mark.parametrize(("where", "code"), examples(), ids=[where for where, _ in examples()])
def test_example_imports_only_the_public_api_and_compiles(where, code):
    tree = ast.parse(code, where)  # a syntax error fails here
    compile(tree, where, "exec")
    for module, names in kamalpy_imports(tree):
        assert module == "kamalpy.plugin", f"{where}: imports {module}; examples import only from kamalpy.plugin"
        for name in names:
            assert name in kamalpy.plugin.__all__, f"{where}: kamalpy.plugin has no public {name}"
            getattr(kamalpy.plugin, name)  # and it really is there


def test_the_check_can_fail():
    tree = ast.parse("from kamalpy.errors import SecretsError\nimport kamalpy.transport\n")
    assert [module for module, _ in kamalpy_imports(tree)] == ["kamalpy.errors", "kamalpy.transport"]
