"""Derivatives, Jacobian determinants and Gaussian smoothing of fields: the one home.

Every derivative the package takes of a field (the deformation energies and
the folding penalty of :mod:`~tutorial_utils.losses`, the Jacobian maps and
folding scores of :mod:`~tutorial_utils.metrics`), and every Gaussian
smoothing (the multi-scale label loss, LNCC's Gaussian window, the pyramids
of :mod:`~tutorial_utils.register`), comes from here.

Backends
--------
Importing this module does not import TensorFlow. Its derivative and
determinant functions are slicing and arithmetic only, so they take NumPy
arrays *and* TensorFlow tensors and return the same kind (the few
concatenations and stacks are chosen from the input's type; TensorFlow is used
only when it was given a tensor, so it is already imported). Gaussian
smoothing comes as a pair that give the same numbers (to float32 rounding):
:func:`smooth_array` (NumPy/SciPy) and :func:`smooth_tensor` (TensorFlow,
imported when called).

Conventions
-----------
A field is ``(batch, d1, d2, d3, c)`` (a DDF has ``c = 3`` displacements, in
voxels, index order); derivatives are per voxel (unit spacing). The Jacobian
of the map ``x -> x + u(x)`` is ``J[c][i] = delta_ci + d u_c / d x_i``.
"""
from __future__ import annotations

import itertools
import sys
from typing import Sequence

import numpy as np

__all__ = [
    "gradient",
    "central_differences",
    "extend_quadratically",
    "one_sided_difference",
    "determinant_3x3",
    "jacobian_determinant",
    "one_sided_jacobian_determinants",
    "ONE_SIDED_COMBINATIONS",
    "gaussian_kernel_1d",
    "smooth_array",
    "smooth_tensor",
    "BORDER_RULE",
]

#: The border rule of every Gaussian smoothing in the package (elastix's pyramid,
#: ``scipy.ndimage.gaussian_filter(mode="nearest")``): the volume is extended by
#: repeating its edge voxel, and the kernel is truncated at 4 sigma.
BORDER_RULE = "nearest"
TRUNCATE = 4.0


# --------------------------------------------------------------------------
# backend: NumPy arrays or TensorFlow tensors, never importing TensorFlow
# --------------------------------------------------------------------------
def _is_tensor(value) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(value, (tf.Tensor, tf.Variable))


def _concat(parts, axis):
    if any(_is_tensor(part) for part in parts):
        return sys.modules["tensorflow"].concat(parts, axis=axis)
    return np.concatenate(parts, axis=axis)


def _stack(parts, axis):
    if any(_is_tensor(part) for part in parts):
        return sys.modules["tensorflow"].stack(parts, axis=axis)
    return np.stack(parts, axis=axis)


def _take(field, axis: int, start, stop):
    """``field[..., start:stop, ...]`` along ``axis`` (rank-independent)."""
    where = [slice(None)] * len(field.shape)
    where[axis] = slice(start, stop)
    return field[tuple(where)]


def _check_field(field, name="field", minimum=3):
    shape = tuple(field.shape)
    if len(shape) != 5:
        raise ValueError(
            f"`{name}` has shape {shape}, but it needs (batch, d1, d2, d3, channels)."
        )
    if any(size is not None and size < minimum for size in shape[1:4]):
        raise ValueError(
            f"`{name}` has shape {shape}; derivatives need at least {minimum} voxels per axis."
        )
    return shape


