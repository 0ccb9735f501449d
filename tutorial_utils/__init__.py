"""tutorial_utils: the small TensorFlow core behind the course notebooks.

Modules, one concern each:

- :mod:`tutorial_utils.warp`     grids, affine transforms, resampling, the ``Warping`` layer, velocity fields
- :mod:`tutorial_utils.losses`   intensity, label and deformation losses, and their dispatchers
- :mod:`tutorial_utils.metrics`  evaluation: Dice, Hausdorff, Jacobian determinant, affine residual
- :mod:`tutorial_utils.data`     the data manifest, verified downloads, loaders
- :mod:`tutorial_utils.viz`      the plots the chapters share
- :mod:`tutorial_utils.config`   quick mode and seeds

Conventions everywhere: volumes are ``(batch, d1, d2, d3)`` or
``(batch, d1, d2, d3, channels)`` float32; coordinates and displacements are in
voxels, index order ``(d1, d2, d3)``.
"""
import os as _os

# TensorFlow prints several lines of start-up logs on import; the notebooks are
# teaching material and should not open with a wall of them.  A user who sets
# the variable themselves keeps their choice.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly():
    """Import TensorFlow with the process's stderr silenced for the duration.

    TensorFlow 2.x writes start-up notes (oneDNN, absl) straight to file
    descriptor 2, ignoring TF_CPP_MIN_LOG_LEVEL, and notebooks would show them
    as the first output of every chapter. Python-level errors are still raised.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    try:
        saved = _os.dup(2)
    except OSError:  # no usable fd 2 (some embedded interpreters)
        import tensorflow  # noqa: F401
        return
    devnull = _os.open(_os.devnull, _os.O_WRONLY)
    try:
        _os.dup2(devnull, 2)
        import tensorflow  # noqa: F401

        tensorflow.constant(0.0) + 0.0  # the first op prints a second round of notes
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)
        _os.close(devnull)


_import_tensorflow_quietly()

__version__ = "0.1.0"
