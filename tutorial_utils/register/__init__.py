"""Classical (pairwise) registration by gradient descent.

The chapters write their first optimisation loop out in full, so a reader sees
the ``GradientTape``; this package holds the loop drivers they share and the
improved recipes built on them. Every gradient step is compiled with XLA
(``jit_compile=True``), which is what makes the recipes quick on a CPU; the
affine recipe's default optimiser, Gauss-Newton, is NumPy and compiles nothing.

- :mod:`~tutorial_utils.register.loop`: :func:`run_steps` (one optimisation
  loop: history, timing, progress, early stop) and :func:`coarse_to_fine` (the
  one level loop: state handed on, per-level time, history labelled by level);
- :mod:`~tutorial_utils.register.pyramid`: :func:`gaussian_pyramid`,
  :func:`pyramid_sizes`, :func:`smoothing_pyramid`, :func:`upsample_field`;
- :mod:`~tutorial_utils.register.affine`: :func:`sample_points`,
  :func:`sampled_dissimilarity`, :func:`affine_parameterisation`,
  :func:`make_stochastic_affine_step`, :func:`affine_schedule`, :func:`gauss_newton_step`,
  :func:`register_affine`;
- :mod:`~tutorial_utils.register.nonrigid`: :func:`make_ddf_step`,
  :func:`register_nonrigid` (its folding hinge is
  :func:`tutorial_utils.losses.folding_penalty`).

- :mod:`~tutorial_utils.register.files`: :func:`register_files`, the two steps on two
  image files (NIfTI, ...) in millimetres, results written for 3D Slicer and ITK-SNAP;
  the same as one command, ``python -m tutorial_utils.register FIXED MOVING --out DIR``
  (:mod:`~tutorial_utils.register.cli`).

:func:`register_affine` and :func:`register_nonrigid` return a
:class:`~tutorial_utils.results.RegistrationResult` whose ``iterations``,
``history``, ``seconds`` and ``level_seconds`` describe what ran. The seed
recipes' step makers (chapter 3's whole-grid affine step, chapter 4's plain DDF
loop) live with the benchmark that times them, ``benchmarks/seed_recipes.py``.
"""
from .affine import (
    AdamState,
    affine_parameterisation,
    affine_schedule,
    gauss_newton_step,
    make_stochastic_affine_step,
    register_affine,
    sample_points,
    sampled_dissimilarity,
)
from .loop import AdamVariables, CoarseToFine, LevelRun, adam_update, coarse_to_fine, run_steps
from .nonrigid import make_ddf_step, register_nonrigid
from .pyramid import gaussian_pyramid, pyramid_sizes, smoothing_pyramid, upsample_field
from .files import register_files

__all__ = [
    "register_files",
    "run_steps",
    "adam_update",
    "AdamVariables",
    "coarse_to_fine",
    "LevelRun",
    "CoarseToFine",
    "gaussian_pyramid",
    "pyramid_sizes",
    "smoothing_pyramid",
    "upsample_field",
    "sample_points",
    "sampled_dissimilarity",
    "affine_parameterisation",
    "AdamState",
    "make_stochastic_affine_step",
    "affine_schedule",
    "gauss_newton_step",
    "register_affine",
    "make_ddf_step",
    "register_nonrigid",
]
