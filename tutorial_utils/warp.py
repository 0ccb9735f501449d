"""Grids, affine transforms, trilinear resampling and dense displacement fields.

Conventions
-----------
- A volume is ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``, float32.
- A location, a grid or a dense displacement field (DDF) is ``(..., 3)`` and is
  measured in **voxels**, in index order ``(d1, d2, d3)``: the value ``(i, j, k)``
  means "the voxel ``vol[b, i, j, k]``".
- An affine ``theta`` is ``(batch, 4, 3)`` and acts on row vectors
  ``[x y z 1] @ theta``: rows 0-2 hold the linear part, row 3 the translation
  (in voxels). The identity is ``[[1,0,0],[0,1,0],[0,0,1],[0,0,0]]``.
- Warping an image with a DDF samples the moving image at ``grid + ddf``: the
  DDF lives on the fixed image's grid and points into the moving image.
- Outside a volume, an image or label reads 0 (``mode="constant"``, the default
  of :func:`resample`, :func:`warp` and :class:`Warping`); a displacement or
  velocity field is extended from its border (``mode="edge"``), which is what
  :func:`compose_ddf` and :func:`integrate_velocity` use.

Everything here is plain TensorFlow, differentiable, and can be compiled with
``tf.function(jit_compile=True)``, except :func:`sample_with_gradient`: the same
trilinear interpolation of scattered points in NumPy, with its derivative, for
the Gauss-Newton affine optimiser, which needs no compilation at all.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import affine as _affine
from ._tf import tf
from ._checks import as_float32 as _as_float32
from ._checks import check_rank, check_same_shape
from ._checks import check_theta as _check_theta

__all__ = [
    "get_reference_grid",
    "warp_grid",
    "random_transform_generator",
    "identity_affine",
    "centre_affine",
    "resample",
    "resample_points",
    "sample_with_gradient",
    "Warping",
    "warp",
    "ddf_from_affine",
    "compose_ddf",
    "integrate_velocity",
]


# --------------------------------------------------------------------------
# grids and affine transforms
# --------------------------------------------------------------------------
def get_reference_grid(grid_size: Sequence[int]) -> tf.Tensor:
    """Voxel coordinates of every voxel of a volume.

    Parameters
    ----------
    grid_size : sequence of 3 int
        ``(d1, d2, d3)``, the volume's spatial size.

    Returns
    -------
    tf.Tensor
        ``(d1, d2, d3, 3)`` float32; ``grid[i, j, k] == (i, j, k)`` (voxels).

    Examples
    --------
    >>> grid = get_reference_grid((2, 3, 4))
    >>> tuple(grid.shape), grid[1, 2, 3].numpy().tolist()
    ((2, 3, 4, 3), [1.0, 2.0, 3.0])
    """
    grid_size = [int(size) for size in grid_size]
    if len(grid_size) != 3 or min(grid_size) < 1:
        raise ValueError(
            f"`grid_size` is {grid_size}, but it needs three positive sizes (d1, d2, d3)."
        )
    axes = [tf.range(size, dtype=tf.float32) for size in grid_size]
    return tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1)


def identity_affine(batch_size: int = 1) -> tf.Tensor:
    """The identity affine, ``(batch, 4, 3)`` float32, in the ``warp_grid`` convention."""
    eye = np.concatenate([np.eye(3), np.zeros((1, 3))], axis=0).astype(np.float32)
    return tf.constant(np.tile(eye[None], (batch_size, 1, 1)))


def warp_grid(grid, theta) -> tf.Tensor:
    """Apply a batch of affine transforms to a grid of voxel coordinates.

    ``warped[b, i, j, k] = [grid[i, j, k], 1] @ theta[b]``

    Parameters
    ----------
    grid : tensor
        ``(d1, d2, d3, 3)`` voxel coordinates, e.g. from :func:`get_reference_grid`.
    theta : tensor
        ``(batch, 4, 3)`` affine parameters (linear part in rows 0-2, translation
        in voxels in row 3).

    Returns
    -------
    tf.Tensor
        ``(batch, d1, d2, d3, 3)`` transformed coordinates, in voxels.
    """
    check_rank(grid, "grid", [4], "(d1, d2, d3, 3)")
    if grid.shape[-1] != 3:
        raise ValueError(f"`grid` has shape {tuple(grid.shape)}; its last axis must be 3.")
    _check_theta(theta)
    return _affine.transform_points(_as_float32(theta, "theta"), _as_float32(grid, "grid"))


def random_transform_generator(
    batch_size: int, scale: float, seed: Optional[int] = None
) -> tf.Tensor:
    """Random affine transforms near the identity.

    The eight corners of the cube ``[-1, 1]^3`` are each moved by a displacement
    drawn uniformly from ``[-scale, scale]`` per axis, and the affine that best maps
    the old corners onto the new ones (least squares) is returned. ``scale = 0``
    gives the identity; the linear part departs from the identity by roughly
    ``scale`` (0.2 means up to about 20 % shear/scaling, i.e. a displacement of
    about 25 voxels at the far corner of a 128-voxel volume, as the transform acts
    about voxel ``(0, 0, 0)``).

    Parameters
    ----------
    batch_size : int
        Number of transforms.
    scale : float
        Size of the perturbation, in ``[0, 1]``.
    seed : int, optional
        Seed of NumPy's generator; the same seed gives the same transforms.

    Returns
    -------
    tf.Tensor
        ``(batch_size, 4, 3)`` float32.
    """
    if not 0 <= scale <= 1:
        raise ValueError(f"`scale` is {scale}, but it needs to lie in [0, 1].")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` is {batch_size}, but it needs to be at least 1.")
    rng = np.random.default_rng(seed)
    corners = np.array(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64
    )
    corners_h = np.concatenate([corners, np.ones((8, 1))], axis=1)  # (8, 4)
    thetas = []
    for _ in range(int(batch_size)):
        moved = corners + rng.uniform(-scale, scale, size=corners.shape)
        theta, *_ = np.linalg.lstsq(corners_h, moved, rcond=None)
        thetas.append(theta)
    return tf.constant(np.stack(thetas), dtype=tf.float32)


def centre_affine(theta, grid_size: Sequence[int]) -> tf.Tensor:
    """The same affine, but acting about the volume's centre instead of voxel (0, 0, 0).

    ``warp_grid`` applies ``theta`` to voxel coordinates, so its linear part
    pivots about the corner voxel; a rotation or scaling then also shifts the
    centre of the volume. This returns ``theta'`` with the same linear part and
    the translation adjusted so that ``x -> c + (x - c) A + t``, where ``c`` is
    the centre: useful for augmentation, where the volume should stay in view.

    Parameters
    ----------
    theta : tensor ``(batch, 4, 3)``
    grid_size : sequence of 3 int

    Returns
    -------
    tf.Tensor ``(batch, 4, 3)``
    """
    _check_theta(theta)
    return _affine.centre(_as_float32(theta, "theta"), grid_size)


# --------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------
_MODES = {"constant": "constant", "edge": "edge", "nearest": "edge"}


def _check_mode(mode) -> str:
    if mode not in _MODES:
        raise ValueError(
            f"`mode` is {mode!r}; it needs to be 'constant' (zero outside: images, "
            "labels) or 'edge' (alias 'nearest': clamped to the border: fields)."
        )
    return _MODES[mode]


def _refuse_non_finite(locations, what: str, source: str) -> None:
    """A ValueError for NaN or infinite sampling locations (checked when eager; in a
    compiled graph the check would cost a synchronisation per call). Unchecked, a NaN
    reaches the gather as index -2**31, a TensorFlow crash."""
    if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(locations))):
        raise ValueError(
            f"{what} has non-finite values (NaN or inf): check {source} that produced them "
            "(a diverged optimisation gives NaN; lower its learning rate)."
        )


def resample(vol, loc, mode: str = "constant") -> tf.Tensor:
    """Trilinear interpolation of ``vol`` at voxel locations ``loc``.

    What a location outside the volume (any coordinate below 0 or above
    ``size - 1``) reads depends on ``mode``:

    - ``"constant"`` (default, for images and labels): 0, exactly as
      ``scipy.ndimage.map_coordinates(vol, loc, order=1, mode="constant", cval=0)``.
    - ``"edge"`` (alias ``"nearest"``, for displacement and velocity fields): the
      coordinates are clamped to the volume, so the border value extends outwards,
      exactly as ``scipy.ndimage.map_coordinates(vol, loc, order=1, mode="nearest")``.
      A field is extrapolated, not zero-filled: a constant field stays constant.

    Differentiable with respect to both ``vol`` and ``loc`` (in ``"edge"`` mode
    the gradient with respect to a clamped coordinate is 0).

    Parameters
    ----------
    vol : array-like
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``.
    loc : array-like
        ``(batch, l1, l2, l3, 3)`` voxel coordinates into ``vol`` (a batch of 1
        is broadcast over ``vol``'s batch), or ``(l1, l2, l3, 3)`` shared by the
        whole batch.
    mode : {"constant", "edge", "nearest"}
        What locations outside the volume read (see above).

    Returns
    -------
    tf.Tensor
        ``(batch, l1, l2, l3)`` or ``(batch, l1, l2, l3, channels)``, float32,
        matching whether ``vol`` had a channel axis.

    Raises
    ------
    ValueError
        For a wrong rank, a last axis of ``loc`` other than 3, mismatched
        batches, an unknown spatial size, a non-numeric dtype or an unknown mode.

    Examples
    --------
    >>> vol = tf.reshape(tf.range(8, dtype=tf.float32), (1, 2, 2, 2))
    >>> float(resample(vol, [[[[0.5, 0.5, 0.5]]]])[0, 0, 0, 0])
    3.5
    >>> outside = [[[[0.0, 0.0, 3.0]]]]  # beyond the last voxel along d3
    >>> float(resample(vol, outside)[0, 0, 0, 0])  # an image: zero outside
    0.0
    >>> float(resample(vol, outside, mode="edge")[0, 0, 0, 0])  # a field: border value
    1.0
    """
    mode = _check_mode(mode)
    vol = _as_float32(vol, "vol")
    loc = _as_float32(loc, "loc")
    vol_shape = check_rank(vol, "vol", [4, 5], "(batch, d1, d2, d3) or (batch, d1, d2, d3, channels)")
    loc_shape = check_rank(loc, "loc", [4, 5], "(batch, l1, l2, l3, 3) or (l1, l2, l3, 3)")
    if loc_shape[-1] != 3:
        raise ValueError(
            f"`loc` has shape {loc_shape}; its last axis must hold 3 voxel coordinates."
        )
    _refuse_non_finite(loc, "`loc` (the sampling locations, e.g. grid + ddf)", "the DDF or affine")
    has_channels = len(vol_shape) == 5
    if not has_channels:
        vol = vol[..., None]
    if len(loc_shape) == 4:
        loc = loc[None]
    batch = vol_shape[0]
    if loc.shape[0] not in (1, batch) and batch is not None:
        raise ValueError(
            f"`loc` has batch size {loc.shape[0]} but `vol` has {batch}; they must match, "
            "or `loc` must have a batch of 1 to be shared."
        )
    sizes = vol_shape[1:4]
    if any(size is None for size in sizes):
        raise ValueError(f"`vol` needs a known spatial size, got {vol_shape}.")
    if loc.shape[0] == 1 and batch not in (1, None):
        loc = tf.broadcast_to(loc, [batch] + list(loc.shape[1:]))
    return _trilinear(vol, loc, sizes, has_channels, zero_outside=mode == "constant")


def _cells(flat_loc, sizes):
    """The grid cell of each location ``(batch, n, 3)``: ``(upper, low, high, frac)``,
    the last voxel index (float), the lower and upper corner indices (int32) and the
    weight of the upper corner per axis."""
    d1, d2, d3 = sizes
    upper = tf.constant([d1 - 1, d2 - 1, d3 - 1], dtype=tf.float32)
    # Clamp before flooring: this keeps every gathered index valid, and is the
    # "edge" extrapolation itself; for "constant" the outside points are masked.
    clamped = tf.clip_by_value(flat_loc, 0.0, upper)
    floor = tf.floor(clamped)
    frac = clamped - floor  # weight of the upper neighbour, per axis
    low = tf.cast(floor, tf.int32)
    high = tf.minimum(low + 1, tf.cast(upper, tf.int32))
    return upper, low, high, frac


def _trilinear(vol, loc, sizes, has_channels, zero_outside=True):
    d1, d2, d3 = sizes
    channels = vol.shape[-1]
    out_spatial = tf.shape(loc)[1:4]
    batch = tf.shape(vol)[0]
    flat_loc = tf.reshape(loc, [batch, -1, 3])

    upper, low, high, frac = _cells(flat_loc, sizes)

    # Each voxel is stored next to its d3-neighbour, so that one gather fetches
    # both ends of an edge along d3: four gathers of pairs instead of eight single
    # lookups (the gather dominates the cost of resampling on a CPU).
    next_along_d3 = tf.concat([vol[:, :, :, 1:], vol[:, :, :, -1:]], axis=3)
    paired = tf.reshape(
        tf.stack([vol, next_along_d3], axis=-2), [batch, d1 * d2 * d3, 2 * channels]
    )
    weights_d3 = tf.stack([1.0 - frac[..., 2], frac[..., 2]], axis=-1)  # (batch, n, 2)
    corner_index = []
    corner_weight = []
    for c1 in (0, 1):
        for c2 in (0, 1):
            index_1 = high[..., 0] if c1 else low[..., 0]
            index_2 = high[..., 1] if c2 else low[..., 1]
            corner_index.append(index_1 * (d2 * d3) + index_2 * d3 + low[..., 2])
            weight_1 = frac[..., 0] if c1 else 1.0 - frac[..., 0]
            weight_2 = frac[..., 1] if c2 else 1.0 - frac[..., 1]
            corner_weight.append((weight_1 * weight_2)[..., None] * weights_d3)
    corner_index = tf.stack(corner_index, axis=-1)  # (batch, n, 4)
    corner_weight = tf.stack(corner_weight, axis=2)  # (batch, n, 4, 2)
    if zero_outside:
        inside = tf.reduce_all((flat_loc >= 0.0) & (flat_loc <= upper), axis=-1)
        corner_weight = corner_weight * tf.cast(inside, tf.float32)[..., None, None]
    values = tf.gather(paired, corner_index, batch_dims=1)  # (batch, n, 4, 2 * channels)
    values = tf.reshape(values, tf.concat([tf.shape(values)[:3], [2, channels]], axis=0))
    # a product and a sum, not einsum: TensorFlow runs einsum as a matrix product,
    # in TensorFloat-32 (10-bit mantissa) on Ampere and later GPUs; this stays
    # float32 there, and without XLA it is also faster on a CPU (README)
    sampled = tf.reduce_sum(corner_weight[..., None] * values, axis=[2, 3])  # (batch, n, channels)
    out_shape = tf.concat([[batch], out_spatial, [channels]], axis=0)
    sampled = tf.reshape(sampled, out_shape)
    return sampled if has_channels else sampled[..., 0]


def resample_points(vol, points, mode: str = "constant") -> tf.Tensor:
    """Trilinear interpolation of ``vol`` at scattered voxel locations ``points``.

    The sibling of :func:`resample` for a list of points rather than a grid of
    them: the same interpolation, clamping and ``mode`` (0 outside for
    ``"constant"``, the border value for ``"edge"``/``"nearest"``), equal to
    ``scipy.ndimage.map_coordinates(vol, points.T, order=1, mode=...)``; but
    it gathers the eight corners of each point straight from the flat volume,
    so its cost is O(points), not O(voxels) (the stochastic optimisers sample
    a few thousand points of a large volume at every iteration).

    Parameters
    ----------
    vol : array-like ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``
    points : array-like ``(batch, n, 3)`` voxel coordinates, or ``(n, 3)`` shared
        by the whole batch.
    mode : {"constant", "edge", "nearest"}

    Returns
    -------
    tf.Tensor ``(batch, n)`` or ``(batch, n, channels)``, float32.

    Raises
    ------
    ValueError
        For wrong ranks, a last axis of ``points`` other than 3, mismatched
        batches, an unknown spatial size or an unknown mode.

    Examples
    --------
    >>> vol = tf.reshape(tf.range(8, dtype=tf.float32), (1, 2, 2, 2))
    >>> resample_points(vol, [[0.5, 0.5, 0.5], [0.0, 0.0, 3.0]]).numpy().tolist()
    [[3.5, 0.0]]
    """
    mode = _check_mode(mode)
    vol, points = _as_float32(vol, "vol"), _as_float32(points, "points")
    vol_shape = check_rank(vol, "vol", [4, 5], "(batch, d1, d2, d3) or (batch, d1, d2, d3, channels)")
    points_shape = check_rank(points, "points", [2, 3], "(batch, n, 3) or (n, 3)")
    if points_shape[-1] != 3:
        raise ValueError(f"`points` has shape {points_shape}; its last axis must hold 3 voxel coordinates.")
    _refuse_non_finite(points, "`points`", "the transform")
    has_channels = len(vol_shape) == 5
    vol = vol if has_channels else vol[..., None]
    points = points if len(points_shape) == 3 else points[None]
    batch, sizes = vol_shape[0], vol_shape[1:4]
    if any(size is None for size in sizes):
        raise ValueError(f"`vol` needs a known spatial size, got {vol_shape}.")
    if points.shape[0] not in (1, batch) and batch is not None:
        raise ValueError(
            f"`points` has batch size {points.shape[0]} but `vol` has {batch}; they must match, "
            "or `points` must be (n, 3) (or have a batch of 1) to be shared."
        )
    if points.shape[0] == 1 and batch not in (1, None):
        points = tf.broadcast_to(points, [batch] + list(points.shape[1:]))
    upper, low, high, frac = _cells(points, sizes)
    d2, d3 = sizes[1], sizes[2]
    flat = tf.reshape(vol, [tf.shape(vol)[0], -1, vol.shape[-1]])
    # All eight corners in one gather: per axis the (low, high) index and weight
    # pairs, combined by broadcasting into (batch, n, 2, 2, 2) flat indices and
    # weights (one gather and one weighted sum, not eight of each: a small graph
    # that traces and compiles quickly inside an optimiser's loop). The sum is a
    # product and a reduction, not a matrix product, which recent GPUs would
    # round to TensorFloat-32.
    ends = tf.stack([low, high], axis=-1)  # (batch, n, 3, 2)
    weights = tf.stack([1.0 - frac, frac], axis=-1)  # (batch, n, 3, 2)
    index = (ends[..., 0, :, None, None] * (d2 * d3) + ends[..., 1, None, :, None] * d3
             + ends[..., 2, None, None, :])
    weight = weights[..., 0, :, None, None] * weights[..., 1, None, :, None] * weights[..., 2, None, None, :]
    point_batch, count = tf.shape(points)[0], tf.shape(points)[1]
    values = tf.gather(flat, tf.reshape(index, [point_batch, count * 8]), batch_dims=1)
    values = tf.reshape(values, [point_batch, count, 8, vol.shape[-1]])
    sampled = tf.reduce_sum(tf.reshape(weight, [point_batch, count, 8, 1]) * values, axis=2)
    if mode == "constant":
        inside = tf.reduce_all((points >= 0.0) & (points <= upper), axis=-1)
        sampled = sampled * tf.cast(inside, tf.float32)[..., None]
    return sampled if has_channels else sampled[..., 0]


def sample_with_gradient(volume, points):
    """Trilinear values of ``volume`` at ``points`` and their exact spatial derivative (NumPy).

    The interpolation of :func:`resample_points` (the same values, tested
    against it and against ``scipy.ndimage.map_coordinates(order=1)``),
    evaluated with NumPy in float64 for one volume, plus the derivative of that interpolant along each axis: inside a
    cell the trilinear function is linear along each axis, so the derivative
    along ``d1`` is the difference of the two faces (interpolated along
    ``d2`` and ``d3``), and likewise for ``d2`` and ``d3``. At a point on a
    cell face the derivative is the one of the cell above it (the one below
    for the last voxel). This is what a Gauss-Newton step needs: the residual
    and its Jacobian at a few thousand points, in milliseconds, with no graph
    to trace or compile.

    Parameters
    ----------
    volume : array ``(d1, d2, d3)`` (or ``(1, d1, d2, d3)``), each size >= 2.
    points : array ``(n, 3)``, voxel coordinates inside the volume:
        ``0 <= points <= size - 1`` along each axis.

    Returns
    -------
    (values, gradient) : float64 arrays ``(n,)`` and ``(n, 3)``; the gradient
    is in intensity per voxel, along ``(d1, d2, d3)``.

    Raises
    ------
    ValueError
        For a volume that is not 3-D (or ``(1, d1, d2, d3)``) with each size >= 2,
        points that are not ``(n, 3)`` finite values, or points outside the volume
        (mask them first: the caller decides what outside means).

    Examples
    --------
    >>> volume = np.arange(8.0).reshape(2, 2, 2)  # 4 x + 2 y + z
    >>> values, gradient = sample_with_gradient(volume, np.array([[0.5, 0.5, 0.5]]))
    >>> values.tolist(), gradient.tolist()
    ([3.5], [[4.0, 2.0, 1.0]])
    """
    volume = np.asarray(volume, dtype=np.float64)
    volume = volume[0] if volume.ndim == 4 and volume.shape[0] == 1 else volume
    points = np.asarray(points, dtype=np.float64)
    if volume.ndim != 3 or min(volume.shape) < 2:
        raise ValueError(f"`volume` has shape {np.shape(volume)}; it needs (d1, d2, d3) or (1, d1, d2, d3), "
                         "each d >= 2.")
    upper = np.asarray(volume.shape, np.float64) - 1.0
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"`points` has shape {points.shape}; it needs (n, 3) voxel coordinates.")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"`points` has {int(np.sum(~np.isfinite(points)))} NaN or infinite coordinates; "
                         "they need to be finite.")
    outside = np.any((points < 0.0) | (points > upper), axis=1)
    if np.any(outside):
        raise ValueError(
            f"`points` outside the volume: {int(outside.sum())} of {len(points)} (the first: "
            f"{points[outside][0].tolist()}); they need 0 to {upper.tolist()} per axis: mask the others first."
        )
    # the cell's lower corner (truncation is the floor here: points >= 0), the last cell at the far face
    low = np.minimum(points.astype(np.int64), np.asarray(volume.shape) - 2)
    frac = points - low
    strides = (volume.shape[1] * volume.shape[2], volume.shape[2])
    base = low[:, 0] * strides[0] + low[:, 1] * strides[1] + low[:, 2]
    flat = volume.ravel()
    # corners[i][j][k]: the corner low + (i, j, k), each one gather of n values (1-D
    # arithmetic below: several times faster in NumPy than on (n, 2, 2, 2) blocks)
    corners = [[[flat[base + (i * strides[0] + j * strides[1] + k)] for k in (0, 1)] for j in (0, 1)]
               for i in (0, 1)]
    x, y, z = frac[:, 0], frac[:, 1], frac[:, 2]
    along_3 = [[c[0] + (c[1] - c[0]) * z for c in face] for face in corners]  # [i][j]: along d3
    faces = [f[0] + (f[1] - f[0]) * y for f in along_3]  # [i]: on the two d1 faces
    values = faces[0] + (faces[1] - faces[0]) * x
    d_1 = faces[1] - faces[0]
    d_2 = (1 - x) * (along_3[0][1] - along_3[0][0]) + x * (along_3[1][1] - along_3[1][0])
    steps_3 = [[c[1] - c[0] for c in face] for face in corners]
    d_3 = ((1 - x) * ((1 - y) * steps_3[0][0] + y * steps_3[0][1])
           + x * ((1 - y) * steps_3[1][0] + y * steps_3[1][1]))
    return values, np.stack([d_1, d_2, d_3], axis=1)


def warp(volume, ddf, mode: str = "constant") -> tf.Tensor:
    """Warp ``volume`` with a DDF: sample it at ``grid + ddf``.

    The one warping helper the chapters and the package share (images, labels,
    fields, batches); it is :class:`Warping` without building a layer by hand.
    Images and labels read 0 outside the moving volume (the default); to warp a
    displacement or velocity field pass ``mode="edge"`` so that it is
    extrapolated from its border instead (see :func:`resample`).

    Parameters
    ----------
    volume : array-like ``(batch, m1, m2, m3)`` or ``(batch, m1, m2, m3, channels)``
        The moving image or label.
    ddf : array-like ``(batch, f1, f2, f3, 3)``
        Displacements in voxels, on the fixed image's grid.
    mode : {"constant", "edge", "nearest"}
        Outside the moving volume: 0 (``"constant"``, images) or the border value
        (``"edge"``/``"nearest"``, fields).

    Returns
    -------
    tf.Tensor ``(batch, f1, f2, f3)`` or ``(batch, f1, f2, f3, channels)``, float32.

    Raises
    ------
    ValueError
        If ``ddf`` is not ``(batch, f1, f2, f3, 3)``, or as :func:`resample`.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(4 * 4 * 4, dtype=np.float32).reshape(1, 4, 4, 4)
    >>> ddf = np.zeros((1, 4, 4, 4, 3), np.float32); ddf[..., 2] = 1.0
    >>> float(warp(image, ddf)[0, 0, 0, 0])  # the value one voxel further along d3
    1.0
    """
    ddf_shape = check_rank(ddf, "ddf", [5], "(batch, f1, f2, f3, 3)")
    return Warping(ddf_shape[1:4], mode=mode)(inputs=[_as_float32(ddf, "ddf"), volume])


# --------------------------------------------------------------------------
# dense displacement fields
# --------------------------------------------------------------------------
class Warping(tf.keras.layers.Layer):
    """Keras layer that warps an image with a dense displacement field (DDF).

    ``Warping(fixed_image_size)(inputs=[ddf, image])`` samples ``image`` at
    ``grid + ddf``, where ``grid`` is the fixed image's voxel grid.

    Parameters
    ----------
    fixed_image_size : sequence of 3 int
        ``(f1, f2, f3)``, the fixed image's spatial size (the DDF's grid).
    mode : {"constant", "edge", "nearest"}
        Outside the moving volume: 0 (``"constant"``, default, for images and
        labels) or the border value (``"edge"``/``"nearest"``, for warping a
        displacement or velocity field); see :func:`resample`.

    Call arguments
    --------------
    inputs : list ``[ddf, image]``
        ``ddf`` is ``(batch, f1, f2, f3, 3)`` in voxels; ``image`` is
        ``(batch, m1, m2, m3)`` or ``(batch, m1, m2, m3, channels)``.

    Returns ``(batch, f1, f2, f3)`` or ``(batch, f1, f2, f3, channels)``.
    """

    def __init__(self, fixed_image_size: Sequence[int], mode: str = "constant", **kwargs):
        super().__init__(**kwargs)
        _check_mode(mode)
        self.mode = mode
        self.fixed_image_size = tuple(int(size) for size in fixed_image_size)
        if len(self.fixed_image_size) != 3:
            raise ValueError(
                f"`fixed_image_size` is {fixed_image_size}, but it needs three sizes (f1, f2, f3)."
            )
        self._grid = get_reference_grid(self.fixed_image_size)[None]

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("`inputs` must be the list [ddf, image].")
        ddf, image = inputs
        ddf_shape = check_rank(ddf, "ddf", [5], f"(batch, {', '.join(map(str, self.fixed_image_size))}, 3)")
        if ddf_shape[1:] != self.fixed_image_size + (3,):
            raise ValueError(
                f"`ddf` has shape {ddf_shape}, but this Warping layer was built for a fixed "
                f"image of size {self.fixed_image_size}, so it needs shape "
                f"(batch, {', '.join(map(str, self.fixed_image_size))}, 3)."
            )
        return resample(image, self._grid + tf.cast(ddf, tf.float32), mode=self.mode)

    def get_config(self):
        config = super().get_config()
        config.update({"fixed_image_size": self.fixed_image_size, "mode": self.mode})
        return config


def ddf_from_affine(theta, grid_size: Sequence[int]) -> tf.Tensor:
    """The DDF that an affine produces on a grid: ``warp_grid(grid, theta) - grid``.

    Parameters
    ----------
    theta : tensor
        ``(batch, 4, 3)`` affine parameters.
    grid_size : sequence of 3 int
        ``(d1, d2, d3)``.

    Returns
    -------
    tf.Tensor
        ``(batch, d1, d2, d3, 3)`` displacements in voxels; warping with it equals
        resampling at ``warp_grid(grid, theta)``.
    """
    _check_theta(theta)
    return _affine.ddf_from_affine(_as_float32(theta, "theta"), grid_size)


def compose_ddf(first, second) -> tf.Tensor:
    """The DDF of moving a point by ``first``, then by ``second``.

    With ``phi_u(x) = x + u(x)`` the map of a DDF ``u`` (see :func:`warp`), this
    returns ``u`` with ``phi_u = phi_second o phi_first``::

        u(x) = first(x) + second(x + first(x))

    ``second`` is read by trilinear interpolation with ``mode="edge"`` (a field
    is extrapolated from its border, never zero-filled; see :func:`resample`),
    so the composition of two affine DDFs is exact wherever ``x + first(x)``
    lies inside ``second``'s grid, and that of two constant DDFs everywhere.

    For warping this means ``warp(image, compose_ddf(first, second))`` equals
    ``warp(warp(image, second), first)`` up to interpolation: the DDF applied
    to the image first (``second``) is the one composed last.

    Parameters
    ----------
    first : array-like
        ``(batch, d1, d2, d3, 3)`` displacements in voxels, on the output grid;
        ``x + first(x)`` are voxel coordinates into ``second``'s grid.
    second : array-like
        ``(batch, s1, s2, s3, 3)`` displacements in voxels (its grid may differ
        from ``first``'s); ``first`` may have a batch of 1 to be shared.

    Returns
    -------
    tf.Tensor
        ``(batch, d1, d2, d3, 3)`` float32 displacements in voxels.

    Raises
    ------
    ValueError
        If either field is not ``(batch, ..., 3)`` or the batches do not match.

    Examples
    --------
    >>> import numpy as np
    >>> shift = np.zeros((1, 4, 4, 4, 3), np.float32); shift[..., 0] = 1.5
    >>> compose_ddf(shift, shift)[0, 3, 0, 0].numpy().tolist()  # exact at the border
    [3.0, 0.0, 0.0]
    """
    first_shape = check_rank(first, "first", [5], "(batch, d1, d2, d3, 3)")
    second_shape = check_rank(second, "second", [5], "(batch, s1, s2, s3, 3)")
    for name, shape in (("first", first_shape), ("second", second_shape)):
        if shape[-1] != 3:
            raise ValueError(f"`{name}` has shape {shape}; its last axis must be 3.")
    if first_shape[0] not in (1, second_shape[0]) and None not in (first_shape[0], second_shape[0]):
        raise ValueError(
            f"`first` has batch size {first_shape[0]} but `second` has {second_shape[0]}; "
            "they must match, or `first` must have a batch of 1 to be shared."
        )
    first = _as_float32(first, "first")
    grid = get_reference_grid(first_shape[1:4])[None]
    return first + resample(second, grid + first, mode="edge")


def integrate_velocity(dvf, num_steps: int = 7) -> tf.Tensor:
    """Integrate a stationary velocity field into a DDF by scaling and squaring.

    The DDF is ``phi_1(x) - x``, where ``phi_t`` is the flow of the velocity
    ``v``: ``d phi_t(x) / dt = v(phi_t(x))``, ``phi_0(x) = x``. Scaling and
    squaring (Arsigny et al. 2006, "A Log-Euclidean framework for statistics on
    diffeomorphisms", MICCAI; used for learning by Dalca et al. 2018,
    VoxelMorph-diff) uses ``phi_1 = (phi_{1/2^N}) o ... o (phi_{1/2^N})``
    (``2^N`` times): start from ``u = v / 2^N`` (one small Euler step) and
    square ``N`` times, ``u <- compose_ddf(u, u)``, i.e.
    ``u(x) <- u(x) + u(x + u(x))``. For a smooth velocity the result is
    diffeomorphic (no folding), which is why velocity fields are used.

    Each squaring reads the field with ``mode="edge"`` (the field is extended
    from its border, not zero-filled; as VoxelMorph's integration does), so a
    constant velocity integrates to that same constant DDF everywhere, and an
    affine velocity ``v(x) = A x + b`` to its analytic flow wherever the
    trajectory stays inside the volume, up to the ``O(|A|^2 / 2^N)`` error of
    the first Euler step.

    Parameters
    ----------
    dvf : array-like
        ``(batch, d1, d2, d3, 3)`` stationary velocity field, in voxels (per unit
        time; integrated over time 1).
    num_steps : int
        Number of squarings ``N`` (default 7, i.e. ``2^7 = 128`` small steps).

    Returns
    -------
    tf.Tensor
        ``(batch, d1, d2, d3, 3)`` float32 displacement field in voxels.

    Raises
    ------
    ValueError
        If ``dvf`` is not ``(batch, d1, d2, d3, 3)`` or ``num_steps`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> velocity = np.zeros((1, 6, 5, 4, 3), np.float32); velocity[...] = [1.5, -0.5, 0.75]
    >>> ddf = integrate_velocity(velocity)
    >>> bool(np.allclose(ddf, velocity, atol=1e-5))  # constant velocity: translation
    True
    """
    shape = check_rank(dvf, "dvf", [5], "(batch, d1, d2, d3, 3)")
    if shape[-1] != 3:
        raise ValueError(f"`dvf` has shape {shape}; its last axis must be 3.")
    if int(num_steps) < 0:
        raise ValueError(f"`num_steps` is {num_steps}; it needs to be 0 or more.")
    dvf = _as_float32(dvf, "dvf")
    ddf = dvf / float(2 ** int(num_steps))
    for _ in range(int(num_steps)):
        ddf = compose_ddf(ddf, ddf)
    return ddf