# --------------------------------------------------------------------------
# the derivative stencil
# --------------------------------------------------------------------------
def gradient(field, axis: int):
    """Derivative along spatial ``axis`` (1, 2 or 3), as ``numpy.gradient(..., edge_order=2)``.

    Central differences ``(f[i+1] - f[i-1]) / 2`` inside; second-order
    one-sided differences ``-1.5 f0 + 2 f1 - 0.5 f2`` (and mirrored) on the two
    outer voxels; exact for fields up to quadratic. The arithmetic is
    NumPy's own, so a float64 array gives ``numpy.gradient``'s numbers bit for
    bit. The same stencil, written as :func:`central_differences` of the field
    extended by :func:`extend_quadratically`, is what the deformation energies use.

    Parameters
    ----------
    field : array or tensor ``(batch, d1, d2, d3, c)``, at least 3 voxels along ``axis``.
    axis : {1, 2, 3}

    Returns
    -------
    The same kind and shape as ``field``.

    Examples
    --------
    >>> f = (np.arange(5.0) ** 2)[None, :, None, None, None] * np.ones((1, 5, 2, 2, 1))
    >>> gradient(f, 1)[0, :, 0, 0, 0].tolist()  # d(x^2)/dx = 2x, borders included
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    if axis not in (1, 2, 3):
        raise ValueError(f"`axis` is {axis!r}; it needs to be a spatial axis, 1, 2 or 3.")
    _check_field(field, minimum=1)
    size = field.shape[axis]
    if size is not None and size < 3:
        raise ValueError(f"`field` has shape {tuple(field.shape)}; a derivative along axis {axis} "
                         "needs at least 3 voxels there.")
    first = -1.5 * _take(field, axis, 0, 1) + 2.0 * _take(field, axis, 1, 2) + -0.5 * _take(field, axis, 2, 3)
    inside = (_take(field, axis, 2, size) - _take(field, axis, 0, size - 2)) / 2.0
    last = (0.5 * _take(field, axis, size - 3, size - 2) + -2.0 * _take(field, axis, size - 2, size - 1)
            + 1.5 * _take(field, axis, size - 1, size))
    return _concat([first, inside, last], axis)


def central_differences(field):
    """Central differences along d1, d2, d3 on the interior (one voxel cropped per side).

    ``field`` is ``(batch, d1, d2, d3, c)``; each of the three outputs is
    ``(batch, d1-2, d2-2, d3-2, c)``: ``(f[i+1] - f[i-1]) / 2``.
    """
    d_1 = (field[:, 2:, 1:-1, 1:-1] - field[:, :-2, 1:-1, 1:-1]) / 2.0
    d_2 = (field[:, 1:-1, 2:, 1:-1] - field[:, 1:-1, :-2, 1:-1]) / 2.0
    d_3 = (field[:, 1:-1, 1:-1, 2:] - field[:, 1:-1, 1:-1, :-2]) / 2.0
    return d_1, d_2, d_3


# The parabola through the 3 outer voxels (f0, f1, f2), evaluated beyond them:
# row k gives f[-width + k] (so f[-2] then f[-1]); mirrored for the far side.
_PARABOLA = np.array([[6.0, -8.0, 3.0], [3.0, -3.0, 1.0]])


def _beyond(block, weights, axis: int):
    """The slabs ``weights @ block`` along ``axis``: ``block`` holds 3 voxels there,
    ``weights`` is ``(m, 3)``; returns ``m`` voxels there. One broadcast product
    and a sum, so both slabs of a side come from one slice."""
    shape = [1] * (len(block.shape) + 1)
    shape[axis], shape[axis + 1] = weights.shape
    if _is_tensor(block):
        tf = sys.modules["tensorflow"]
        return tf.reduce_sum(tf.expand_dims(block, axis) * tf.constant(weights.reshape(shape), block.dtype),
                             axis=axis + 1)
    dtype = np.result_type(block.dtype, np.float32)
    return np.sum(np.expand_dims(block, axis) * weights.reshape(shape).astype(dtype), axis=axis + 1)


def extend_quadratically(field, width: int):
    """Extend ``(batch, d1, d2, d3, c)`` by ``width`` (1 or 2) voxels beyond each side.

    The parabola through the 3 outer voxels: ``f[-1] = 3 f0 - 3 f1 + f2``,
    ``f[-2] = 6 f0 - 8 f1 + 3 f2`` (exact for fields up to quadratic). Central
    differences at the outer voxel then equal :func:`gradient`'s one-sided ones.

    Each side's new slabs come from one slice of its 3 outer voxels, combined
    with the parabola's weights in one broadcast product: under XLA the
    gradient is then one pad per side, where reading the 3 voxels one slice
    at a time (one pad each, compiled as separate kernels) made a 32 x 64 x 64
    bending term take 3.1 s to compile and 20 ms per step, against 0.9 s and
    13 ms now. (A matrix product per axis compiled as fast, but would round
    every value to TensorFloat-32 on recent GPUs.)
    """
    if width not in (1, 2):
        raise ValueError(f"`width` is {width!r}; it needs to be 1 or 2 voxels.")
    _check_field(field, minimum=3)
    low = _PARABOLA[2 - width:]
    high = low[::-1, ::-1].copy()
    for axis in (1, 2, 3):
        size = field.shape[axis]
        field = _concat([_beyond(_take(field, axis, 0, 3), low, axis), field,
                         _beyond(_take(field, axis, size - 3, size), high, axis)], axis)
    return field


def one_sided_difference(field, axis: int, direction: str):
    """Forward ``f[i+1] - f[i]`` or backward ``f[i] - f[i-1]`` difference along ``axis``.

    At the voxel where the neighbour does not exist (the last one forward,
    the first one backward) the other one-sided difference is used: what exists.

    Parameters
    ----------
    field : array or tensor ``(batch, d1, d2, d3, c)``, at least 2 voxels along ``axis``.
    axis : {1, 2, 3}
    direction : {"forward", "backward"}

    Returns
    -------
    The same kind and shape as ``field``.

    Examples
    --------
    >>> f = np.array([0.0, 1.0, 4.0, 9.0])[None, :, None, None, None]
    >>> one_sided_difference(f, 1, "forward")[0, :, 0, 0, 0].tolist()
    [1.0, 3.0, 5.0, 5.0]
    >>> one_sided_difference(f, 1, "backward")[0, :, 0, 0, 0].tolist()
    [1.0, 1.0, 3.0, 5.0]
    """
    if direction not in ("forward", "backward"):
        raise ValueError(f"`direction` is {direction!r}; it needs to be 'forward' or 'backward'.")
    start = 1 if direction == "forward" else 0
    return _take(_edge_extended_steps(field, axis), axis, start, start + field.shape[axis])


def _edge_extended_steps(component, axis: int):
    """The ``size - 1`` forward steps of ``component`` (any rank) along
    ``axis``, with the first and last step repeated outwards (``size + 1`` values):
    entry ``v`` is the backward difference at voxel ``v``, entry ``v + 1`` the
    forward one, with :func:`one_sided_difference`'s rule where a neighbour is missing."""
    size = component.shape[axis]
    steps = _take(component, axis, 1, size) - _take(component, axis, 0, size - 1)
    return _concat([_take(steps, axis, 0, 1), steps, _take(steps, axis, size - 2, size - 1)], axis)


