#!/usr/bin/env bash
# Run every check: spelling, the workflows' schema, unit tests, every chapter
# notebook (nbval), the book build (warnings are errors), its internal links and
# anchors, and the built book in a real browser.
# Quick mode is the default here (TUTORIAL_QUICK=1); set TUTORIAL_QUICK=0 for the full recipes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TUTORIAL_QUICK=${TUTORIAL_QUICK:-1}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
PY=.venv/bin/python

echo "== notebook headers"
$PY scripts/notebook_header.py --check

echo "== spelling of the chapters, the book's pages and the README (codespell)"
# Real terms that codespell flags go in .codespell-words (one lower-case word a line).
.venv/bin/codespell --builtin clear,rare --ignore-words .codespell-words \
  book/chapters/*.ipynb book/*.md README.md

echo "== the GitHub workflows (GitHub's workflow schema and actionlint, offline)"
.venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
if [ -x .venv/bin/actionlint ]; then
  .venv/bin/actionlint .github/workflows/*.yml
else
  echo "actionlint: no binary for this platform (requirements.txt installs it on Linux x86-64 only)"
fi

echo "== unit tests"
$PY -m pytest tests/ -q --ignore=tests/test_book_in_browser.py

echo "== the package's documented examples (doctests)"
$PY -m pytest --doctest-modules tutorial_utils -q -p no:cacheprovider

echo "== notebooks (nbval, TUTORIAL_QUICK=$TUTORIAL_QUICK)"
$PY -m pytest --nbval-lax book/chapters -q -p no:cacheprovider

echo "== the book"
bash scripts/build_book.sh

echo "== the built book's internal links and anchors (linkchecker, no network)"
bash scripts/check_site.sh book/_build/html

echo "== the student edition (solutions removed) and its book"
$PY scripts/make_student_edition.py --book --out student_edition
.venv/bin/jupyter-book build student_edition -W -n --keep-going --quiet

echo "== the built book in a browser"
$PY -m pytest tests/test_book_in_browser.py -q
