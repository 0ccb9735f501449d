"""Run-time settings the notebooks share: quick mode and seeds.

Quick mode (``TUTORIAL_QUICK=1``) cuts iteration counts (and, where a chapter
says so, image sizes) so that every notebook runs in CI in minutes. It still uses
real data and runs every cell; the chapters print which mode they are in.
"""
from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["is_quick", "pick", "set_seed", "describe_mode", "QUICK_ENV"]

QUICK_ENV = "TUTORIAL_QUICK"


def is_quick() -> bool:
    """True when the environment variable ``TUTORIAL_QUICK`` is set to 1/true/yes."""
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(
        f"{QUICK_ENV}={value!r} is not understood; set it to 1 for quick mode or 0 (or unset it) for full mode."
    )


def pick(full, quick):
    """Return ``quick`` in quick mode and ``full`` otherwise.

    >>> pick(full=1001, quick=60) in (1001, 60)
    True
    """
    return quick if is_quick() else full


def describe_mode() -> str:
    """One line saying which mode is on and how to change it."""
    if is_quick():
        return f"QUICK mode ({QUICK_ENV}=1): fewer iterations, same real data. Unset {QUICK_ENV} for the full recipe."
    return f"FULL mode: the original tutorial's settings. Set {QUICK_ENV}=1 for a quick run."


def set_seed(seed: int) -> int:
    """Seed Python, NumPy and TensorFlow: the one function of the package that
    changes global state on purpose (every other function leaves the global random
    generators, matplotlib's rcParams and the working directory as they were;
    ``tests/test_global_state.py`` checks this).

    On a CPU this makes a notebook give the same numbers run after run. (On a
    GPU some TensorFlow kernels are not bitwise deterministic; the differences
    are at float32 round-off.) Returns the seed, so a notebook can show it:
    ``print("seed", set_seed(42))``.
    """
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    return seed
