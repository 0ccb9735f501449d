"""The package's own house rules, checked: short functions and methods, no
JavaScript in Python, no TensorFlow in the modules that do not compute with it."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules that must import without TensorFlow (extend this list as modules are added).
TENSORFLOW_FREE = [
    "tutorial_utils.data",
    "tutorial_utils.viz",
    "tutorial_utils.viz.orientation",
    "tutorial_utils.viz.figures",
    "tutorial_utils.viz.viewer",
    "tutorial_utils.viz.notices",
    "tutorial_utils.exercises",
    "tutorial_utils.config",
    "tutorial_utils.progress",
    "tutorial_utils.classical",
    "tutorial_utils.metrics",
    "tutorial_utils.fields",
    "tutorial_utils.affine",
    "tutorial_utils.results",
    "tutorial_utils.points",
    "tutorial_utils.geometry",
    "tutorial_utils.images",
]
#: The most lines a function or method body may have (its docstring left out).
MAX_BODY_LINES = 80

PACKAGE = Path(__file__).resolve().parents[1] / "tutorial_utils"
MODULES = sorted(PACKAGE.rglob("*.py"))  # subpackages too (e.g. viz/viewer.py)
IDS = [path.relative_to(PACKAGE).as_posix() for path in MODULES]


def units(tree):
    """Every function and method, nested ones included; class bodies are not units
    (a class of many short methods is fine)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def body_lines(node) -> int:
    """Lines of a function's body, its docstring left out."""
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    return 0 if not body else body[-1].end_lineno - body[0].lineno + 1


def long_units(source: str):
    return [f"{node.name} ({body_lines(node)} lines)" for node in units(ast.parse(source))
            if body_lines(node) > MAX_BODY_LINES]


def _function(name: str, lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines))
    return f'{indent}def {name}():\n{indent}    """Doc."""\n{body}'


def test_units_are_functions_and_methods_not_class_bodies():
    many_short_methods = "class Viewer:\n" + "".join(_function(f"m{i}", 20, "    ") for i in range(6))
    assert long_units(many_short_methods) == [], "a long class of short methods is fine"
    long_method = "class Viewer:\n" + _function("short", 3, "    ") + _function("long", 81, "    ")
    assert long_units(long_method) == ["long (81 lines)"]
    nested = "def outer():\n" + _function("inner", 81, "    ")
    assert long_units(nested) == ["outer (83 lines)", "inner (81 lines)"]
    assert long_units(_function("edge", 80)) == [], "80 lines, docstring left out, is allowed"
    assert long_units("async " + _function("coroutine", 81)) == ["coroutine (81 lines)"]


def test_modules_include_subpackages_with_readable_ids():
    assert "viz/viewer.py" in IDS and "warp.py" in IDS
    assert all(not Path(i).is_absolute() for i in IDS)


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_no_unit_body_over_80_lines(path):
    long = long_units(path.read_text())
    assert not long, f"{path.relative_to(PACKAGE)}: split these functions or methods: {long}"


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_no_javascript_inside_python(path):
    text = path.read_text()
    found = re.findall(r"addEventListener|document\.(?:getElement|querySelector)|function\s*\w*\s*\([^)]*\)\s*\{", text)
    assert not found, (f"{path.relative_to(PACKAGE)} holds JavaScript ({found[:3]}); "
                       "keep it in tutorial_utils/templates/")


def test_tensorflow_free_modules_do_not_import_it():
    code = (f"import sys, {', '.join(TENSORFLOW_FREE)}; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
