"""scripts/make_student_edition.py: solutions removed, stubs kept, badges repointed."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_student_edition.py"), "--out", str(out), "--book"],
                   check=True, capture_output=True)
    return out


def test_every_chapter_is_written_without_solutions(edition):
    sources = sorted((REPO / "book" / "chapters").glob("*.ipynb"))
    copies = sorted((edition / "chapters").glob("*.ipynb"))
    assert [p.name for p in copies] == [p.name for p in sources]
    for path in copies:
        notebook = nbformat.read(path, as_version=4)
        roles = [c.metadata.get("exercise_role") for c in notebook.cells]
        assert "solution" not in roles and "solution-fence" not in roles, path.name
        least = 0 if path.name == "06_your_own_images.ipynb" else 3  # the appendix has no exercises
        assert roles.count("stub") >= least and roles.count("check") == roles.count("stub"), path.name
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
        assert "instructor_guide" not in "".join(c.source for c in notebook.cells)
        assert f"student_edition/chapters/{path.name}" in notebook.cells[0].source or "/chapters/" in notebook.cells[0].source


def test_value_stubs_raise_not_implemented(edition):
    for path in sorted((edition / "chapters").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.metadata.get("exercise_role") == "stub" and "raises-exception" in cell.metadata.get("tags", []):
                with pytest.raises(NotImplementedError):
                    exec(cell.source, {})


def test_book_sources_are_written(edition):
    config = (edition / "_config.yml").read_text()
    assert "student edition" in config and "execute_notebooks: 'off'" in config or "execute_notebooks: off" in config
    assert (edition / "_toc.yml").is_file() and (edition / "intro.md").is_file()
