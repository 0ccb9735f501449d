#!/usr/bin/env bash
# Build the book: executes every chapter and writes HTML to book/_build/html.
# Warnings are errors. Data comes from the network, or from TUTORIAL_DATA_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
.venv/bin/python scripts/notebook_header.py --check
rm -rf book/_build
.venv/bin/jupyter-book build book -W -n --keep-going
echo "book built: open book/_build/html/index.html"
