"""The chapters' code style: lines of at most 88 characters, no stored outputs.

Reformat a notebook with `ruff format --line-length 88 book/chapters/NN_name.ipynb`
(ruff is pinned in requirements.txt); clear outputs with
`jupyter nbconvert --clear-output --inplace book/chapters/NN_name.ipynb`.
"""
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "book" / "chapters").glob("*.ipynb"))
MAX_LINE = 88


def long_lines(source, limit=MAX_LINE):
    """(line number, length) of each line of `source` longer than `limit` characters."""
    return [(number, len(line)) for number, line in enumerate(source.splitlines(), start=1) if len(line) > limit]


def test_long_lines_are_found():
    assert long_lines("x = 1\n" + "y" * 89 + "\n" + "z" * 88) == [(2, 89)]


def test_there_are_chapters():
    assert len(CHAPTERS) >= 5


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_code_lines_fit_in_88_characters(path):
    cells = nbformat.read(path, as_version=4).cells
    too_long = [f"cell {index}, line {number}: {length} characters"
                for index, cell in enumerate(cells) if cell.cell_type == "code"
                for number, length in long_lines(cell.source)]
    assert not too_long, (f"{path.name}: code lines over {MAX_LINE} characters "
                          f"(run `ruff format --line-length {MAX_LINE}` on it):\n" + "\n".join(too_long))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    cells = nbformat.read(path, as_version=4).cells
    stored = [index for index, cell in enumerate(cells) if cell.cell_type == "code"
              and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not stored, f"{path.name}: cells {stored} have stored outputs or execution counts"
