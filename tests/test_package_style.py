"""The package's own house rules, checked: short units, no JavaScript in Python,
no TensorFlow in the modules that do not compute with it."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tutorial_utils"
MODULES = sorted(PACKAGE.glob("*.py"))


def units(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node


def body_lines(node) -> int:
    """Lines of a function or class body, its docstring left out."""
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    return 0 if not body else body[-1].end_lineno - body[0].lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_no_unit_body_over_80_lines(path):
    long = [f"{node.name} ({body_lines(node)} lines)" for node in units(ast.parse(path.read_text()))
            if body_lines(node) > 80]
    assert not long, f"{path.name}: split these units: {long}"


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_no_javascript_inside_python(path):
    text = path.read_text()
    found = re.findall(r"addEventListener|document\.(?:getElement|querySelector)|function\s*\w*\s*\([^)]*\)\s*\{", text)
    assert not found, f"{path.name} holds JavaScript ({found[:3]}); keep it in tutorial_utils/templates/"


def test_tensorflow_free_modules_do_not_import_it():
    code = ("import sys, tutorial_utils.data, tutorial_utils.viz, tutorial_utils.exercises, "
            "tutorial_utils.config, tutorial_utils.progress, tutorial_utils.classical; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
