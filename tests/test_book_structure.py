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
# The book's appendix (the "Appendix" part of book/_toc.yml): a how-to without exercises.
APPENDICES = ("06_your_own_images.ipynb",)
TAUGHT = [path for path in CHAPTERS if path.name not in APPENDICES]


def test_appendices_are_the_tocs_appendix_part():
    toc = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
    parts = {part["caption"]: [entry["file"] for entry in part["chapters"]] for part in toc["parts"]}
    assert parts.get("Appendix") == [f"chapters/{name.removesuffix('.ipynb')}" for name in APPENDICES]


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
    headings = ("**Learning objectives.**", "**Prerequisites.**", "## Summary")
    for heading in headings + (() if path.name in APPENDICES else ("## Exercises",)):
        assert heading in text, heading
    # prose before code: after the set-up, at most two code cells follow each other
    # (a computation and the figure of its result), outside the exercises' cell groups
    run = 0
    for cell in cells[2:]:
        in_exercise = cell.metadata.get("exercise_role") in ("stub", "solution", "check")
        run = run + 1 if cell.cell_type == "code" and not in_exercise else 0
        assert run <= 2, f"{path.name}: three code cells in a row without prose, ending with:\n{cell.source[:120]}"


EXERCISE = re.compile(r"^:::\{exercise\} (\d+)\.(\d+) \S.*\n:label: (\S+)", re.M)


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.name)
def test_exercises_carry_the_chapters_number(path):
    """`:::{exercise} 2.1 Title` with label ex-2-1, numbered 1, 2, 3 in order; the
    book's extension turns 2.1 into the exercise's one number (see the next test)."""
    chapter = int(path.name.split("_")[0])
    cells = nbformat.read(path, as_version=4).cells
    found = [(m.groups(), c) for c in cells if c.cell_type == "markdown" for m in EXERCISE.finditer(c.source)]
    assert len(found) >= 3, f"{path.name}: fewer than three exercises"
    for k, ((number, sub, label), cell) in enumerate(found, start=1):
        assert (int(number), int(sub)) == (chapter, k), f"{path.name}: exercise {number}.{sub} is number {k}"
        assert label == f"ex-{chapter}-{k}", label
        assert cell.metadata.get("exercise") == f"{chapter}.{k}", cell.metadata
    starts = re.findall(r":::\{solution-start\} (\S+)", "\n".join(c.source for c in cells))
    assert starts == [f"ex-{chapter}-{k}" for k in range(1, len(found) + 1)]


def test_extension_shows_one_exercise_number(tmp_path):
    """A two-page Sphinx project: the box, the solution and a cross-reference from another
    page all say "Exercise 3.2", never sphinx-exercise's global counter."""
    from sphinx.application import Sphinx

    (tmp_path / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'book' / '_ext')!r})\n"
        "extensions = ['myst_parser', 'sphinx_exercise', 'course_book']\n"
        "myst_enable_extensions = ['colon_fence', 'dollarmath']\n"
        "mathjax_path = 'mathjax/tex-mml-chtml.js'\n")
    (tmp_path / "index.md").write_text(
        "# Book\n\n```{toctree}\nfirst\nsecond\n```\n")
    exercises = "".join(f":::{{exercise}} 3.{k} Title {k} $x^{k}$\n:label: ex-3-{k}\n\nDo it.\n:::\n\n"
                        f":::{{solution}} ex-3-{k}\n:label: sol-3-{k}\n\nDone.\n:::\n\n" for k in (1, 2))
    (tmp_path / "first.md").write_text("# First\n\n:::{exercise}\nAn unnumbered one.\n:::\n\n")
    (tmp_path / "second.md").write_text("# Second\n\n" + exercises)
    (tmp_path / "guide.md").write_text("# Guide\n\nSee {ref}`ex-3-2` and {numref}`ex-3-1`.\n")
    (tmp_path / "index.md").write_text("# Book\n\n```{toctree}\nfirst\nsecond\nguide\n```\n")
    out = tmp_path / "_build"
    app = Sphinx(str(tmp_path), str(tmp_path), str(out), str(out / ".doctrees"), "html",
                 status=None, warningiserror=True, freshenv=True)
    app.build()
    second = (out / "second.html").read_text()
    titles = re.findall(r'<p class="admonition-title">(.*?)</p>', second)
    text = [re.sub(r"<[^>]+>", "", t) for t in titles]
    assert text[0].startswith("Exercise 3.1 — Title 1") and text[2].startswith("Exercise 3.2 — Title 2"), text
    assert text[1] == "Solution to Exercise 3.1 — Title 1 \\(x^1\\)", text
    guide = re.sub(r"<[^>]+>", "", (out / "guide.html").read_text())
    assert "See Exercise 3.2 and Exercise 3.1." in guide
    assert (out / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert "_static/mathjax/tex-mml-chtml.js" in second


def test_generated_setup_cell_fits_the_line_length():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import notebook_header
    finally:
        sys.path.pop(0)
    url, _, _, version = notebook_header.settings()
    source = notebook_header.setup_cell(url, version).source
    assert max(len(line) for line in source.splitlines()) <= 88
    assert f'package = f"tutorial_utils @ git+{{REPOSITORY}}@v{{VERSION}}"' in source
