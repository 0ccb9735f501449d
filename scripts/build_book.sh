#!/usr/bin/env bash
# Build the book: executes every chapter and writes HTML to book/_build/html.
# Warnings are errors, and so is a cell that raises (book/_config.yml): every
# chapter is still executed (--keep-going), each failure reported with its cell
# and traceback. Then the time each chapter took (scripts/notebook_times.py, which
# fails too on a failed or unexecuted chapter).
# Data comes from the network, or from TUTORIAL_DATA_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
.venv/bin/python scripts/notebook_header.py --check
rm -rf book/_build
status=0
.venv/bin/jupyter-book build book -W -n --keep-going || status=$?
times=0
.venv/bin/python scripts/notebook_times.py book/_build || times=$?
[ "$status" -ne 0 ] || status=$times
if [ "$status" -ne 0 ]; then
  echo "book build FAILED (exit $status): see the warnings above" >&2
  exit "$status"
fi
echo "book built: open book/_build/html/index.html"
