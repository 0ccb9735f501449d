"""tutorial_utils: the small TensorFlow core behind the course notebooks.

Modules, one concern each:

- :mod:`tutorial_utils.warp`       grids, affine transforms, resampling, ``warp``, the ``Warping`` layer,
  field composition, velocity fields
- :mod:`tutorial_utils.losses`     intensity, label and deformation losses; the one lookup ``get_loss``
- :mod:`tutorial_utils.metrics`    evaluation: Dice, Hausdorff, Jacobian determinant, folding,
  affine residual, ``evaluate_registration``
- :mod:`tutorial_utils.register`   classical registration: the loop driver ``run_steps``, the steps,
  the pyramid, ``register_affine``, ``register_nonrigid``
- :mod:`tutorial_utils.classical`  the established tools (elastix, scikit-image) in the course's conventions
- :mod:`tutorial_utils.network`, :mod:`tutorial_utils.training`  the learned registration of chapter 5
- :mod:`tutorial_utils.data`       the data manifest, verified downloads, loaders, the lung stand-in (a package:
  ``manifest``, ``fetching``, ``loaders``, ``standin``, ``cli``)
- :mod:`tutorial_utils.viz`        the plots, the slice viewer and notice boxes the chapters share; a
  package: ``viz.orientation``, ``viz.figures``, ``viz.viewer``, ``viz.notices``, every public name
  importable from ``viz`` (the static HTML/JavaScript lives in ``tutorial_utils/templates``)
- :mod:`tutorial_utils.progress`   progress bars whose final state survives notebook execution
- :mod:`tutorial_utils.exercises`  exercise checks and hints
- :mod:`tutorial_utils.config`     the run-time switches (``TUTORIAL_QUICK``, ``TUTORIAL_LUNG_STANDIN``), read strictly, and seeds

**Fixed first, everywhere.** Every function that takes both a fixed and a moving
image (or label) takes them by keyword only: ``fixed=``, ``moving=`` (and
``fixed_label=``, ``moving_label=``), so a swapped pair is an error, not a silent
wrong answer. Functions that compare the fixed image with the warped moving one
(losses, metrics) take ``(fixed, warped)``, fixed first. A DDF lives on the fixed
image's grid and points into the moving image: ``warped = warp.warp(moving, ddf)``.

TensorFlow is imported only by the modules that compute with it (``warp``,
``losses``, ``register``, ``network``, ``training``, and ``metrics``, which
warps labels with ``warp``), quietly, through the private ``_tf`` module;
``data``, ``viz``, ``classical``, ``exercises``, ``config`` and ``progress``
work without it.

No function changes global state a notebook relies on (NumPy's, Python's or
TensorFlow's global random generators, matplotlib's rcParams, the working
directory), except :func:`tutorial_utils.config.set_seed`, whose job it is.

Orientation: the loaders in :mod:`~tutorial_utils.data` say what their array axes
mean (``"orientation"``, e.g. ``"LPS"``); :mod:`~tutorial_utils.viz` takes
``orientation=`` to show standard radiological views. Arrays are never reoriented.

Conventions everywhere: volumes are ``(batch, d1, d2, d3)`` or
``(batch, d1, d2, d3, channels)`` float32; coordinates and displacements are in
voxels, index order ``(d1, d2, d3)``.
"""
__version__ = "0.1.0"
