"""Evaluation metrics: overlap, surface distance, centroid, Jacobian and affine residual.

These take NumPy arrays (TensorFlow tensors are converted) and return NumPy
values: they judge a registration, they are not losses to differentiate. The
module is NumPy/SciPy only and never imports TensorFlow: labels are warped
with ``scipy.ndimage.map_coordinates`` (the course's trilinear resampling,
zero outside), derivatives and Jacobians come from :mod:`~tutorial_utils.fields`
and affine algebra from :mod:`~tutorial_utils.affine`.
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

from . import affine as _affine
from ._checks import check_spacing
from . import fields as _fields

__all__ = [
    "binary_dice",
    "hausdorff_distance",
    "centroid_distance",
    "jacobian_determinant",
    "folding_fraction",
    "affine_residual",
    "evaluate_registration",
    "evaluate_pairs",
    "warp_label",
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
    checked = check_spacing(spacing)
    sampling = None if checked is None else tuple(checked)
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
    checked = check_spacing(spacing)
    scale = np.ones(3) if checked is None else checked
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
    """Determinant of the Jacobian of the transform ``x -> x + ddf(x)``, for figures.

    The DDF is differentiated as a field everywhere, borders included, with the
    package's one central stencil :func:`tutorial_utils.fields.gradient`
    (``numpy.gradient(..., edge_order=2)``: central differences inside,
    second-order one-sided differences on the outer voxels), in voxel units.
    Fields up to quadratic in position are differentiated exactly, so an affine
    DDF ``u(x) = x A + b`` gives ``det(I + A)`` at every voxel, the outer ones
    included. A value of 1 means no local volume change, below 1 compression,
    above 1 expansion, and ``<= 0`` folding.

    This central-difference map is what the chapters *show*; it cannot see a
    field that oscillates from voxel to voxel (central differences skip the
    voxel in between), so folding is *scored* by :func:`folding_fraction` from
    the eight one-sided determinants instead
    (:func:`tutorial_utils.fields.one_sided_jacobian_determinants`).

    Parameters
    ----------
    ddf : array ``(batch, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``, in voxels
        At least 3 voxels per axis; any numeric dtype.

    Returns
    -------
    numpy.ndarray
        ``(batch, d1, d2, d3)`` or ``(d1, d2, d3)``, matching the input, float32
        (computed in float64).

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1)
    >>> ddf = grid @ np.diag([1.0, 0.0, -0.5])  # stretch d1 x2, squash d3 x0.5
    >>> np.unique(jacobian_determinant(ddf).round(6))
    array([1.], dtype=float32)
    """
    dets = _fields.jacobian_determinant(_ddf_array(ddf)).astype(np.float32)
    return dets if np.ndim(ddf) == 5 else dets[0]


def folding_fraction(ddf, margin: int = 0) -> float:
    """Fraction of voxels that fold: any one-sided Jacobian determinant ``<= 0``.

    A voxel counts as folding when the determinant of ``I + du/dx`` is ``<= 0``
    for ANY of the 8 combinations of forward and backward differences along
    (d1, d2, d3) (:func:`tutorial_utils.fields.one_sided_jacobian_determinants`;
    at the border the missing neighbour's difference is replaced by the other
    one). This is the check of Liu et al., "On finite difference Jacobian
    computation in deformable image registration" (IJCV 2024): a positive
    central-difference determinant does not make a digital transformation
    diffeomorphic, because central differences cannot see an odd-even
    (checkerboard) oscillation of the field, and an optimiser whose folding
    penalty uses them can fold the field that way unseen. (Until this
    definition, folding here was ``jacobian_determinant(ddf) <= 0``; it is
    never lower now.)

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
    >>> checkerboard = np.zeros((6, 6, 6, 3)); checkerboard[::2, ..., 0] = 1.2
    >>> folding_fraction(checkerboard, margin=2)  # central differences see no folding here
    1.0
    """
    if int(margin) != margin or margin < 0:
        raise ValueError(f"`margin` is {margin}; it needs to be a whole number of voxels >= 0.")
    field = _ddf_array(ddf)
    folds = np.any(_fields.one_sided_jacobian_determinants(field) <= 0, axis=0)
    if margin:
        if min(folds.shape[1:]) <= 2 * margin:
            raise ValueError(f"`margin` {margin} leaves no voxels of a field of shape {folds.shape[1:]}.")
        folds = folds[:, margin:-margin, margin:-margin, margin:-margin]
    return float(np.mean(folds))


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


def warp_label(moving_label, ddf) -> np.ndarray:
    """Warp a label (or image) with a DDF in NumPy: sample it at ``grid + ddf``.

    ``scipy.ndimage.map_coordinates(order=1, mode="constant", cval=0)``:
    trilinear, 0 outside the moving volume, the numbers of
    :func:`tutorial_utils.warp.warp` (to float32 rounding) without TensorFlow.

    Parameters
    ----------
    moving_label : array ``(m1, m2, m3)``
    ddf : array ``(d1, d2, d3, 3)``, voxels, on the fixed grid.

    Returns
    -------
    numpy.ndarray ``(d1, d2, d3)`` float32.

    Examples
    --------
    >>> import numpy as np
    >>> label = np.zeros((4, 4, 4)); label[2] = 1
    >>> ddf = np.zeros((4, 4, 4, 3)); ddf[..., 0] = 1.0
    >>> warp_label(label, ddf)[:, 0, 0].tolist()  # voxel 1 reads voxel 2; voxel 3 reads outside: 0
    [0.0, 1.0, 0.0, 0.0]
    """
    field = np.asarray(ddf, dtype=np.float64)
    volume = np.asarray(moving_label, dtype=np.float64)
    if field.ndim != 4 or field.shape[-1] != 3:
        raise ValueError(f"`ddf` has shape {field.shape}; it needs (d1, d2, d3, 3), voxels.")
    if volume.ndim != 3:
        raise ValueError(f"`moving_label` has shape {volume.shape}; it needs (m1, m2, m3).")
    grid = _affine.reference_grid(field.shape[:3])
    coordinates = np.moveaxis(grid + field, -1, 0)
    return ndimage.map_coordinates(volume, coordinates, order=1, mode="constant", cval=0.0).astype(np.float32)


def _checked_registration(ddf, fixed_label, moving_label):
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
    return field, fixed, moving


def evaluate_registration(
    ddf, *, fixed_label, moving_label, interior_margin: int = 2,
    spacing: Optional[Sequence[float]] = None,
) -> dict:
    """The numbers every registration chapter reports, from a DDF and two labels.

    The moving label is warped with :func:`warp_label` (trilinear, zero
    outside: the numbers of :func:`tutorial_utils.warp.warp`) and thresholded
    at 0.5, then compared with the fixed label.

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
    spacing : sequence of 3 float, optional
        The fixed image's voxel size (mm) along (d1, d2, d3); ``"hd95"`` is then in mm.

    Returns
    -------
    dict of float
        ``"dice"`` (:func:`binary_dice`, in [0, 1]), ``"hd95"``
        (:func:`hausdorff_distance` at the 95th percentile, in voxels, or mm
        with ``spacing``; nan if either label is empty), ``"folding_whole"``
        and ``"folding_interior"`` (:func:`folding_fraction` over the whole
        field and without ``interior_margin`` border voxels: fractions of
        voxels where any of the 8 one-sided Jacobian determinants is <= 0,
        Liu et al. 2024; before #22 it was the central-difference determinant,
        which an oscillating field could fold under unseen).

    Examples
    --------
    >>> import numpy as np
    >>> label = np.zeros((8, 8, 8)); label[2:6, 2:6, 2:6] = 1
    >>> evaluate_registration(np.zeros((8, 8, 8, 3)), fixed_label=label, moving_label=label)
    {'dice': 1.0, 'hd95': 0.0, 'folding_whole': 0.0, 'folding_interior': 0.0}
    """
    field, fixed, moving = _checked_registration(ddf, fixed_label, moving_label)
    warped = warp_label(moving, field[0])
    return {
        "dice": binary_dice(fixed, warped),
        "hd95": hausdorff_distance(fixed, warped, 95.0, spacing=spacing),
        "folding_whole": folding_fraction(field),
        "folding_interior": folding_fraction(field, margin=interior_margin),
    }


def evaluate_pairs(ddfs, fixed_labels, moving_labels, *, interior_margin: int = 2,
                   spacing: Optional[Sequence[float]] = None) -> dict:
    """:func:`evaluate_registration` of a batch of pairs: per-pair scores and their means.

    Parameters
    ----------
    ddfs : array ``(batch, d1, d2, d3, 3)``, voxels, each on its fixed grid.
    fixed_labels : array ``(batch, d1, d2, d3)`` (or ``(batch, d1, d2, d3, 1)``)
    moving_labels : array ``(batch, m1, m2, m3)`` (or ``(batch, m1, m2, m3, 1)``)
    interior_margin, spacing
        As in :func:`evaluate_registration`.

    Returns
    -------
    dict
        ``"per_pair"``: a dict of ``(batch,)`` float64 arrays with the keys of
        :func:`evaluate_registration`; ``"mean"``: a dict of their means
        (``nanmean`` for ``"hd95"``, whose empty-label pairs are nan).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((2, 8, 8, 8)); labels[:, 2:6, 2:6, 2:6] = 1
    >>> scores = evaluate_pairs(np.zeros((2, 8, 8, 8, 3)), labels, labels)
    >>> scores["per_pair"]["dice"].tolist(), scores["mean"]["folding_whole"]
    ([1.0, 1.0], 0.0)
    """
    ddfs, fixed_labels, moving_labels = np.asarray(ddfs), np.asarray(fixed_labels), np.asarray(moving_labels)
    if ddfs.ndim != 5:
        raise ValueError(f"`ddfs` has shape {ddfs.shape}; it needs (batch, d1, d2, d3, 3).")
    for name, labels in (("fixed_labels", fixed_labels), ("moving_labels", moving_labels)):
        if labels.ndim not in (4, 5) or labels.shape[0] != ddfs.shape[0]:
            raise ValueError(
                f"`{name}` has shape {labels.shape}; it needs (batch, d1, d2, d3[, 1]) with the "
                f"batch of `ddfs` ({ddfs.shape[0]})."
            )
    rows = [
        evaluate_registration(ddf[None], fixed_label=fixed, moving_label=moving,
                              interior_margin=interior_margin, spacing=spacing)
        for ddf, fixed, moving in zip(ddfs, fixed_labels, moving_labels)
    ]
    per_pair = {key: np.array([row[key] for row in rows], dtype=np.float64) for key in rows[0]}
    mean = {key: float(np.nanmean(values) if key == "hd95" and not np.all(np.isnan(values))
                       else np.mean(values)) for key, values in per_pair.items()}
    return {"per_pair": per_pair, "mean": mean}


def affine_residual(theta_estimated, theta_true, grid_size: Sequence[int]) -> Tuple[float, float]:
    """How far an estimated affine is from undoing a known one, on a grid.

    In the self-registration chapter the moving image is the fixed image sampled
    at ``warp_grid(grid, theta_true)``, and the estimate samples the moving image
    at ``warp_grid(grid, theta_estimated)``; the fixed voxel ``x`` therefore ends
    up reading the fixed image at ``T_true(T_estimated(x))``. A perfect recovery
    makes that composition the identity. This returns the mean and maximum,
    over the grid, of ``|T_true(T_estimated(x)) - x|``, computed with
    :mod:`tutorial_utils.affine` in float64 (from the float32 values of the inputs).

    Parameters
    ----------
    theta_estimated, theta_true : array ``(1, 4, 3)`` or ``(4, 3)``
    grid_size : sequence of 3 int
        ``(d1, d2, d3)``.

    Returns
    -------
    (mean, max) : tuple of float, in voxels.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [2.0, 0, 0]])
    >>> affine_residual(theta, theta, (4, 4, 4))  # moved twice: 4 voxels everywhere
    (4.0, 4.0)
    """
    def as_theta(theta, name):
        array = np.asarray(theta, dtype=np.float32)
        if array.shape == (4, 3):
            array = array[None]
        if array.shape != (1, 4, 3):
            raise ValueError(f"`{name}` has shape {array.shape}, but it needs (1, 4, 3) or (4, 3).")
        return _affine.as_theta(array, name)[0]

    if len(grid_size) != 3 or any(int(s) != s or s < 1 for s in grid_size):
        raise ValueError(f"`grid_size` is {tuple(grid_size)}; it needs 3 positive whole numbers.")
    estimated = as_theta(theta_estimated, "theta_estimated")
    true = as_theta(theta_true, "theta_true")
    grid = _affine.reference_grid([int(s) for s in grid_size])
    composed = _affine.transform_points(_affine.compose(estimated, true), grid)
    distance = np.linalg.norm(composed - grid, axis=-1)
    return float(distance.mean()), float(distance.max())
