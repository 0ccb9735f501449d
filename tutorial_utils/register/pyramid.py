"""Multi-resolution: image pyramids (smoothed, or smoothed and downsampled) and field upsampling.

NumPy/SciPy only; the registration functions build their levels with these.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from ..fields import smooth_array

__all__ = ["gaussian_pyramid", "pyramid_sizes", "smoothing_pyramid", "upsample_field"]


def smoothing_pyramid(volume, sigmas: Sequence[float]) -> List[np.ndarray]:
    """Gaussian-smoothed copies of ``volume`` at full resolution, coarse to fine.

    As elastix's default ``FixedSmoothingImagePyramid``: the levels are smoothed
    but not downsampled, so with sampled losses (cost O(samples)) every level
    has the same shape and reuses one compiled step.

    Parameters
    ----------
    volume : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``
    sigmas : sequence of float
        Standard deviations in voxels (0 = unsmoothed), e.g. ``(4, 2, 1, 0.5)``.
        Smoothed by :func:`tutorial_utils.fields.smooth_array`, the package's one
        Gaussian smoothing (edge voxels repeated outwards, so smoothing does not
        darken the faces).

    Returns
    -------
    list of float32 arrays ``(d1, d2, d3)``.
    """
    array = np.asarray(volume, dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"`volume` has shape {np.shape(volume)}; it needs (d1, d2, d3) or (1, d1, d2, d3).")
    if any(sigma < 0 for sigma in sigmas):
        raise ValueError(f"`sigmas` is {tuple(sigmas)}; standard deviations need to be >= 0 voxels.")
    return [smooth_array(array, float(s)) for s in sigmas]


def _level_factors(downscale, levels: int):
    """Per-axis downscale factor between consecutive levels, checked: a tuple of 3 floats."""
    factors = (downscale,) * 3 if isinstance(downscale, (int, float)) else tuple(downscale)
    if len(factors) != 3 or any(float(f) < 1 for f in factors):
        raise ValueError(
            f"`downscale` is {downscale!r}; it needs one factor >= 1, or three (d1, d2, d3)."
        )
    if int(levels) < 1:
        raise ValueError(f"`levels` is {levels}; it needs to be at least 1 (1 = no pyramid).")
    return tuple(float(f) for f in factors)


def pyramid_sizes(size: Sequence[int], levels: int, downscale=2.0) -> List[Tuple[int, int, int]]:
    """The grid sizes of :func:`gaussian_pyramid`'s levels, coarsest first, without building it.

    Each level has ``ceil(size / f)`` voxels along an axis of factor ``f``
    (``downscale``, one factor or three); the last is ``size`` itself.

    Examples
    --------
    >>> pyramid_sizes((32, 128, 128), 3, downscale=(1, 2, 2))
    [(32, 32, 32), (32, 64, 64), (32, 128, 128)]
    """
    factors = _level_factors(downscale, levels)
    sizes = [tuple(int(s) for s in size)]
    for _ in range(int(levels) - 1):
        sizes.insert(0, tuple(int(np.ceil(s / f)) for s, f in zip(sizes[0], factors)))
    return sizes


def gaussian_pyramid(volume, levels: int, downscale=2.0) -> List["np.ndarray"]:
    """Gaussian image pyramid, coarsest level first.

    Each level is the previous one smoothed with a Gaussian of standard
    deviation ``2 f / 6`` voxels along each axis whose factor ``f`` is above 1,
    then resized (linear interpolation, pixel centres aligned) to
    ``ceil(size / f)`` voxels: the recipe of
    :func:`skimage.transform.pyramid_gaussian`, with the package's one border
    rule (:func:`tutorial_utils.fields.smooth_array`: edge voxels repeated,
    skimage's ``mode="nearest"``) and a
    factor per axis, so that thick-slice volumes can be downsampled in-plane
    only, e.g. ``downscale=(1, 2, 2)``.

    Parameters
    ----------
    volume : array-like ``(d1, d2, d3)`` or ``(batch, d1, d2, d3)``
        Smoothing and resizing act on the last three (spatial) axes.
    levels : int
        Number of levels, >= 1 (1 returns the volume itself).
    downscale : float or sequence of 3 floats
        Size ratio between consecutive levels along (d1, d2, d3), each >= 1.

    Returns
    -------
    list of ndarray, float32
        ``levels`` volumes, coarsest first; the last is ``volume`` unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> pyramid = gaussian_pyramid(np.zeros((1, 32, 128, 128)), 3, downscale=(1, 2, 2))
    >>> [p.shape for p in pyramid]
    [(1, 32, 32, 32), (1, 32, 64, 64), (1, 32, 128, 128)]
    """
    from skimage.transform import resize

    factors = _level_factors(downscale, levels)
    array = np.asarray(volume, dtype=np.float32)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"`volume` has shape {array.shape}; it needs (d1, d2, d3) or (batch, d1, d2, d3)."
        )
    lead = array.ndim - 3
    pyramid = [array]
    sizes = pyramid_sizes(array.shape[lead:], levels, factors)
    for level in range(int(levels) - 2, -1, -1):
        current = pyramid[0].astype(np.float64)
        sigma = [0.0] * lead + [2.0 * f / 6.0 if f > 1 else 0.0 for f in factors]
        smoothed = smooth_array(current, sigma[lead:])
        shape = current.shape[:lead] + sizes[level]
        coarse = resize(smoothed, shape, order=1, mode="edge", anti_aliasing=False)
        pyramid.insert(0, coarse.astype(np.float32))
    return pyramid




def upsample_field(field, size: Sequence[int]) -> "np.ndarray":
    """Bring a displacement (or velocity) field from a coarse grid to a finer one.

    With pixel centres aligned (the convention of :func:`gaussian_pyramid` and
    :func:`skimage.transform.resize`), fine voxel ``p`` sits at coarse
    coordinate ``q = (p + 0.5) / r - 0.5`` with ``r = fine size / coarse size``
    per axis, and the same transform expressed in fine voxels has the
    displacement ``u_fine(p) = r * u_coarse(q)``: the field is interpolated
    linearly (extrapolated linearly beyond the outer voxel centres) and each
    component is scaled by its axis's size ratio. An affine field stays exactly
    the corresponding affine field.

    Parameters
    ----------
    field : array-like ``(batch, c1, c2, c3, 3)``
        Displacements (or velocities) in coarse voxels.
    size : sequence of 3 int
        ``(f1, f2, f3)``, the fine grid's size (each >= the coarse size).

    Returns
    -------
    ndarray ``(batch, f1, f2, f3, 3)`` float32, in fine voxels.
    """
    import numpy as np
    from scipy import ndimage

    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 5 or field.shape[-1] != 3:
        raise ValueError(f"`field` has shape {field.shape}; it needs (batch, c1, c2, c3, 3).")
    size = tuple(int(s) for s in size)
    if len(size) != 3 or any(f < c for f, c in zip(size, field.shape[1:4])):
        raise ValueError(
            f"`size` is {size}; it needs three sizes, each at least the field's {field.shape[1:4]}."
        )
    ratio = np.array(size, np.float64) / np.array(field.shape[1:4], np.float64)
    axes = [(np.arange(s) + 0.5) / r - 0.5 + 1.0 for s, r in zip(size, ratio)]  # +1: padding
    coordinates = np.stack(np.meshgrid(*axes, indexing="ij"))
    padding = ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0))
    padded = np.pad(field, padding, mode="reflect", reflect_type="odd")  # linear extrapolation
    out = np.empty((field.shape[0],) + size + (3,), np.float64)
    for b in range(field.shape[0]):
        for c in range(3):
            sampled = ndimage.map_coordinates(padded[b, ..., c], coordinates, order=1)
            out[b, ..., c] = ratio[c] * sampled
    return out.astype(np.float32)
