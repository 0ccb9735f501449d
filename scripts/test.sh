#!/usr/bin/env bash
# Run every check: unit tests, every chapter notebook (nbval), the book build
# (warnings are errors), and the built book in a real browser.
# Quick mode is the default here (TUTORIAL_QUICK=1); set TUTORIAL_QUICK=0 for the full recipes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TUTORIAL_QUICK=${TUTORIAL_QUICK:-1}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
PY=.venv/bin/python

echo "== notebook headers"
$PY scripts/notebook_header.py --check

echo "== unit tests"
$PY -m pytest tests/ -q --ignore=tests/test_book_in_browser.py

echo "== the package's documented examples (doctests)"
$PY -m pytest --doctest-modules tutorial_utils -q -p no:cacheprovider

echo "== notebooks (nbval, TUTORIAL_QUICK=$TUTORIAL_QUICK)"
$PY -m pytest --nbval-lax book/chapters -q -p no:cacheprovider

echo "== the book"
bash scripts/build_book.sh

echo "== the student edition (solutions removed) and its book"
$PY scripts/make_student_edition.py --book --out student_edition
.venv/bin/jupyter-book build student_edition -W -n --keep-going --quiet

echo "== the built book in a browser"
$PY -m pytest tests/test_book_in_browser.py -q
