"""Record what the chapters print, to compare before and after a change that must not alter results.

    python scripts/notebook_printouts.py record OUT.json [chapters...]   # executes the notebooks
    python scripts/notebook_printouts.py compare BEFORE.json AFTER.json  # prints the lines that differ

Executes each chapter with nbclient (in the current environment: set
TUTORIAL_QUICK, TUTORIAL_DATA_MIRROR, TUTORIAL_LUNG_STANDIN as CI does) and keeps
every text output (stdout and text/plain results) per cell. ``compare`` matches
the lines in order and prints those that differ; lines with wall times differ
by nature and are marked as such.
"""
from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "book" / "chapters"
TIME = re.compile(r"\d\s*(s|ms|min|seconds?)\b|per (pair|epoch|step)|time|seconds", re.I)


def _texts(cell) -> list:
    lines = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            lines += "".join(output["text"]).splitlines()
        elif "data" in output and "text/plain" in output["data"] and "text/html" not in output["data"]:
            text = "".join(output["data"]["text/plain"])
            if not text.startswith("<Figure"):
                lines += text.splitlines()
    return lines


def record(out: str, names) -> None:
    import nbformat
    from nbclient import NotebookClient

    paths = [CHAPTERS / n for n in names] if names else sorted(CHAPTERS.glob("*.ipynb"))
    found = {}
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(CHAPTERS)}}).execute()
        found[path.name] = [[i, _texts(c)] for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
        print(path.name, sum(len(t) for _, t in found[path.name]), "lines", flush=True)
    Path(out).write_text(json.dumps(found, indent=1))


def compare(before: str, after: str) -> int:
    first, second = (json.loads(Path(p).read_text()) for p in (before, after))
    differing = 0
    for name in sorted(set(first) | set(second)):
        a = [line for _, lines in first.get(name, []) for line in lines]
        b = [line for _, lines in second.get(name, []) for line in lines]
        for line in difflib.unified_diff(a, b, "before", "after", lineterm="", n=0):
            if line.startswith(("-", "+")) and not line.startswith(("---", "+++")):
                mark = "   (wall time)" if TIME.search(line) else ""
                differing += not mark
                print(f"{name}: {line}{mark}")
    print(f"{differing} differing lines other than wall times")
    return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "record":
        record(rest[0], rest[1:])
    else:
        sys.exit(compare(*rest))
