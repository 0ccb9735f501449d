"""Run-time settings the notebooks share: the run-time switches and seeds.

Every run-time switch is read here and nowhere else, strictly: ``1``, ``true``,
``yes``, ``on`` turn it on; ``0``, ``false``, ``no``, ``off``, empty or unset turn
it off (any case, surrounding spaces ignored); anything else raises a ValueError
naming the variable, the value found and the accepted values, so a typo is never
silently read as "off".

- ``TUTORIAL_QUICK`` (:func:`is_quick`): quick mode cuts iteration counts (and,
  where a chapter says so, image sizes) so that every notebook runs in CI in
  minutes. It still uses real data and runs every cell; the chapters print which
  mode they are in.
- ``TUTORIAL_LUNG_STANDIN`` (:func:`lung_standin`): chapter 5 uses the labelled
  lung stand-in (CT-like images synthesised from the real lung masks) instead of
  the real CT. Never chosen automatically.
"""
from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["is_quick", "lung_standin", "switch", "pick", "set_seed", "describe_mode", "QUICK_ENV",
           "LUNG_STANDIN_ENV"]

QUICK_ENV = "TUTORIAL_QUICK"
LUNG_STANDIN_ENV = "TUTORIAL_LUNG_STANDIN"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off", "")


def switch(name: str) -> bool:
    """The on/off run-time switch in environment variable ``name``, read strictly.

    On: ``1``, ``true``, ``yes``, ``on``; off: ``0``, ``false``, ``no``, ``off``,
    empty or unset (any case, surrounding spaces ignored).

    Raises
    ------
    ValueError
        For any other value, naming the variable, the value and the accepted values.

    >>> switch("TUTORIAL_SURELY_UNSET_VARIABLE")
    False
    """
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"The environment variable {name} is {raw!r}, which is not an on/off value: use one of "
        f"{', '.join(_ON)} for on, or one of {', '.join(v for v in _OFF if v)}, empty or unset for off "
        "(any case)."
    )


def is_quick() -> bool:
    """True when quick mode is on: ``TUTORIAL_QUICK`` read by :func:`switch`."""
    return switch(QUICK_ENV)


def lung_standin() -> bool:
    """True when chapter 5 is asked to use the lung stand-in: ``TUTORIAL_LUNG_STANDIN``
    read by :func:`switch`. Pass it on: ``data.load_lung_pairs(..., standin=lung_standin())``."""
    return switch(LUNG_STANDIN_ENV)


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
