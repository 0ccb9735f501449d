"""tutorial_utils: the small TensorFlow core behind the course notebooks.

Modules, one concern each:

- :mod:`tutorial_utils.warp`     grids, affine transforms, resampling, the ``Warping`` layer, velocity fields
- :mod:`tutorial_utils.losses`   intensity, label and deformation losses, and their dispatchers
- :mod:`tutorial_utils.metrics`  evaluation: Dice, Hausdorff, Jacobian determinant, affine residual
- :mod:`tutorial_utils.data`     the data manifest, verified downloads, loaders
- :mod:`tutorial_utils.viz`      the plots and the slice viewer the chapters share (its static
  HTML/JavaScript lives in ``tutorial_utils/templates``)
- :mod:`tutorial_utils.config`   quick mode and seeds

TensorFlow is imported only by the modules that compute with it (``warp``,
``losses``, ``metrics``' Jacobian helpers, ``register``, ``network``,
``training``), quietly, through the private ``_tf`` module; ``data``, ``viz``,
``exercises``, ``config`` and ``progress`` work without it.

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
