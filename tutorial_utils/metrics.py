"""Evaluation metrics: overlap, surface distance, centroid, Jacobian and affine residual.

These take NumPy arrays (TensorFlow tensors are converted) and return NumPy
values: they judge a registration, they are not losses to differentiate.
Label comparisons take ``(fixed, warped)``, fixed first; labels are
probabilities in ``[0, 1]`` of any numeric or bool dtype (other ranges raise a
``ValueError``), thresholded at 0.5. Distances are in voxels unless ``spacing``
(mm per voxel along d1, d2, d3) is given. :func:`evaluate_registration` gives
the numbers every chapter reports (Dice, HD95, folding) from a DDF and two labels.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .warp import get_reference_grid, warp, warp_grid

__all__ = [
    "binary_dice",
    "hausdorff_distance",
    "centroid_distance",
    "jacobian_determinant",
    "folding_fraction",
    "affine_residual",
    "evaluate_registration",
]


_LABEL_TOLERANCE = 1e-3


def _binary_volume(label, name: str, threshold: float) -> np.ndarray:
    """``label > threshold`` after checking shape, dtype, finiteness and range."""
    array = np.asarray(label)
    if array.ndim != 3:
        raise ValueError(
            f"`{name}` has shape {array.shape}, but it needs one label volume (d1, d2, d3); "
            "index the batch and channel first, e.g. label[0, ..., 0]."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"`{name}` has dtype {array.dtype}; it needs a numeric or bool dtype.")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"`threshold` is {threshold}; it needs to be strictly between 0 and 1.")
    if array.dtype != bool and array.size:
        low, high = float(np.min(array)), float(np.max(array))
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"`{name}` has non-finite values (NaN or inf); a label cannot.")
        if low < -_LABEL_TOLERANCE or high > 1.0 + _LABEL_TOLERANCE:
            raise ValueError(
                f"`{name}` has values in [{low:.6g}, {high:.6g}], but a label is a probability "
                f"in [0, 1] (thresholded at {threshold}): divide a 0/255 mask by 255, or pick "
                "one structure of a label map with (label == k)."
            )
    return array > threshold


def _check_pair(first, second):
    if first.shape != second.shape:
        raise ValueError(
            f"`fixed` has shape {first.shape} but `warped` has {second.shape}; "
            "they must be on the same grid."
        )


def binary_dice(fixed, warped, threshold: float = 0.5) -> float:
    """Dice overlap of two labels after thresholding, in ``[0, 1]``.

    Parameters
    ----------
    fixed, warped : array ``(d1, d2, d3)``
        The fixed label and the warped moving one, probabilities in ``[0, 1]``
        (any numeric or bool dtype); values above ``threshold`` are foreground.
    threshold : float
        Strictly between 0 and 1.

    Returns
    -------
    float
        ``2 |A ∩ B| / (|A| + |B|)`` (Dice 1945); 1.0 if both are empty.

    Raises
    ------
    ValueError
        For a shape other than 3-D, different shapes, or values outside ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 4)); a[:2] = 1
    >>> binary_dice(a, a)
    1.0
    >>> b = np.zeros((4, 4, 4), np.uint8); b[1:3] = 1
    >>> binary_dice(a, b)
    0.5
    """
    fixed_mask = _binary_volume(fixed, "fixed", threshold)
    warped_mask = _binary_volume(warped, "warped", threshold)
    _check_pair(fixed_mask, warped_mask)
    total = fixed_mask.sum() + warped_mask.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(fixed_mask, warped_mask).sum() / total)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff_distance(
    fixed,
    warped,
    percentile: float = 95.0,
    spacing: Optional[Sequence[float]] = None,
    threshold: float = 0.5,
) -> float:
    """Percentile Hausdorff distance between the surfaces of two labels.

    The distances from every surface voxel of each label to the nearest surface
    voxel of the other are pooled, and their ``percentile`` is returned (95 by
    default, robust to a few outliers; 100 gives the classical Hausdorff distance).
    A surface voxel is a foreground voxel with a background 6-neighbour (or on
    the volume's border).

    Parameters
    ----------
    fixed, warped : array ``(d1, d2, d3)``
        Labels in ``[0, 1]``, thresholded at ``threshold``.
    percentile : float
        In ``[0, 100]``.
    spacing : sequence of 3 float, optional
        Voxel size along (d1, d2, d3); the result is then in those units (mm).

    Returns
    -------
    float
        Distance in voxels (or ``spacing`` units); ``nan`` if either label is empty.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((8, 8, 8)); a[2:5, 2:5, 2:5] = 1
    >>> hausdorff_distance(a, np.roll(a, 2, axis=0), percentile=100)
    2.0
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"`percentile` is {percentile}; it needs to be in [0, 100].")
    fixed_mask = _binary_volume(fixed, "fixed", threshold)
    warped_mask = _binary_volume(warped, "warped", threshold)
    _check_pair(fixed_mask, warped_mask)
    if not fixed_mask.any() or not warped_mask.any():
        return float("nan")
    surface_fixed, surface_warped = _surface(fixed_mask), _surface(warped_mask)
    sampling = None if spacing is None else tuple(float(s) for s in spacing)
    to_fixed = ndimage.distance_transform_edt(~surface_fixed, sampling=sampling)
    to_warped = ndimage.distance_transform_edt(~surface_warped, sampling=sampling)
    distances = np.concatenate([to_warped[surface_fixed], to_fixed[surface_warped]])
    return float(np.percentile(distances, percentile))


