"""Room sizes: no module of the package over 500 lines, no function over 80 outside the kernels.

A function's length runs from its ``def`` to its last line, its docstring left out (documentation is not what makes
a function hard to follow). Test code is not held to it: ``tests/`` and the benchmark suites' ``test_*.py`` and
``conftest.py`` (``fastnn/benchmarks``). Every exception is listed below with its reason; an entry that is no
longer needed fails the test too, so the lists only shrink.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastnn"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 80

# Modules over 500 lines for now, with their owners. The lead shrinks each and then drops its entry.
LONG_MODULES = {}
# Functions over 80 lines for now (module, qualified name), with their owners.
LONG_FUNCTIONS = {}
# The compiled step and the kernels are exempt from the function rule: one loop per step, as the compiler sees it.
KERNELS = "kernels/"


def _library_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("benchmarks/") and (path.name.startswith("test_") or path.name == "conftest.py"):
            continue
        yield rel, path


def _functions(tree):
    """``(qualified name, length without the docstring)`` of every function and method, nested ones too."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    first = child.body[0]
                    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                            and isinstance(first.value.value, str)):
                        length -= first.end_lineno - first.lineno + 1
                    yield name, length
                yield from walk(child, name + ".")
            else:
                yield from walk(child, prefix)
    yield from walk(tree, "")


def test_no_module_over_500_lines():
    long = {rel: n for rel, path in _library_modules()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not set(long) - set(LONG_MODULES), f"modules over {MAX_MODULE_LINES} lines: {long}"
    assert not set(LONG_MODULES) - set(long), f"no longer over {MAX_MODULE_LINES} lines: drop them from " \
                                              f"LONG_MODULES: {sorted(set(LONG_MODULES) - set(long))}"


def test_no_function_over_80_lines_outside_the_kernels():
    long = {}
    for rel, path in _library_modules():
        if rel.startswith(KERNELS):
            continue
        for name, length in _functions(ast.parse(path.read_text())):
            if length > MAX_FUNCTION_LINES:
                long[(rel, name)] = length
    assert not set(long) - set(LONG_FUNCTIONS), f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    assert not set(LONG_FUNCTIONS) - set(long), f"no longer over {MAX_FUNCTION_LINES} lines: drop them from " \
                                                f"LONG_FUNCTIONS: {sorted(set(LONG_FUNCTIONS) - set(long))}"


@pytest.mark.parametrize("source, expected", [
    ('def f():\n    """Doc\n    string."""\n    return 1\n', [("f", 2)]),
    ("class A:\n    def m(self):\n        def inner():\n            pass\n        return inner\n",
     [("A.m", 4), ("A.m.inner", 2)]),
])
def test_lengths_are_counted_without_docstrings_and_with_qualified_names(source, expected):
    assert list(_functions(ast.parse(source))) == expected
