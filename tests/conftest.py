"""Shared fixtures: the shared data mirror beside the checkout, and quiet TensorFlow."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: an end-to-end registration run (seconds on CI's 2-core machine) whose every part is "
        "also tested on its own by fast tests; scripts/test.sh runs it, scripts/test_colab.sh "
        "(the unit tests again under the lowest TensorFlow) deselects it with -m 'not slow'",
    )


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MIRROR = SHARED_DATA / "example-data"


@pytest.fixture
def mirror_dir():
    """The byte-identical mirror of the upstream example data, or skip."""
    if not MIRROR.is_dir():
        pytest.skip(f"no shared data mirror at {MIRROR} (expected ../shared beside the checkout)")
    return MIRROR


@pytest.fixture
def upstream_tsv():
    path = SHARED_DATA / "UPSTREAM.tsv"
    if not path.is_file():
        pytest.skip(f"no {path} (expected ../shared beside the checkout)")
    return path
