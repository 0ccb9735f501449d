"""The book's notebooks: headers generated from the one repository URL, no stored outputs, teaching structure."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "book" / "chapters").glob("*.ipynb"))


def test_headers_are_current_and_use_the_configured_repository():
    subprocess.run([sys.executable, str(REPO / "scripts" / "notebook_header.py"), "--check"], check=True)
    url = yaml.safe_load((REPO / "book" / "_config.yml").read_text())["repository"]["url"]
    owner_repo = url.removeprefix("https://github.com/")
    for path in CHAPTERS:
        cells = nbformat.read(path, as_version=4).cells
        assert f"colab.research.google.com/github/{owner_repo}/blob/" in cells[0].source
        assert path.name in cells[0].source
        assert f'REPOSITORY = "{url}"' in cells[1].source


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_structure(path):
    cells = nbformat.read(path, as_version=4).cells
    assert not any(c.get("outputs") for c in cells if c.cell_type == "code"), "notebooks are stored without outputs"
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert re.search(r"^# \d\. ", text, re.M), "a numbered chapter title"
    for heading in ("**Learning objectives.**", "**Prerequisites.**", "## Summary", "## Exercises"):
        assert heading in text, heading
    # prose before code: after the set-up, at most two code cells follow each other
    # (a computation and the figure of its result), outside the exercises' cell groups
    run = 0
    for cell in cells[2:]:
        in_exercise = cell.metadata.get("exercise_role") in ("stub", "solution", "check")
        run = run + 1 if cell.cell_type == "code" and not in_exercise else 0
        assert run <= 2, f"{path.name}: three code cells in a row without prose, ending with:\n{cell.source[:120]}"
