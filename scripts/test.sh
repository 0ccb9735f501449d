#!/usr/bin/env bash
# Run every check: spelling, the workflows' schema, unit tests, doctests, the book
# build (which executes every chapter notebook once: a cell that raises fails it;
# warnings are errors), its internal links and anchors, the student edition, and
# the built book in a real browser. Each phase prints its time, and a summary
# of them closes the run.
# Quick mode is the default here (TUTORIAL_QUICK=1); set TUTORIAL_QUICK=0 for the full recipes.
set -euo pipefail
cd "$(dirname "$0")/.."
export TUTORIAL_QUICK=${TUTORIAL_QUICK:-1}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
PY=.venv/bin/python

TIMES=()
run_phase() {  # run_phase TITLE COMMAND...: print the title, run, print and keep its time
  local title=$1 start took
  shift
  echo "== $title"
  start=$(date +%s)
  "$@"
  took=$(( $(date +%s) - start ))
  echo "-- $title: $took s"
  TIMES+=("$(printf '%6d s  %s' "$took" "$title")")
}
started=$(date +%s)

run_phase "the virtual environment (.venv, requirements.txt)" bash scripts/setup_env.sh

run_phase "notebook headers" $PY scripts/notebook_header.py --check

# Real terms that codespell flags go in .codespell-words (one lower-case word a line).
run_phase "spelling of the chapters, the book's pages and the README (codespell)" \
  .venv/bin/codespell --builtin clear,rare --ignore-words .codespell-words \
  book/chapters/*.ipynb book/*.md README.md

workflows() {
  .venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
  if [ -x .venv/bin/actionlint ]; then
    .venv/bin/actionlint .github/workflows/*.yml
  else
    echo "actionlint: no binary for this platform (requirements.txt installs it on Linux x86-64 only)"
  fi
}
run_phase "the GitHub workflows (GitHub's workflow schema and actionlint, offline)" workflows

# Two pytest workers (pytest-xdist): most of a registration test's time is XLA compiling
# on one core, so two workers share the machine's two cores (255 s instead of 440 s).
# --dist loadfile: each test file runs whole, in order, in one worker, so a test that draws
# from its module's random generator gets the same numbers as in one process (with tests
# handed out one by one, a finite-difference check drew other weights and failed once).
# PYTEST_WORKERS=0 runs them in one process (e.g. to debug one test).
run_phase "unit tests" $PY -m pytest tests/ -q -n "${PYTEST_WORKERS:-2}" --dist loadfile \
  --ignore=tests/test_book_in_browser.py --durations=15

run_phase "the package's documented examples (doctests)" \
  $PY -m pytest --doctest-modules tutorial_utils -q -p no:cacheprovider

# The one execution of the chapters (TUTORIAL_QUICK=$TUTORIAL_QUICK): a cell error fails
# the build (book/_config.yml), and scripts/notebook_times.py prints each chapter's time.
run_phase "the book: every chapter executed (TUTORIAL_QUICK=$TUTORIAL_QUICK), warnings are errors" \
  bash scripts/build_book.sh

run_phase "the built book's internal links and anchors (linkchecker, no network)" \
  bash scripts/check_site.sh book/_build/html

student_edition() {
  $PY scripts/make_student_edition.py --book --out student_edition
  .venv/bin/jupyter-book build student_edition -W -n --keep-going --quiet
}
run_phase "the student edition (solutions removed) and its book" student_edition

run_phase "the built book in a browser" $PY -m pytest tests/test_book_in_browser.py -q

echo "== time per phase"
printf '%s\n' "${TIMES[@]}"
printf '%6d s  %s\n' "$(( $(date +%s) - started ))" "scripts/test.sh in all"
