#!/usr/bin/env bash
# The Colab path, offline: a chapter's set-up cell installs tutorial_utils from
# the repository at tag v<version>, then the chapter runs (quick mode).
#
# - "Colab": a virtual environment with TensorFlow (the LOWEST version that
#   pyproject.toml declares, so that version is tested too), Jupyter (nbclient,
#   ipykernel) and pytest, but no tutorial_utils; a stand-in `google.colab`
#   module imported at kernel start, as on Colab.
# - "GitHub": a clone of this repository's HEAD, tagged v<version>; git's
#   url.<clone>.insteadOf sends the set-up cell's unchanged URL there. A wrong
#   install line, tag, extra or manifest fails the run.
# - Data come from TUTORIAL_DATA_MIRROR; colab_check.py also checks that with no
#   mirror the installed data layer fetches the manifest's URLs.
# - The unit tests of the TensorFlow modules then run once more under that lowest
#   TensorFlow, except those marked slow (see 4. below).
#
# Usage: bash scripts/test_colab.sh [chapter notebook, default 01_introduction]
# Needs: python3.11 (or $PYTHON), git, PyPI, TUTORIAL_DATA_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CHAPTER=${1:-book/chapters/01_introduction.ipynb}
PYTHON=${PYTHON:-python3}
VENV=${COLAB_VENV:-$REPO/.ci-cache/colab-venv}
: "${TUTORIAL_DATA_MIRROR:?set TUTORIAL_DATA_MIRROR to the offline data mirror}"
export TUTORIAL_QUICK=${TUTORIAL_QUICK:-1} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

# the lowest TensorFlow that the package declares (pyproject.toml, extra "cpu")
TF_LOWEST=$(sed -n 's/.*"tensorflow-cpu>=\([0-9.]*\),.*/\1/p' pyproject.toml)
case "$TF_LOWEST" in 2.16) TF_PIN=2.16.2 ;; *) TF_PIN="$TF_LOWEST.*" ;; esac
STAMP="$VENV/.tf-$TF_PIN-xdist"  # what the kept environment holds; a new one is built when this changes
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' tutorial_utils/__init__.py)
URL=$(sed -n 's/^  url: *//p' book/_config.yml)
COMMIT=$(git rev-parse HEAD)
[ -n "$TF_LOWEST" ] && [ -n "$VERSION" ] && [ -n "$URL" ] || { echo "could not read versions/URL"; exit 1; }

# 1. the "Colab" runtime (kept between runs; tutorial_utils removed each time)
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "tensorflow-cpu==$TF_PIN" nbclient==0.11.0 ipykernel==7.4.0 \
      pytest==9.2.0 pytest-xdist==3.8.0 pyyaml
  touch "$STAMP"
fi
"$VENV/bin/python" -m pip uninstall --quiet --yes tutorial_utils >/dev/null 2>&1 || true
TF_INSTALLED=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('tensorflow-cpu'))")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub/google/colab" "$work/ipython/profile_default/startup"
echo '"""Stand-in for Colab'"'"'s google.colab (only its presence matters)."""' \
  >"$work/stub/google/colab/__init__.py"  # google/ stays a namespace package (protobuf)
echo "import google.colab  # as on Colab: imported when the kernel starts" \
  >"$work/ipython/profile_default/startup/00-colab.py"
"$VENV/bin/python" -m ipykernel install --prefix "$VENV" --name colab-check >/dev/null 2>&1

# 2. "GitHub": the repository at tag v<version>
git clone --quiet --no-local "$REPO" "$work/repository"
git -C "$work/repository" checkout --quiet "$COMMIT"
git -C "$work/repository" tag -f "v$VERSION" "$COMMIT" >/dev/null

# 3. the chapter, its set-up cell unchanged
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.file://$work/repository.insteadOf" GIT_CONFIG_VALUE_0="$URL"
start=$(date +%s)
(cd "$work" && PYTHONPATH="$work/stub" IPYTHONDIR="$work/ipython" PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$VENV/bin/python" "$REPO/scripts/colab_check.py" "$REPO/$CHAPTER" --commit "$COMMIT" \
  --version "$VERSION" --tensorflow "$TF_INSTALLED" --manifest "$REPO/tutorial_utils/data_manifest.yaml")
echo "colab: chapter and checks took $(( $(date +%s) - start )) s"
unset GIT_CONFIG_COUNT GIT_CONFIG_KEY_0 GIT_CONFIG_VALUE_0

# 4. the unit tests of the TensorFlow modules under the lowest declared TensorFlow (the
# installed package): the test files that import TensorFlow or a module that computes
# with it. The others (data, viz, classical, geometry, points, ...) do not depend on
# TensorFlow's version and ran in scripts/test.sh; the files-in, files-out command's
# tests run the same registration functions as test_register_*.py, slowly, and run there.
# Tests marked `slow` (tests/conftest.py: end-to-end registration runs on synthetic
# pairs) are deselected here: what they are made of (each loss and its gradient, warping,
# the XLA steps against the graph steps, the optimiser's bookkeeping, training and its
# checkpoints, global state) is tested under this TensorFlow by the fast tests, and they
# ran under the pinned TensorFlow in scripts/test.sh.
units=$(grep -l -E "import tensorflow|tutorial_utils import .*(warp|losses|register|network|training)|tutorial_utils\.(warp|losses|register|network|training)" tests/test_*.py \
  | grep -v -e test_register_cli -e test_images)
start=$(date +%s)
(cd "$work/repository" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" --dist loadfile -m "not slow" \
  --durations=10 $units)
echo "colab: unit tests under TensorFlow $TF_INSTALLED took $(( $(date +%s) - start )) s"