def centroid_distance(
    fixed, warped, spacing: Optional[Sequence[float]] = None, threshold: float = 0.5
) -> float:
    """Distance between the centres of mass of two thresholded labels.

    Parameters
    ----------
    fixed, warped : array ``(d1, d2, d3)``
        Labels in ``[0, 1]``, thresholded at ``threshold``.
    spacing : sequence of 3 float, optional
        Voxel size along (d1, d2, d3).

    Returns
    -------
    float
        In voxels (or ``spacing`` units); ``nan`` if either label is empty.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((8, 8, 8)); a[1:3, 1:3, 1:3] = 1
    >>> centroid_distance(a, np.roll(a, (3, 4), axis=(0, 1)))
    5.0
    """
    fixed_mask = _binary_volume(fixed, "fixed", threshold)
    warped_mask = _binary_volume(warped, "warped", threshold)
    _check_pair(fixed_mask, warped_mask)
    if not fixed_mask.any() or not warped_mask.any():
        return float("nan")
    scale = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float)
    offset = np.array(ndimage.center_of_mass(fixed_mask)) - np.array(
        ndimage.center_of_mass(warped_mask)
    )
    return float(np.linalg.norm(offset * scale))


def _ddf_array(ddf, name: str = "ddf") -> np.ndarray:
    """A DDF as float64 ``(batch, d1, d2, d3, 3)`` after checking it."""
    field = np.asarray(ddf)
    if field.ndim not in (4, 5) or field.shape[-1] != 3:
        raise ValueError(
            f"`{name}` has shape {field.shape}, but it needs shape (batch, d1, d2, d3, 3) "
            "or (d1, d2, d3, 3): one displacement vector (voxels) per voxel."
        )
    if not np.issubdtype(field.dtype, np.number):
        raise ValueError(f"`{name}` has dtype {field.dtype}; it needs a numeric dtype.")
    field = field.astype(np.float64)
    if min(field.shape[-4:-1]) < 3:
        raise ValueError(
            f"`{name}` has shape {field.shape}; derivatives need at least 3 voxels per axis."
        )
    if not np.all(np.isfinite(field)):
        raise ValueError(f"`{name}` has non-finite values (NaN or inf).")
    return field if field.ndim == 5 else field[None]


def jacobian_determinant(ddf) -> np.ndarray:
    """Determinant of the Jacobian of the transform ``x -> x + ddf(x)``.

    The DDF is differentiated as a field everywhere, borders included:
    ``numpy.gradient(..., edge_order=2)`` (central differences inside,
    second-order one-sided differences on the outer voxels), in voxel units, as
    the training-time :func:`~tutorial_utils.register.folding_penalty` does.
    Fields up to quadratic in position are differentiated exactly, so an affine
    DDF ``u(x) = x A + b`` gives ``det(I + A)`` at every voxel, the outer ones
    included. A value of 1
    means no local volume change, below 1 compression, above 1 expansion, and
    ``<= 0`` folding (the transform is not invertible there).

    Parameters
    ----------
    ddf : array ``(batch, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``, in voxels
        At least 3 voxels per axis; any numeric dtype.

    Returns
    -------
    numpy.ndarray
        ``(batch, d1, d2, d3)`` or ``(d1, d2, d3)``, matching the input, float32.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1)
    >>> ddf = grid @ np.diag([1.0, 0.0, -0.5])  # stretch d1 x2, squash d3 x0.5
    >>> np.unique(jacobian_determinant(ddf).round(6))
    array([1.], dtype=float32)
    """
    batched = _ddf_array(ddf)
    dets = []
    for single in batched:
        # jac[..., c, i] = d u_c / d x_i
        jac = np.stack(np.gradient(single, axis=(0, 1, 2), edge_order=2), axis=-1)
        dets.append(np.linalg.det(jac + np.eye(3)))
    dets = np.stack(dets).astype(np.float32)
    return dets if np.ndim(ddf) == 5 else dets[0]