def determinant_3x3(matrix):
    """Determinant of a 3x3 matrix given as nested lists ``matrix[r][c]`` of arrays or
    tensors (elementwise), by cofactor expansion along the first row."""
    m = matrix
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def _determinant_of(derivatives):
    """``det(I + du/dx)`` from ``derivatives[i]``, the ``(batch, d1, d2, d3, 3)`` derivative
    of the DDF along spatial axis ``i + 1``; returns ``(batch, d1, d2, d3)``."""
    jac = [[derivatives[i][..., c] + (1.0 if i == c else 0.0) for i in range(3)] for c in range(3)]
    return determinant_3x3(jac)


def _check_ddf(ddf, minimum):
    shape = _check_field(ddf, "ddf", minimum)
    if shape[-1] != 3:
        raise ValueError(f"`ddf` has shape {shape}; its last axis must hold 3 displacements.")


def jacobian_determinant(ddf):
    """``det(I + du/dx)`` at every voxel with :func:`gradient`'s (central) stencil.

    Parameters
    ----------
    ddf : array or tensor ``(batch, d1, d2, d3, 3)``, voxels; at least 3 per axis.

    Returns
    -------
    ``(batch, d1, d2, d3)``, the same kind and dtype as ``ddf``. Central
    differences cannot see an odd-even (checkerboard) oscillation of the
    field; judge folding with :func:`one_sided_jacobian_determinants`.

    Examples
    --------
    >>> grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1)[None]
    >>> np.unique(jacobian_determinant(grid @ np.diag([1.0, 0.0, -0.5])))  # 2 * 1 * 0.5
    array([1.])
    """
    _check_ddf(ddf, 3)
    return _determinant_of([gradient(ddf, axis) for axis in (1, 2, 3)])


