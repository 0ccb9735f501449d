"""Input checks shared by the whole package (private).

Each check raises a ``ValueError`` that names the argument, what was found and
what is needed. Only :func:`as_float32` needs TensorFlow, and imports it when
called, so the NumPy-only modules (``data``, ``viz``) can use the rest freely.
"""
from __future__ import annotations

from typing import Sequence


def check_rank(tensor, name: str, ranks: Sequence[int], meaning: str):
    """Raise a ``ValueError`` unless ``tensor`` has one of ``ranks`` dimensions.

    Parameters
    ----------
    tensor : array-like
        The argument to check.
    name : str
        The argument's name, quoted in the message.
    ranks : sequence of int
        Accepted ranks.
    meaning : str
        The shape it needs, in words, e.g. ``"(batch, d1, d2, d3, 3)"``.

    Returns
    -------
    tuple of int
        The shape found.
    """
    shape = tuple(tensor.shape)
    if len(shape) not in ranks:
        raise ValueError(
            f"`{name}` has shape {shape} (rank {len(shape)}), but it needs shape {meaning}."
        )
    return shape


def check_same_shape(first, second, first_name: str, second_name: str):
    """Raise a ``ValueError`` unless two tensors have the same shape.

    Used for fixed/warped pairs whose voxels are compared one to one.
    """
    if tuple(first.shape) != tuple(second.shape):
        raise ValueError(
            f"`{first_name}` has shape {tuple(first.shape)} but `{second_name}` has shape "
            f"{tuple(second.shape)}; they must match voxel for voxel. Resample one onto the "
            "other's grid first."
        )


def as_float32(value, name: str):
    """``value`` as a float32 ``tf.Tensor``; a ``ValueError`` for non-numeric dtypes."""
    import tensorflow as tf

    tensor = tf.convert_to_tensor(value)
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer or tensor.dtype == tf.bool):
        raise ValueError(f"`{name}` has dtype {tensor.dtype.name}; it needs a numeric dtype.")
    return tf.cast(tensor, tf.float32)


def check_theta(theta):
    """Raise a ``ValueError`` unless ``theta`` is a ``(batch, 4, 3)`` affine."""
    shape = check_rank(theta, "theta", [3], "(batch, 4, 3)")
    if shape[1:] != (4, 3):
        raise ValueError(
            f"`theta` has shape {shape}, but it needs shape (batch, 4, 3): a 12-parameter "
            "affine acting on [x y z 1] row vectors (rows 0-2 linear part, row 3 translation)."
        )


def check_spacing(spacing, one_for_all: bool = False):
    """``spacing`` (mm per voxel along d1, d2, d3) as a float64 array ``(3,)``, or None.

    Every voxel size must be finite and > 0 (a zero spacing would make every distance
    0 silently). With ``one_for_all``, a single number stands for all three axes.
    """
    import numpy as np

    if spacing is None:
        return None
    array = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if one_for_all and array.shape == (1,):
        array = np.repeat(array, 3)
    if array.shape != (3,) or not np.all(np.isfinite(array)) or np.any(array <= 0):
        accepted = "3 positive numbers (mm per voxel along d1, d2, d3)"
        accepted += ", one number for all three," if one_for_all else ""
        raise ValueError(f"`spacing` is {spacing!r}; it needs {accepted} or None for voxels.")
    return array
