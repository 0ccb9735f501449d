"""Affine algebra in the package's convention: the one home.

Convention
----------
An affine ``theta`` is ``(4, 3)`` or ``(batch, 4, 3)`` and moves row-vector
points: ``p -> [p, 1] @ theta`` (rows 0-2 the linear part, row 3 the
translation), in voxels, index order ``(d1, d2, d3)``. The identity is
``[I; 0]``. ``compose(first, second)`` applies ``first``, then ``second``.

Backends
--------
Importing this module does not import TensorFlow. The functions are
products, sums and concatenations; given NumPy arrays they compute in NumPy
(float64 unless the input is float32), given TensorFlow tensors in TensorFlow
(differentiable, the tensor's dtype), so :mod:`~tutorial_utils.warp`'s
TensorFlow-facing functions and :mod:`~tutorial_utils.metrics`' NumPy ones are
the same formulas. :func:`compose` and :func:`invert` are NumPy only.

No matrix product touches a tensor here: TensorFlow runs ``matmul``,
``einsum`` and ``matvec`` in TensorFloat-32 on Ampere and later GPUs (its
default since 2.4: inputs rounded to 10 bits of mantissa), which would move a
voxel coordinate of 200 by up to 0.06 voxel and round a fitted affine's
entries to about 1e-3 of themselves; the tensor paths sum three broadcast
products (:func:`_rows_times`), which stay float32 on every device.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence, Tuple

import numpy as np

__all__ = [
    "as_theta",
    "identity",
    "to_matrix",
    "transform_points",
    "compose",
    "invert",
    "grid_centre",
    "centre",
    "reference_grid",
    "ddf_from_affine",
    "parameterisation_matrices",
    "affine_parameterisation",
]


def _tf_or_none(*values):
    tf = sys.modules.get("tensorflow")
    if tf is not None and any(isinstance(v, (tf.Tensor, tf.Variable)) for v in values):
        return tf
    return None


def as_theta(theta, name: str = "theta") -> np.ndarray:
    """``theta`` as a float64 ``(batch, 4, 3)`` array, checked.

    Raises
    ------
    ValueError
        For a shape other than ``(4, 3)`` or ``(batch, 4, 3)``, or non-finite values.
    """
    array = np.asarray(theta, dtype=np.float64)
    if array.shape == (4, 3):
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (4, 3):
        raise ValueError(
            f"`{name}` has shape {array.shape}, but it needs (4, 3) or (batch, 4, 3): an affine "
            "acting on [x y z 1] row vectors (rows 0-2 linear part, row 3 translation)."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` has non-finite values (NaN or inf).")
    return array


def identity(batch_size: int = None) -> np.ndarray:
    """The identity affine, ``(4, 3)`` (or ``(batch_size, 4, 3)``), float64."""
    eye = np.concatenate([np.eye(3), np.zeros((1, 3))], axis=0)
    return eye if batch_size is None else np.tile(eye[None], (int(batch_size), 1, 1))


def to_matrix(theta) -> np.ndarray:
    """The ``(..., 4, 4)`` matrix of ``theta`` (column ``(0, 0, 0, 1)`` added), so that
    affines compose by matrix product: ``[p, 1] @ M``."""
    theta = np.asarray(theta, dtype=np.float64)
    column = np.zeros(theta.shape[:-1] + (1,))
    column[..., 3, 0] = 1.0
    return np.concatenate([theta, column], axis=-1)


def _rows_times(rows, matrix):
    """``rows @ matrix`` as three broadcast products and two sums (arrays or tensors).

    ``rows`` is ``(..., 3)`` and ``matrix`` is ``(..., 3, p)`` (their leading axes
    broadcast, as in ``matmul``); returns ``(..., p)``. Elementwise products
    are never rounded to TensorFloat-32 (see the module notes), unlike
    ``matmul``; the sum runs over the three rows in order, a dot product of
    length 3 in the inputs' dtype. Unstacked, not sliced: under XLA the gradients of
    slices are pads, and the affine recipe compiled 0.3 s longer with them.
    """
    tf = _tf_or_none(rows, matrix)
    if tf is not None:
        columns, matrix_rows = tf.unstack(rows, axis=-1), tf.unstack(matrix, axis=-2)
    else:
        columns, matrix_rows = np.moveaxis(rows, -1, 0), np.moveaxis(matrix, -2, 0)
    term = [column[..., None] * row for column, row in zip(columns, matrix_rows)]
    return (term[0] + term[1]) + term[2]


def transform_points(theta, points):
    """Apply an affine to points: ``[p, 1] @ theta``.

    Parameters
    ----------
    theta : ``(4, 3)`` or ``(batch, 4, 3)``
    points : ``(..., 3)`` voxel coordinates, shared by the whole batch.

    Returns
    -------
    ``(..., 3)`` for a ``(4, 3)`` theta, ``(batch, ..., 3)`` for a batch; a
    tensor if either input is one.

    Examples
    --------
    >>> theta = identity(); theta[3] = [1.0, 2.0, 3.0]
    >>> transform_points(theta, np.zeros((2, 3))).tolist()
    [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    """
    tf = _tf_or_none(theta, points)
    if tf is not None:
        theta, points = tf.convert_to_tensor(theta), tf.convert_to_tensor(points)
        points = tf.cast(points, theta.dtype)
    else:
        theta, points = np.asarray(theta), np.asarray(points)
        theta = theta.astype(np.result_type(theta, points, np.float32))
    if len(theta.shape) == 2:
        return _rows_times(points, theta[:3, :]) + theta[3, :]
    # theta's batch axis before the points' axes: (batch, 1, ..., 1, 4, 3)
    batched = theta[(slice(None),) + (None,) * (len(points.shape) - 1)]
    return _rows_times(points, batched[..., :3, :]) + batched[..., 3, :]


def compose(first, second) -> np.ndarray:
    """The affine of applying ``first``, then ``second`` (NumPy, float64).

    ``transform_points(compose(a, b), p) == transform_points(b, transform_points(a, p))``.
    Both ``(4, 3)`` or both ``(batch, 4, 3)``; the result has that shape.

    Examples
    --------
    >>> a = identity(); a[3] = [1.0, 0.0, 0.0]
    >>> compose(a, a)[3].tolist()
    [2.0, 0.0, 0.0]
    """
    product = to_matrix(as_theta(first, "first")) @ to_matrix(as_theta(second, "second"))
    result = product[..., :3]
    return result[0] if np.ndim(first) == 2 and np.ndim(second) == 2 else result


def invert(theta) -> np.ndarray:
    """The inverse affine (NumPy, float64): ``compose(theta, invert(theta))`` is the identity.

    Raises
    ------
    ValueError
        If the linear part is singular (no inverse).
    """
    matrices = to_matrix(as_theta(theta))
    if np.any(np.abs(np.linalg.det(matrices)) < 1e-12):
        raise ValueError("`theta` has a singular linear part (determinant 0); it has no inverse.")
    result = np.linalg.inv(matrices)[..., :3]
    return result[0] if np.ndim(theta) == 2 else result


def grid_centre(grid_size: Sequence[int]) -> np.ndarray:
    """The centre ``(size - 1) / 2`` of a grid, in voxels, float64 ``(3,)``."""
    sizes = [int(size) for size in grid_size]
    if len(sizes) != 3 or min(sizes) < 1 or list(grid_size) != sizes:
        raise ValueError(f"`grid_size` is {tuple(grid_size)}; it needs 3 positive whole numbers.")
    return (np.asarray(sizes, dtype=np.float64) - 1.0) / 2.0


def centre(theta, grid_size: Sequence[int]):
    """The same linear part acting about the grid's centre ``c`` instead of voxel (0, 0, 0).

    Returns ``theta'`` with ``[x, 1] @ theta' = c + (x - c) A + t`` (``A`` and
    ``t`` the linear part and translation of ``theta``): translation
    ``t + c - c A``. NumPy or tensor in, the same out (the shape of ``theta``).
    """
    tf = _tf_or_none(theta)
    middle = grid_centre(grid_size)
    if tf is not None:
        middle = tf.constant(middle, theta.dtype)
    else:
        theta = np.asarray(theta)
        theta = theta.astype(np.result_type(theta, np.float32))
        middle = middle.astype(theta.dtype)
    linear = theta[..., :3, :]
    shift = middle - _rows_times(middle, linear)
    translation = (theta[..., 3, :] + shift)[..., None, :]
    if tf is not None:
        return tf.concat([linear, translation], axis=-2)
    return np.concatenate([linear, translation], axis=-2)


def reference_grid(grid_size: Sequence[int]) -> np.ndarray:
    """``(d1, d2, d3, 3)`` float64 voxel coordinates: ``grid[i, j, k] == (i, j, k)``."""
    grid_centre(grid_size)  # checks
    axes = [np.arange(int(size), dtype=np.float64) for size in grid_size]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def ddf_from_affine(theta, grid_size: Sequence[int]):
    """The DDF of an affine on a grid: ``[x, 1] @ theta - x`` at every voxel ``x``.

    Parameters
    ----------
    theta : ``(4, 3)`` or ``(batch, 4, 3)`` (array or tensor)
    grid_size : sequence of 3 int

    Returns
    -------
    ``(d1, d2, d3, 3)`` or ``(batch, d1, d2, d3, 3)`` displacements in voxels.

    Examples
    --------
    >>> theta = identity(); theta[3] = [0.5, 0.0, 0.0]
    >>> ddf_from_affine(theta, (2, 2, 2))[1, 1, 1].tolist()
    [0.5, 0.0, 0.0]
    """
    tf = _tf_or_none(theta)
    grid = reference_grid(grid_size)
    if tf is not None:
        grid = tf.constant(grid, theta.dtype)
    else:
        theta = np.asarray(theta)
        grid = grid.astype(np.result_type(theta, np.float32))
    return transform_points(theta, grid) - grid


def parameterisation_matrices(grid_size: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The constants of the conditioned affine parameterisation, float64.

    ``theta = M @ parameters + E`` and ``parameters = M_inv @ (theta - E)``
    for ``(4, 3)`` ``parameters`` (identity ``[I; 0]``): rows 0-2 are the
    linear part ``L`` itself, row 3 the translation in units of ``s``, about
    the centre ``c``: ``x -> c + (x - c) L + s t``. With ``s`` the
    root-mean-square half-size of the grid (at least 1), a unit change of any
    parameter moves a typical voxel by about ``s`` voxels, so the 12
    parameters are commensurate, and pivoting about the centre decouples
    translation from rotation and scaling. ``M = [[I, 0], [-c, s]]``, ``E`` has
    ``c`` in row 3.

    Returns
    -------
    (M, E, M_inv) : ``(4, 4)``, ``(4, 3)``, ``(4, 4)`` float64; TensorFlow code
    casts them with ``tf.constant`` and does the same matmul.
    """
    middle = grid_centre(grid_size)
    scale = float(max(np.sqrt(np.mean(middle ** 2)), 1.0))
    matrix = np.eye(4)
    matrix[3, :3], matrix[3, 3] = -middle, scale
    offset = np.zeros((4, 3))
    offset[3] = middle
    return matrix, offset, np.linalg.inv(matrix)


def affine_parameterisation(grid_size: Sequence[int]) -> Tuple[Callable, Callable]:
    """``(to_theta, from_theta)`` of the conditioned parameterisation (see
    :func:`parameterisation_matrices`), for NumPy arrays or tensors.

    ``to_theta(parameters (4, 3))`` returns ``theta`` ``(1, 4, 3)``;
    ``from_theta(theta (1, 4, 3) or (4, 3))`` returns ``(4, 3)`` parameters.

    Examples
    --------
    >>> to_theta, from_theta = affine_parameterisation((9, 9, 5))
    >>> np.allclose(from_theta(identity()), identity())  # the identity is [I; 0] in both
    True
    >>> theta = identity(); theta[3] = [1.0, 2.0, 3.0]
    >>> np.allclose(to_theta(from_theta(theta))[0], theta)
    True
    """
    middle = grid_centre(grid_size)
    scale = float(max(np.sqrt(np.mean(middle ** 2)), 1.0))
    # Written out as x -> c + (x - c) L + s t (not as the matrix product of
    # parameterisation_matrices, which is the same map): this order of float32
    # operations is the one chapter 3's printed numbers were recorded with.

    def to_theta(parameters):
        tf = _tf_or_none(parameters)
        if tf is None:
            parameters = np.asarray(parameters)
            centre_ = middle.astype(np.result_type(parameters, np.float32))
            shift = centre_ - centre_ @ parameters[:3] + parameters[3] * scale
            return np.concatenate([parameters[:3], shift[None]], axis=0)[None]
        centre_ = tf.constant(middle, parameters.dtype)
        linear = parameters[:3]
        shift = centre_ - _rows_times(centre_, linear) + parameters[3] * scale
        return tf.concat([linear, shift[None]], axis=0)[None]

    def from_theta(theta):
        tf = _tf_or_none(theta)
        if tf is None:
            theta = np.reshape(np.asarray(theta), (4, 3))
            centre_ = middle.astype(np.result_type(theta, np.float32))
            translation = (theta[3] - centre_ + centre_ @ theta[:3]) / scale
            return np.concatenate([theta[:3], translation[None]], axis=0)
        theta = tf.reshape(theta, (4, 3))
        centre_ = tf.constant(middle, theta.dtype)
        linear = theta[:3]
        translation = (theta[3] - centre_ + _rows_times(centre_, linear)) / scale
        return tf.concat([linear, translation[None]], axis=0)

    return to_theta, from_theta