#: The 8 combinations of one-sided differences, per spatial axis (d1, d2, d3).
ONE_SIDED_COMBINATIONS = tuple(itertools.product(("forward", "backward"), repeat=3))


def one_sided_jacobian_determinants(ddf):
    """``det(I + du/dx)`` for each of the 8 forward/backward difference combinations.

    Liu et al., "On finite difference Jacobian computation in deformable image
    registration", IJCV 2024: a positive central-difference Jacobian does not
    make a digital transformation diffeomorphic (an odd-even oscillation of the
    field is invisible to central differences); it is, when the determinants of
    every one-sided combination (forward or backward along each axis) are
    positive. The combination ``k`` is :data:`ONE_SIDED_COMBINATIONS` ``[k]``;
    at a border the missing neighbour is replaced as in :func:`one_sided_difference`.

    Parameters
    ----------
    ddf : array or tensor ``(batch, d1, d2, d3, 3)``, voxels; at least 2 per axis.

    Returns
    -------
    ``(8, batch, d1, d2, d3)``, the same kind and dtype as ``ddf``.

    Examples
    --------
    >>> ddf = np.zeros((1, 6, 6, 6, 3)); ddf[0, ::2, ..., 0] = 1.2  # odd-even along d1
    >>> float(jacobian_determinant(ddf)[0, 2:-2, 2:-2, 2:-2].min())  # central: blind
    1.0
    >>> round(float(one_sided_jacobian_determinants(ddf)[:, 0, 2:-2, 2:-2, 2:-2].min()), 6)  # folds
    -0.2
    """
    _check_ddf(ddf, 2)
    # Each displacement component is taken out once, as its own contiguous
    # (batch, d1, d2, d3) array: working on ``ddf[..., c]`` slices of the
    # channel-last field inside every determinant was 7 times slower under XLA.
    components = [ddf[..., c] for c in range(3)]
    differences = {}
    for axis in (1, 2, 3):
        extended = [_edge_extended_steps(u, axis) for u in components]
        size = ddf.shape[axis]
        for direction, start in (("backward", 0), ("forward", 1)):
            differences[(axis, direction)] = [_take(e, axis, start, start + size) for e in extended]
    determinants = []
    for combo in ONE_SIDED_COMBINATIONS:
        derivative = [differences[(axis, direction)] for axis, direction in zip((1, 2, 3), combo)]
        jac = [[derivative[i][c] + (1.0 if i == c else 0.0) for i in range(3)] for c in range(3)]
        determinants.append(determinant_3x3(jac))
    return _stack(determinants, 0)


# --------------------------------------------------------------------------
# Gaussian smoothing: one kernel, one border rule, two backends
# --------------------------------------------------------------------------
def gaussian_kernel_1d(sigma: float, radius: int = None) -> np.ndarray:
    """Normalised 1-D Gaussian weights ``exp(-x^2 / 2 sigma^2)``, float64, summing to 1.

    Parameters
    ----------
    sigma : float
        Standard deviation in voxels, > 0.
    radius : int, optional
        Taps ``-radius .. radius``; default ``int(4 sigma + 0.5)``, the truncation
        of ``scipy.ndimage.gaussian_filter`` (``truncate=4``). LNCC's Gaussian
        window passes its own half-width.

    Examples
    --------
    >>> gaussian_kernel_1d(1.0).shape, round(float(gaussian_kernel_1d(1.0).sum()), 12)
    ((9,), 1.0)
    """
    if not sigma > 0:
        raise ValueError(f"`sigma` is {sigma}; a Gaussian kernel needs sigma > 0 (voxels).")
    radius = int(TRUNCATE * float(sigma) + 0.5) if radius is None else int(radius)
    if radius < 0:
        raise ValueError(f"`radius` is {radius}; it needs to be 0 or more (voxels).")
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _sigmas(sigma, name="sigma"):
    values = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (3,)) if np.ndim(sigma) == 0 \
        else np.asarray(sigma, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"`{name}` is {sigma!r}; it needs one standard deviation >= 0 (voxels), or three (d1, d2, d3)."
        )
    return [float(value) for value in values]


