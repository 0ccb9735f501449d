"""tutorial_utils: the small TensorFlow core behind the course notebooks.

One home per concept. Where does X live?

- the maths of fields and transforms (NumPy; TensorFlow tensors accepted where noted):
  :mod:`~tutorial_utils.affine` (affine algebra: apply, compose, invert, centre, the
  conditioned parameterisation, affine -> DDF), :mod:`~tutorial_utils.fields` (the one
  derivative stencil, the Jacobian determinants, central and the 8 one-sided ones, the one
  Gaussian smoothing), :mod:`~tutorial_utils.points` (points through a transform in either
  direction, landmarks, target registration error), :mod:`~tutorial_utils.geometry`
  (ITK physical space <-> the course's voxels)
- TensorFlow: :mod:`~tutorial_utils.warp` (grids, the one trilinear interpolator
  ``resample`` / ``resample_points``, ``warp``, the ``Warping`` layer, composition,
  velocity fields), :mod:`~tutorial_utils.losses` (every loss, the folding penalty and
  masked losses included, through the one lookup ``get_loss(name)``; a choice of loss
  is always called ``image_loss``, ``label_loss`` or ``deform_loss``)
- judging a registration (NumPy/SciPy only, independent of the optimiser):
  :mod:`~tutorial_utils.metrics`; what a registration returns and the comparison
  table: :mod:`~tutorial_utils.results` (``RegistrationResult``, ``compare``)
- registering: :mod:`~tutorial_utils.register` (a package: ``loop`` (``run_steps``,
  the one coarse-to-fine driver), ``pyramid``, ``affine`` (``register_affine``),
  ``nonrigid`` (``register_nonrigid``)); :mod:`~tutorial_utils.classical` (elastix,
  scikit-image, returning the same result type); :mod:`~tutorial_utils.network`,
  :mod:`~tutorial_utils.training` (the learned registration of chapter 5)
- files and data: :mod:`~tutorial_utils.images` (NIfTI and what SimpleITK reads, with
  geometry; ITK displacement fields and transforms out), :mod:`~tutorial_utils.data` (a
  package: ``manifest``, ``fetching``, ``loaders``, ``standin``, ``cli``)
- the notebooks: :mod:`~tutorial_utils.viz` (a package: ``orientation``, ``figures``,
  ``viewer``, ``notices``), :mod:`~tutorial_utils.progress`, :mod:`~tutorial_utils.exercises`,
  :mod:`~tutorial_utils.config` (the run-time switches ``TUTORIAL_QUICK`` and
  ``TUTORIAL_LUNG_STANDIN``, read strictly, and seeds)

**Fixed first, everywhere.** Every function that takes both a fixed and a moving
image (or label) takes them by keyword only: ``fixed=``, ``moving=`` (and
``fixed_label=``, ``moving_label=``), so a swapped pair is an error, not a silent
wrong answer. Functions that compare the fixed image with the warped moving one
(losses, metrics) take ``(fixed, warped)``, fixed first. A DDF lives on the fixed
image's grid and points into the moving image: ``warped = warp.warp(moving, ddf)``.

TensorFlow is imported only by the modules that compute with it (``warp``,
``losses``, ``register``, ``network``, ``training``), quietly, through the
private ``_tf`` module; every other module works without it (tested).

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