def folding_fraction(ddf, margin: int = 0) -> float:
    """Fraction of voxels where the Jacobian determinant is ``<= 0`` (folding).

    Parameters
    ----------
    ddf : array ``(batch, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``, in voxels.
    margin : int
        Leave out this many voxels at each border. The central-difference
        bending energy of :mod:`tutorial_utils.losses` only sees voxels at least 2
        from the border, so ``margin=2`` measures folding where it regularises.

    Returns
    -------
    float
        In ``[0, 1]``, over all batch elements and the voxels kept.

    Examples
    --------
    >>> import numpy as np
    >>> folding_fraction(np.zeros((6, 6, 6, 3)))
    0.0
    """
    if int(margin) != margin or margin < 0:
        raise ValueError(f"`margin` is {margin}; it needs to be a whole number of voxels >= 0.")
    det = jacobian_determinant(ddf)
    if det.ndim == 3:
        det = det[None]
    if margin:
        if min(det.shape[1:]) <= 2 * margin:
            raise ValueError(f"`margin` {margin} leaves no voxels of a field of shape {det.shape[1:]}.")
        det = det[:, margin:-margin, margin:-margin, margin:-margin]
    return float(np.mean(det <= 0))


def _label_volume(label, name: str) -> np.ndarray:
    """A label as ``(d1, d2, d3)`` float32: accepts ``(d1, d2, d3)``, ``(1, d1, d2,
    d3)`` and ``(1, d1, d2, d3, 1)``."""
    array = np.asarray(label)
    if array.ndim == 5 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    _binary_volume(array, name, 0.5)  # shape, dtype and range checks
    return array.astype(np.float32)


def evaluate_registration(ddf, *, fixed_label, moving_label, interior_margin: int = 2) -> dict:
    """The numbers every registration chapter reports, from a DDF and two labels.

    The moving label is warped with :func:`tutorial_utils.warp.warp` (trilinear,
    zero outside) and thresholded at 0.5, then compared with the fixed label.

    Parameters
    ----------
    ddf : array ``(1, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``
        Displacements in voxels on the fixed grid (one registration).
    fixed_label : array ``(d1, d2, d3)`` (or ``(1, d1, d2, d3[, 1])``)
        Probabilities in ``[0, 1]`` on the fixed grid.
    moving_label : array ``(m1, m2, m3)`` (or ``(1, m1, m2, m3[, 1])``)
        Probabilities in ``[0, 1]`` on the moving grid.
    interior_margin : int
        Border voxels left out of ``"folding_interior"``.

    Returns
    -------
    dict of float
        ``"dice"`` (:func:`binary_dice`, in [0, 1]), ``"hd95"``
        (:func:`hausdorff_distance` at the 95th percentile, in voxels; nan if
        either label is empty), ``"folding_whole"`` and ``"folding_interior"``
        (:func:`folding_fraction` over the whole field and without
        ``interior_margin`` border voxels: fractions of voxels with Jacobian
        determinant <= 0).

    Examples
    --------
    >>> import numpy as np
    >>> label = np.zeros((8, 8, 8)); label[2:6, 2:6, 2:6] = 1
    >>> evaluate_registration(np.zeros((8, 8, 8, 3)), fixed_label=label, moving_label=label)
    {'dice': 1.0, 'hd95': 0.0, 'folding_whole': 0.0, 'folding_interior': 0.0}
    """
    field = _ddf_array(ddf)
    if field.shape[0] != 1:
        raise ValueError(
            f"`ddf` has shape {np.shape(ddf)}; evaluate one registration at a time (batch 1)."
        )
    fixed = _label_volume(fixed_label, "fixed_label")
    moving = _label_volume(moving_label, "moving_label")
    if fixed.shape != field.shape[1:4]:
        raise ValueError(
            f"`fixed_label` has shape {fixed.shape} but `ddf` is on a grid of "
            f"{field.shape[1:4]}; the DDF lives on the fixed grid."
        )
    warped = warp(moving[None], field.astype(np.float32)).numpy()[0]
    return {
        "dice": binary_dice(fixed, warped),
        "hd95": hausdorff_distance(fixed, warped, 95.0),
        "folding_whole": folding_fraction(field),
        "folding_interior": folding_fraction(field, margin=interior_margin),
    }


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
        if not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}` has non-finite values (NaN or inf).")
        return array

    if len(grid_size) != 3 or any(int(s) != s or s < 1 for s in grid_size):
        raise ValueError(f"`grid_size` is {tuple(grid_size)}; it needs 3 positive whole numbers.")

    estimated = as_theta(theta_estimated, "theta_estimated")
    true = as_theta(theta_true, "theta_true")
    grid = get_reference_grid(grid_size)
    composed = warp_grid(warp_grid(grid, estimated)[0], true)[0]
    distance = np.linalg.norm(composed.numpy() - grid.numpy(), axis=-1)
    return float(distance.mean()), float(distance.max())
