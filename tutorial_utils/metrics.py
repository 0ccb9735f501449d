"""Evaluation metrics: overlap, surface distance, centroid, Jacobian and affine residual.

These take NumPy arrays (TensorFlow tensors are converted) and return NumPy
values: they judge a registration, they are not losses to differentiate.
Distances are in voxels unless ``spacing`` (mm per voxel along d1, d2, d3) is given.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .warp import get_reference_grid, warp_grid

__all__ = [
    "binary_dice",
    "hausdorff_distance",
    "centroid_distance",
    "jacobian_determinant",
    "folding_fraction",
    "affine_residual",
]


def _binary_volume(label, name: str, threshold: float) -> np.ndarray:
    array = np.asarray(label)
    if array.ndim != 3:
        raise ValueError(
            f"`{name}` has shape {array.shape}, but it needs one label volume (d1, d2, d3); "
            "index the batch and channel first, e.g. label[0, ..., 0]."
        )
    return array > threshold


def _check_pair(first, second):
    if first.shape != second.shape:
        raise ValueError(
            f"`label_true` has shape {first.shape} but `label_pred` has {second.shape}; "
            "they must be on the same grid."
        )


def binary_dice(label_true, label_pred, threshold: float = 0.5) -> float:
    """Dice overlap of two labels after thresholding, in ``[0, 1]``.

    Parameters
    ----------
    label_true, label_pred : array ``(d1, d2, d3)``
        Label volumes; values above ``threshold`` are foreground.

    Returns
    -------
    float
        ``2 |A ∩ B| / (|A| + |B|)``; 1.0 if both are empty.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 4)); a[:2] = 1
    >>> binary_dice(a, a)
    1.0
    """
    true = _binary_volume(label_true, "label_true", threshold)
    pred = _binary_volume(label_pred, "label_pred", threshold)
    _check_pair(true, pred)
    total = true.sum() + pred.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(true, pred).sum() / total)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff_distance(
    label_true,
    label_pred,
    percentile: float = 95.0,
    spacing: Optional[Sequence[float]] = None,
    threshold: float = 0.5,
) -> float:
    """Percentile Hausdorff distance between the surfaces of two labels.

    The distances from every surface voxel of each label to the nearest surface
    voxel of the other are pooled, and their ``percentile`` is returned (95 by
    default, robust to a few outliers; 100 gives the classical Hausdorff distance).

    Parameters
    ----------
    label_true, label_pred : array ``(d1, d2, d3)``
    percentile : float
        In ``[0, 100]``.
    spacing : sequence of 3 float, optional
        Voxel size along (d1, d2, d3); the result is then in those units (mm).

    Returns
    -------
    float
        Distance in voxels (or ``spacing`` units); ``nan`` if either label is empty.
    """
    true = _binary_volume(label_true, "label_true", threshold)
    pred = _binary_volume(label_pred, "label_pred", threshold)
    _check_pair(true, pred)
    if not true.any() or not pred.any():
        return float("nan")
    surface_true, surface_pred = _surface(true), _surface(pred)
    sampling = None if spacing is None else tuple(float(s) for s in spacing)
    to_true = ndimage.distance_transform_edt(~surface_true, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~surface_pred, sampling=sampling)
    distances = np.concatenate([to_pred[surface_true], to_true[surface_pred]])
    return float(np.percentile(distances, percentile))


def centroid_distance(
    label_true, label_pred, spacing: Optional[Sequence[float]] = None, threshold: float = 0.5
) -> float:
    """Distance between the centres of mass of two labels (voxels, or ``spacing`` units)."""
    true = _binary_volume(label_true, "label_true", threshold)
    pred = _binary_volume(label_pred, "label_pred", threshold)
    _check_pair(true, pred)
    if not true.any() or not pred.any():
        return float("nan")
    scale = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float)
    offset = (np.array(ndimage.center_of_mass(true)) - np.array(ndimage.center_of_mass(pred))) * scale
    return float(np.linalg.norm(offset))


def jacobian_determinant(ddf) -> np.ndarray:
    """Determinant of the Jacobian of the transform ``x -> x + ddf(x)``.

    Derivatives are ``numpy.gradient`` (central differences inside, one-sided at
    the borders), in voxel units. A value of 1 means no local volume change,
    below 1 compression, above 1 expansion, and ``<= 0`` folding (the transform
    is not invertible there).

    Parameters
    ----------
    ddf : array ``(batch, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``, in voxels.

    Returns
    -------
    numpy.ndarray
        ``(batch, d1, d2, d3)`` or ``(d1, d2, d3)``, matching the input.
    """
    field = np.asarray(ddf, dtype=np.float64)
    if field.ndim not in (4, 5) or field.shape[-1] != 3:
        raise ValueError(
            f"`ddf` has shape {field.shape}, but it needs shape (batch, d1, d2, d3, 3) or (d1, d2, d3, 3)."
        )
    batched = field if field.ndim == 5 else field[None]
    dets = []
    for single in batched:
        # jac[..., c, i] = d u_c / d x_i
        jac = np.stack(np.gradient(single, axis=(0, 1, 2)), axis=-1)
        jac = jac + np.eye(3)
        dets.append(np.linalg.det(jac))
    dets = np.stack(dets).astype(np.float32)
    return dets if field.ndim == 5 else dets[0]


def folding_fraction(ddf, margin: int = 0) -> float:
    """Fraction of voxels where the Jacobian determinant is ``<= 0`` (folding).

    Parameters
    ----------
    ddf : array ``(batch, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``, in voxels.
    margin : int
        Leave out this many voxels at each border. The central-difference
        bending energy of :mod:`tutorial_utils.losses` only sees voxels at least 2
        from the border, so ``margin=2`` measures folding where it regularises.
    """
    det = jacobian_determinant(ddf)
    if margin:
        if det.ndim == 3:
            det = det[None]
        if min(det.shape[1:]) <= 2 * margin:
            raise ValueError(f"`margin` {margin} leaves no voxels of a field of shape {det.shape[1:]}.")
        det = det[:, margin:-margin, margin:-margin, margin:-margin]
    return float(np.mean(det <= 0))


def affine_residual(theta_estimated, theta_true, grid_size: Sequence[int]) -> Tuple[float, float]:
    """How far an estimated affine is from undoing a known one, on a grid.

    In the self-registration chapter the moving image is the fixed image sampled
    at ``warp_grid(grid, theta_true)``, and the estimate samples the moving image
    at ``warp_grid(grid, theta_estimated)``; the fixed voxel ``x`` therefore ends
    up reading the fixed image at ``T_true(T_estimated(x))``. A perfect recovery
    makes that composition the identity. This returns the mean and maximum,
    over the grid, of ``|T_true(T_estimated(x)) - x|``.

    Parameters
    ----------
    theta_estimated, theta_true : array ``(1, 4, 3)`` or ``(4, 3)``
    grid_size : sequence of 3 int
        ``(d1, d2, d3)``.

    Returns
    -------
    (mean, max) : tuple of float, in voxels.
    """
    def as_theta(theta, name):
        array = np.asarray(theta, dtype=np.float32)
        if array.shape == (4, 3):
            array = array[None]
        if array.shape != (1, 4, 3):
            raise ValueError(f"`{name}` has shape {array.shape}, but it needs (1, 4, 3) or (4, 3).")
        return array

    estimated = as_theta(theta_estimated, "theta_estimated")
    true = as_theta(theta_true, "theta_true")
    grid = get_reference_grid(grid_size)
    composed = warp_grid(warp_grid(grid, estimated)[0], true)[0]
    distance = np.linalg.norm(composed.numpy() - grid.numpy(), axis=-1)
    return float(distance.mean()), float(distance.max())