def smooth_array(volume, sigma) -> np.ndarray:
    """Gaussian smoothing of the last three (spatial) axes of a NumPy array.

    ``scipy.ndimage.gaussian_filter(mode="nearest", truncate=4)`` along d1, d2,
    d3: the package's one border rule (:data:`BORDER_RULE`: the edge voxel is
    repeated outwards, as elastix's pyramids do, so smoothing does not darken
    the faces). :func:`smooth_tensor` gives the same numbers in TensorFlow.

    Parameters
    ----------
    volume : array ``(d1, d2, d3)`` or ``(batch, d1, d2, d3)``
    sigma : float or sequence of 3 float
        Standard deviation(s) in voxels along (d1, d2, d3); 0 leaves an axis alone.

    Returns
    -------
    numpy.ndarray, float32 for float32 input (float64 otherwise), same shape.

    Examples
    --------
    >>> float(smooth_array(np.ones((5, 5, 5)), 2.0).min())  # a constant stays constant
    1.0
    """
    from scipy import ndimage

    array = np.asarray(volume)
    if array.ndim not in (3, 4):
        raise ValueError(f"`volume` has shape {array.shape}; it needs (d1, d2, d3) or (batch, d1, d2, d3).")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    sigmas = [0.0] * (array.ndim - 3) + _sigmas(sigma)
    if not any(sigmas):
        return array.copy()
    return ndimage.gaussian_filter(array, sigmas, mode=BORDER_RULE, truncate=TRUNCATE)


def _edge_padded(volumes, axis: int, radius: int):
    import tensorflow as tf

    size = volumes.shape[axis]
    low = tf.repeat(_take(volumes, axis, 0, 1), radius, axis=axis)
    high = tf.repeat(_take(volumes, axis, size - 1, size), radius, axis=axis)
    return tf.concat([low, volumes, high], axis=axis)


def _correlate_valid(padded, axis: int, kernel: np.ndarray, size: int):
    """Correlate along ``axis`` keeping the ``size`` fully covered outputs."""
    import tensorflow as tf

    if len(kernel) <= 15:  # weighted shifted slices: fused well by XLA
        return tf.add_n([float(w) * _take(padded, axis, k, k + size) for k, w in enumerate(kernel)])
    channels = padded.shape[-1]
    flat = tf.transpose(padded, [0, 4, 1, 2, 3])
    flat = tf.reshape(flat, tf.concat([[-1], tf.shape(flat)[2:], [1]], axis=0))
    taps = [1, 1, 1, 1, 1]
    taps[axis - 1] = len(kernel)
    weights = tf.reshape(tf.constant(kernel, flat.dtype), taps)
    out = tf.nn.conv3d(flat, weights, strides=[1] * 5, padding="VALID")
    out = tf.reshape(out, tf.concat([[-1, channels], tf.shape(out)[1:4]], axis=0))
    return tf.transpose(out, [0, 2, 3, 4, 1])


def smooth_tensor(volume, sigma):
    """Gaussian smoothing in TensorFlow with the package's one border rule.

    Separable correlation with :func:`gaussian_kernel_1d` (truncated at 4
    sigma), the volume extended by repeating its edge voxel: the numbers of
    :func:`smooth_array` (``scipy.ndimage.gaussian_filter(mode="nearest")``)
    to float32 rounding. Differentiable.

    Parameters
    ----------
    volume : tensor ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``, float
    sigma : float or sequence of 3 float
        Standard deviation(s) in voxels along (d1, d2, d3); 0 leaves an axis alone.

    Returns
    -------
    tf.Tensor, the shape and dtype of ``volume``.
    """
    import tensorflow as tf

    volume = tf.convert_to_tensor(volume)
    if volume.shape.rank not in (4, 5):
        raise ValueError(
            f"`volume` has shape {tuple(volume.shape)}; it needs (batch, d1, d2, d3) or "
            "(batch, d1, d2, d3, channels)."
        )
    sigmas = _sigmas(sigma)
    out = volume if volume.shape.rank == 5 else volume[..., None]
    for axis, value in zip((1, 2, 3), sigmas):
        if value == 0:
            continue
        kernel = gaussian_kernel_1d(value)
        size = out.shape[axis]
        out = _correlate_valid(_edge_padded(out, axis, len(kernel) // 2), axis, kernel, size)
    return out if volume.shape.rank == 5 else out[..., 0]
