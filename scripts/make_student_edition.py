"""Write the student edition: the chapters without solutions or instructor notes.

For every chapter notebook in book/chapters:
- cells with metadata exercise_role "solution" or "solution-fence", and cells
  tagged "instructor-note", are removed (stubs and checks stay);
- outputs are cleared;
- the Colab badge and set-up cell point at the student copies.
With --book, a small Jupyter Book around the copies is written too (not executed,
since the stubs are meant to raise), to publish a solution-free edition.

Usage: python scripts/make_student_edition.py [--out student_edition] [--book]
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

REPO = Path(__file__).resolve().parents[1]
DROP_ROLES = {"solution", "solution-fence"}


def student_copy(notebook):
    kept = []
    for cell in notebook.cells:
        if cell.metadata.get("exercise_role") in DROP_ROLES:
            continue
        if "instructor-note" in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        else:  # the instructor guide is not part of the student edition
            cell.source = cell.source.replace("[instructor guide](../instructor_guide.md)", "instructor guide")
        kept.append(cell)
    notebook.cells = kept
    return notebook


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "student_edition")
    parser.add_argument("--book", action="store_true", help="also write a Jupyter Book around the copies")
    args = parser.parse_args()
    out = args.out.resolve()
    chapters = out / "chapters"
    if chapters.exists():
        shutil.rmtree(chapters)
    chapters.mkdir(parents=True)
    sources = sorted((REPO / "book" / "chapters").glob("*.ipynb"))
    removed = 0
    for source in sources:
        notebook = nbformat.read(source, as_version=4)
        before = len(notebook.cells)
        nbformat.write(student_copy(notebook), chapters / source.name)
        removed += before - len(notebook.cells)
    try:
        colab_path = (chapters.relative_to(REPO)).as_posix()
    except ValueError:
        colab_path = "student_edition/chapters"
    subprocess.run([sys.executable, str(REPO / "scripts" / "notebook_header.py"), "--notebooks", str(chapters),
                    "--colab-path", colab_path], check=True)
    if args.book:
        config = yaml.safe_load((REPO / "book" / "_config.yml").read_text())
        config["title"] += " (student edition)"
        config["execute"]["execute_notebooks"] = "off"
        config["sphinx"]["local_extensions"] = {"course_book": str(REPO / "book" / "_ext")}
        (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        toc = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
        toc["parts"] = [p for p in toc["parts"] if p["caption"] in ("Chapters", "Appendix")] + [
            {"caption": "Back matter", "chapters": [{"file": "questions"}, {"file": "bibliography"}]}]
        (out / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
        for name in ("intro.md", "questions.md", "bibliography.md", "references.bib"):
            shutil.copy(REPO / "book" / name, out / name)
        text = (out / "intro.md").read_text().replace("[instructor guide](instructor_guide.md)", "instructor guide")
        (out / "intro.md").write_text(text)
    print(f"student edition: {len(sources)} notebooks in {chapters} ({removed} solution/instructor cells removed)"
          + ("; book sources beside them" if args.book else ""))


if __name__ == "__main__":
    main()
