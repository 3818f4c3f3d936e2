"""The suite's own rules, read from the test files' syntax trees: tests that can fail.

- No ``pytest.importorskip("kamalpy...")``: a module of our own that fails to import is a failure, not a skip.
- No ``pytest.raises(Exception)`` or ``(BaseException)``: name the error class meant.
- Every test function asserts something: an ``assert`` statement, ``pytest.raises``/``warns``/``fail``, or a
  call to a helper that asserts. A helper is recognised by its name (``assert_*``, ``check_*``) or by its
  body: a function or method defined in a ``tests/*.py`` file (helpers.py, conftest.py and the fixture
  plugins included) that contains one of the above, directly or through another helper. A fixture whose
  body (its inner functions included) asserts counts when the test calls it (``dry(...)``); a method that
  asserts counts when called on anything but an imported module (``project.ok(...)``, not ``subprocess.run``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
HELPER_PREFIXES = ("assert_", "check_")
PYTEST_ASSERTIONS = {"raises", "warns", "fail", "deprecated_call"}
TOO_BROAD = {"Exception", "BaseException"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _called_name(call: ast.Call) -> tuple[str | None, str | None]:
    """``(base, name)`` of a call: ``f()`` -> (None, "f"); ``a.f()`` -> ("a", "f"); else (None, attr or None)."""
    func = call.func
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        return (func.value.id if isinstance(func.value, ast.Name) else None), func.attr
    return None, None


def _is_pytest_call(call: ast.Call, names: set[str]) -> bool:
    base, name = _called_name(call)
    return base == "pytest" and name in names


def _is_fixture(function: Function) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
        if isinstance(target, ast.Name) and target.id == "fixture":
            return True
    return False


def _imported_modules(tree: ast.Module) -> set[str]:
    """Names bound to modules by ``import x`` / ``import x.y as z`` (calls on these are never helpers)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.asname or alias.name.split(".")[0])
    return found


class Suite:
    """The functions of a set of test files, and which of them assert (to a fixpoint over helper calls)."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.trees = {name: ast.parse(text, filename=name) for name, text in sources.items()}
        self.modules = {name: _imported_modules(tree) for name, tree in self.trees.items()}
        functions: list[tuple[str, Function, bool]] = []  # (file, function, is a method)
        for name, tree in self.trees.items():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    functions += [(name, f, True) for f in node.body if isinstance(f, Function)]
            methods = {id(f) for _, f, method in functions if method}
            functions += [(name, f, False) for f in ast.walk(tree)
                          if isinstance(f, Function) and id(f) not in methods]
        self.functions = functions
        self.asserting_functions: set[str] = set()  # by name: module-level and inner functions
        self.asserting_methods: set[str] = set()
        self.asserting_fixtures: set[str] = set()
        changed = True
        while changed:
            changed = False
            for file, function, method in functions:
                if not self._asserts(file, function, params=set()):
                    continue
                names = (self.asserting_methods if method else self.asserting_functions)
                if function.name not in names:
                    names.add(function.name)
                    changed = True
                if _is_fixture(function) and function.name not in self.asserting_fixtures:
                    self.asserting_fixtures.add(function.name)
                    changed = True

    def _asserts(self, file: str, function: Function, params: set[str]) -> bool:
        """Whether ``function``'s body (inner functions included) asserts, as the module docstring defines."""
        modules = self.modules[file]
        for node in ast.walk(function):
            if isinstance(node, ast.Assert):
                return True
            if not isinstance(node, ast.Call):
                continue
            if _is_pytest_call(node, PYTEST_ASSERTIONS):
                return True
            base, name = _called_name(node)
            if name is None:
                continue
            if name.startswith(HELPER_PREFIXES):
                return True
            if base is None and (name in self.asserting_functions or name in params):
                return True
            if base is not None and base not in modules and name in self.asserting_methods:
                return True
            if base is not None and base in params:
                return True
        return False

    def tests(self) -> Iterator[tuple[str, Function]]:
        for file, tree in self.trees.items():
            for node in tree.body:
                if isinstance(node, Function) and node.name.startswith("test"):
                    yield file, node
                elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                    for inner in node.body:
                        if isinstance(inner, Function) and inner.name.startswith("test"):
                            yield file, inner

    def without_assertion(self) -> list[str]:
        found = []
        for file, test in self.tests():
            params = {arg.arg for arg in test.args.args} & self.asserting_fixtures
            if not self._asserts(file, test, params):
                found.append(f"{file}:{test.lineno} {test.name}")
        return found

    def skipped_imports_of_our_own(self) -> list[str]:
        found = []
        for file, tree in self.trees.items():
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and _called_name(node)[1] == "importorskip" and node.args
                        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                        and node.args[0].value.split(".")[0] == "kamalpy"):
                    found.append(f"{file}:{node.lineno} importorskip({node.args[0].value!r})")
        return found

    def broad_raises(self) -> list[str]:
        found = []
        for file, tree in self.trees.items():
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and _is_pytest_call(node, {"raises"}) and node.args
                        and isinstance(node.args[0], ast.Name) and node.args[0].id in TOO_BROAD):
                    found.append(f"{file}:{node.lineno} pytest.raises({node.args[0].id})")
        return found


def _sources(paths: Iterable[Path]) -> dict[str, str]:
    return {path.name: path.read_text() for path in paths}


@pytest.fixture(scope="module")
def suite() -> Suite:
    return Suite(_sources(sorted(TESTS.glob("*.py"))))


def test_no_importorskip_of_kamalpy_modules(suite):
    assert suite.skipped_imports_of_our_own() == []


def test_no_pytest_raises_exception(suite):
    assert suite.broad_raises() == []


def test_every_test_asserts(suite):
    assert suite.without_assertion() == []


def test_the_rules_catch_what_they_name():
    """The checker itself can fail: each kind of bad test is reported, each kind of good one is not."""
    helpers = '''
def assert_ok(result):
    assert result
def runs(result):
    return result
def wraps(result):
    assert_ok(result)
'''
    conftest = '''
import pytest
@pytest.fixture
def dry():
    def run(*args):
        assert args
    return run
@pytest.fixture
def plain():
    return lambda: 1
class Project:
    def ok(self):
        assert True
    def run(self):
        return 1
'''
    tests = '''
import subprocess
import pytest
def test_assert(): assert 1
def test_raises():
    with pytest.raises(ValueError): int("x")
def test_named_helper(): check_something()
def test_body_helper(): wraps(1)
def test_fixture(dry): dry("x")
def test_method(project): project.ok()
def test_bad_nothing(): runs(1)
def test_bad_plain_fixture(plain): plain()
def test_bad_method(project): project.run()
def test_bad_module_call(): subprocess.run(["true"])
def test_bad_skip():
    pytest.importorskip("kamalpy.app_boot")
    assert True
def test_bad_broad():
    with pytest.raises(Exception): int("x")
'''
    suite = Suite({"helpers.py": helpers, "conftest.py": conftest, "test_x.py": tests})
    assert [entry.split(" ", 1)[1] for entry in suite.without_assertion()] == [
        "test_bad_nothing", "test_bad_plain_fixture", "test_bad_method", "test_bad_module_call"]
    assert [entry.split(" ", 1)[1] for entry in suite.skipped_imports_of_our_own()] == [
        "importorskip('kamalpy.app_boot')"]
    assert [entry.split(" ", 1)[1] for entry in suite.broad_raises()] == ["pytest.raises(Exception)"]
