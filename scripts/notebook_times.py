"""After a book build: how long each chapter took to execute, and whether every one succeeded.

    python scripts/notebook_times.py [BUILD folder, default book/_build]

The book build is the one execution of the chapters in CI (scripts/test.sh): it
fails on a cell error by itself (``-W`` turns myst-nb's "Executing notebook failed"
warning into an error, with the cell and its traceback in the log). This reads the
execution record myst-nb keeps in Sphinx's environment and prints one line per
notebook (seconds, ok/FAILED), then, for a failed one, the cell and the error
again, so the end of the log names them. Exit status 1 if a notebook failed or was
not executed at all (a build that skipped execution checks nothing), else 0.
"""
from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def main(argv: list[str]) -> int:
    build = Path(argv[0]) if argv else ROOT / "book" / "_build"
    pickled = build / ".doctrees" / "environment.pickle"
    if not pickled.is_file():
        print(f"notebook_times: no {pickled} (build the book first)", file=sys.stderr)
        return 2
    with pickled.open("rb") as handle:
        env = pickle.load(handle)
    notebooks = sorted(name for name in env.found_docs
                       if Path(env.doc2path(name)).suffix == ".ipynb")
    records = getattr(env, "nb_metadata", {})
    print("time per notebook (the book build's execution)")
    failed, total = [], 0.0
    for name in notebooks:
        data = records.get(name, {}).get("exec_data")
        if not data:
            print(f"  {name:45s}       -    NOT EXECUTED")
            failed.append((name, "not executed (execute_notebooks off, or the build stopped before it)"))
            continue
        seconds = data.get("runtime") or 0.0
        total += seconds
        state = "ok" if data.get("succeeded") else "FAILED"
        print(f"  {name:45s} {seconds:7.1f} s  {state}")
        if not data.get("succeeded"):
            failed.append((name, ANSI.sub("", data.get("traceback") or data.get("error") or "")))
    print(f"  {'total':45s} {total:7.1f} s")
    for name, message in failed:
        # nbclient's message: "An error occurred while executing the following cell:" + cell + error
        start = message.find("An error occurred while executing")
        print(f"\n{name}: {message[start:] if start >= 0 else message}".rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
