"""Points through a transform, in either direction; landmarks; target registration error.

The one home for points (NumPy/SciPy only; importing it does not import TensorFlow).

Which way does a registration map points?
-----------------------------------------
A registration's transform maps **fixed** points to **moving** points. The
course's DDF lives on the fixed grid and points into the moving image,
``warped(x) = moving(x + ddf(x))``; an affine ``theta`` maps fixed voxel ``x``
to moving voxel ``[x, 1] @ theta``. Warping an image therefore *pulls* moving
intensities back onto the fixed grid, but carrying landmarks of the **moving**
image onto the fixed image needs the **inverse** transform. Mapping moving
landmarks with the forward field is the classic mistake behind "the target
registration error got worse after registration".

- ``map_points(p, transform)`` (``direction="fixed_to_moving"``, the default):
  the transform as it is: ``[p, 1] @ theta`` or ``p + ddf(p)``.
- ``map_points(p, transform, direction="moving_to_fixed")``: its inverse: the
  exact inverse affine, or, for a DDF, an iterative inverse that reports its
  residual and raises :class:`InverseNotConvergedError` where it fails (a
  folding field).

Conventions: points are ``(n, 3)`` coordinates in voxels, index order
``(d1, d2, d3)`` (voxel ``(i, j, k)`` is ``volume[i, j, k]``); distances are in
voxels unless ``spacing`` (mm per voxel along d1, d2, d3) is given.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import numpy as np
from scipy import ndimage

from . import affine as _affine
from ._checks import check_spacing
from .results import RegistrationResult

__all__ = [
    "DIRECTIONS",
    "InverseNotConvergedError",
    "map_points",
    "target_registration_error",
    "landmarks_from_label",
]

#: The two directions :func:`map_points` knows.
DIRECTIONS = ("fixed_to_moving", "moving_to_fixed")

_OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
_ANATOMY = {"L": "left", "R": "right", "P": "posterior", "A": "anterior", "S": "superior", "I": "inferior"}


class InverseNotConvergedError(ValueError):
    """The iterative inverse of a DDF did not reach its tolerance at some points.

    Attributes
    ----------
    points : ndarray ``(n, 3)`` float64
        The last estimates of the inverse (all points, converged or not).
    residual : ndarray ``(n,)`` float64
        ``|q + u(q) - p|`` per point, in voxels.
    failed : ndarray ``(n,)`` bool
        Where ``residual > tolerance``.
    """

    def __init__(self, message: str, points: np.ndarray, residual: np.ndarray, failed: np.ndarray):
        super().__init__(message)
        self.points, self.residual, self.failed = points, residual, failed


# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------
def _as_points(points, name: str = "points") -> np.ndarray:
    """``points`` as a float64 ``(n, 3)`` array, checked."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` cannot be read as numbers ({error}); it needs (n, 3) voxel "
                         "coordinates (d1, d2, d3).") from None
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"`{name}` has shape {array.shape}, but it needs (n, 3): one row of voxel "
                         "coordinates (d1, d2, d3) per point (use points[None] for one point).")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` has non-finite values (NaN or inf) in rows "
                         f"{np.flatnonzero(~np.all(np.isfinite(array), axis=1)).tolist()}.")
    return array


def _as_transform(transform) -> Tuple[str, np.ndarray]:
    """``("affine", theta (4, 3))`` or ``("ddf", ddf (d1, d2, d3, 3))``, float64, checked."""
    if isinstance(transform, RegistrationResult):
        transform = transform.theta if transform.theta is not None else transform.ddf
    try:
        array = np.asarray(transform, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`transform` cannot be read as numbers ({error}).") from None
    need = ("it needs a RegistrationResult, an affine theta (4, 3) or (1, 4, 3), or a DDF "
            "(d1, d2, d3, 3) or (1, d1, d2, d3, 3) in voxels")
    if array.ndim in (3, 5) and array.shape[0] == 1:
        array = array[0]
    if array.shape == (4, 3):
        kind = "affine"
    elif array.ndim == 4 and array.shape[-1] == 3 and min(array.shape[:3]) >= 1:
        kind = "ddf"
    else:
        raise ValueError(f"`transform` has shape {np.shape(transform)}; {need} (one transform, batch 1).")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`transform` (a {kind}) has non-finite values (NaN or inf).")
    return kind, array


def _check_direction(direction) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` is {direction!r}; it needs one of {DIRECTIONS}: "
                         "'fixed_to_moving' applies the transform as it is (fixed-image points to "
                         "the moving image), 'moving_to_fixed' its inverse.")
    return direction


def _as_spacing(spacing) -> np.ndarray:
    checked = check_spacing(spacing, one_for_all=True)
    return np.ones(3) if checked is None else checked


# --------------------------------------------------------------------------
# mapping points
# --------------------------------------------------------------------------
def _sample_ddf(ddf: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``u(points)``: trilinear, the field extended by its edge value outside (``mode="edge"``)."""
    coordinates = points.T
    return np.stack([ndimage.map_coordinates(ddf[..., c], coordinates, order=1, mode="nearest")
                     for c in range(3)], axis=-1)


def _invert_ddf_at(ddf: np.ndarray, points: np.ndarray, tolerance: float, max_iterations: int):
    """Fixed-point iteration ``q <- p - u(q)`` from ``q = p - u(p)``; returns ``(q, residual)``."""
    estimate = points - _sample_ddf(ddf, points)
    active = np.ones(len(points), dtype=bool)
    residual = np.zeros(len(points))
    for _ in range(max_iterations + 1):
        displacement = _sample_ddf(ddf, estimate[active])
        residual[active] = np.linalg.norm(estimate[active] + displacement - points[active], axis=1)
        still = residual[active] > tolerance
        if not np.any(still):
            break
        indices = np.flatnonzero(active)
        estimate[indices[still]] = points[indices[still]] - displacement[still]
        active[indices[~still]] = False
    return estimate, residual


def _check_iteration(tolerance, max_iterations):
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"`tolerance` is {tolerance!r}; it needs a positive number of voxels.")
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"`max_iterations` is {max_iterations!r}; it needs a positive whole number.")


def map_points(points, transform, *, direction: str = "fixed_to_moving", tolerance: float = 1e-4,
               max_iterations: int = 500, return_residual: bool = False):
    """Map points through a registration's transform, or through its inverse.

    The transform maps fixed-image voxels to moving-image voxels (the
    package's convention, ``warped = warp.warp(moving, ddf)``), so

    - ``direction="fixed_to_moving"`` applies it as it is: an affine
      ``[p, 1] @ theta`` (:func:`tutorial_utils.affine.transform_points`), a DDF
      ``p + u(p)`` with ``u`` read by trilinear interpolation
      (``scipy.ndimage.map_coordinates(order=1)``), the field extended by its
      edge value outside its grid (the course's ``mode="edge"`` for fields);
    - ``direction="moving_to_fixed"`` applies its inverse, which is what carries
      landmarks of the moving image onto the fixed image: the exact inverse
      affine (:func:`tutorial_utils.affine.invert`), or, for a DDF, the point
      ``q`` with ``q + u(q) = p``, found by the fixed-point iteration
      ``q <- p - u(q)`` from ``q = p - u(p)`` (Chen et al., "A simple
      fixed-point approach to invert a deformation field", Med. Phys. 35(1):
      81-88, 2008; ITK's ``IterativeInverseDisplacementFieldImageFilter``
      iterates the same update). It converges where ``u`` is a contraction
      near the point (its Jacobian's norm below 1); where the field folds or
      stretches too much it need not, and then it *raises*
      :class:`InverseNotConvergedError` (with the estimates and residuals as
      attributes) rather than return a wrong point. In a folded region the
      inverse is not unique; a converged ``q`` is one of the preimages.

    Parameters
    ----------
    points : array ``(n, 3)``
        Voxel coordinates ``(d1, d2, d3)``: on the fixed grid for
        ``"fixed_to_moving"``, on the moving grid for ``"moving_to_fixed"``.
    transform : RegistrationResult, theta ``(4, 3)``/``(1, 4, 3)``, or DDF ``(d1, d2, d3, 3)``/``(1, d1, d2, d3, 3)``
        In voxels; a DDF on the fixed grid.
    direction : {"fixed_to_moving", "moving_to_fixed"}
    tolerance : float
        The DDF inverse stops at residual ``|q + u(q) - p| <= tolerance`` (voxels).
    max_iterations : int
        The most updates of the DDF inverse.
    return_residual : bool
        Also return the residual per point, ``(n,)`` voxels: ``|q + u(q) - p|``
        for a DDF inverse, ``|[q, 1] @ theta - p|`` (rounding only) for an
        affine inverse, zeros for ``"fixed_to_moving"`` (nothing to solve).

    Returns
    -------
    ndarray ``(n, 3)`` float64, voxels; with ``return_residual``, ``(points, residual)``.

    Raises
    ------
    ValueError
        For points not ``(n, 3)`` or not finite, a transform of another shape or
        not finite, an unknown ``direction``, a singular affine for
        ``"moving_to_fixed"``, a non-positive ``tolerance`` or ``max_iterations``.
    InverseNotConvergedError
        (a ``ValueError``) if the DDF inverse misses ``tolerance`` at any point.

    Examples
    --------
    >>> ddf = np.zeros((8, 8, 8, 3)); ddf[..., 0] = 1.5  # every fixed voxel looks 1.5 voxels further along d1
    >>> map_points([[2.0, 3.0, 4.0]], ddf).tolist()  # where a fixed point lies in the moving image
    [[3.5, 3.0, 4.0]]
    >>> map_points([[3.5, 3.0, 4.0]], ddf, direction="moving_to_fixed").tolist()  # a moving landmark on the fixed image
    [[2.0, 3.0, 4.0]]
    """
    points = _as_points(points)
    kind, array = _as_transform(transform)
    _check_direction(direction)
    _check_iteration(tolerance, max_iterations)
    if direction == "fixed_to_moving":
        if kind == "affine":
            mapped = np.asarray(_affine.transform_points(array, points), dtype=np.float64)
        else:
            mapped = points + _sample_ddf(array, points)
        return (mapped, np.zeros(len(points))) if return_residual else mapped
    if kind == "affine":
        if abs(np.linalg.det(array[:3])) < 1e-12:
            raise ValueError("`transform` is an affine with a singular linear part (determinant 0); "
                             "it has no inverse, so direction='moving_to_fixed' is impossible.")
        mapped = np.asarray(_affine.transform_points(_affine.invert(array), points), dtype=np.float64)
        residual = np.linalg.norm(_affine.transform_points(array, mapped) - points, axis=1)
    else:
        mapped, residual = _invert_ddf_at(array, points, float(tolerance), int(max_iterations))
        failed = residual > tolerance
        if np.any(failed):
            raise InverseNotConvergedError(
                f"the inverse of `transform` (a DDF) did not converge at {int(failed.sum())} of {len(points)} "
                f"points (rows {np.flatnonzero(failed)[:10].tolist()}; largest residual "
                f"|q + u(q) - p| = {residual.max():.3g} voxels > tolerance {tolerance:g}) after "
                f"{int(max_iterations)} iterations. The field probably folds or stretches there "
                "(Jacobian determinant <= 0, or steps larger than the voxel spacing), so it has no "
                "unique inverse; the estimates are in this error's `points`, the residuals in `residual`.",
                mapped, residual, failed)
    return (mapped, residual) if return_residual else mapped


# --------------------------------------------------------------------------
# target registration error
# --------------------------------------------------------------------------
def _paired(fixed_points, moving_points):
    """Two ``(n, 3)`` arrays and the names (or None), from arrays or name -> point mappings."""
    named = [isinstance(p, Mapping) for p in (fixed_points, moving_points)]
    if any(named):
        if not all(named):
            raise ValueError("`fixed_points` and `moving_points` need to be both arrays (n, 3) or "
                             "both mappings name -> (3,) point (e.g. from landmarks_from_label).")
        if set(fixed_points) != set(moving_points):
            raise ValueError(f"`fixed_points` names {sorted(fixed_points)} and `moving_points` names "
                             f"{sorted(moving_points)} differ; each landmark needs both.")
        names = list(fixed_points)
        fixed_points = [fixed_points[name] for name in names]
        moving_points = [moving_points[name] for name in names]
    else:
        names = None
    fixed, moving = _as_points(fixed_points, "fixed_points"), _as_points(moving_points, "moving_points")
    if fixed.shape != moving.shape:
        raise ValueError(f"`fixed_points` has shape {fixed.shape} but `moving_points` has "
                         f"{moving.shape}; they need one row per landmark, in the same order.")
    return fixed, moving, names


def target_registration_error(fixed_points, moving_points, transform, spacing=None, *,
                              direction: str = "fixed_to_moving") -> dict:
    """Target registration error (TRE): how far corresponding landmarks end up apart.

    The course's TRE maps the **fixed** landmarks with the transform as it is
    (``direction="fixed_to_moving"``) and measures their distance to the
    corresponding **moving** landmarks, in the moving image:
    ``TRE_i = |(T(f_i) - m_i) * spacing|`` (Fitzpatrick, West & Maurer, IEEE
    TMI 17(5): 694-702, 1998). This is the transform's own direction: a DDF
    lives on the fixed grid, so it is read at the fixed landmarks and no
    inverse is needed (exact, cannot fail to converge). The other way,
    ``direction="moving_to_fixed"``, carries the moving landmarks onto the fixed
    image with the inverse (:func:`map_points`), ``|(T^-1(m_i) - f_i) * spacing|``,
    distances in the fixed image; the two agree to first order where the
    transform is close to a rigid motion and differ by its local scaling
    otherwise. Mapping the *moving* landmarks with the *forward* transform is
    neither: it is the classic mistake that makes TRE grow after registration.

    Parameters
    ----------
    fixed_points, moving_points : arrays ``(n, 3)`` in the same order, or mappings name -> ``(3,)``
        Corresponding landmarks in voxels ``(d1, d2, d3)`` of the fixed and
        the moving image (mappings, e.g. from :func:`landmarks_from_label`,
        are paired by name).
    transform : RegistrationResult, theta or DDF, as for :func:`map_points`.
    spacing : None, float or 3 floats
        mm per voxel along d1, d2, d3 (the moving image's for
        ``"fixed_to_moving"``, the fixed image's otherwise); None: voxels.
    direction : {"fixed_to_moving", "moving_to_fixed"}

    Returns
    -------
    dict
        ``"per_point"``: ``(n,)`` float64 distances; ``"mean"``, ``"max"``:
        floats; ``"units"``: ``"mm"`` or ``"voxels"``; ``"names"``: list of
        names (mappings) or None.

    Raises
    ------
    ValueError
        For point sets of different shapes or names, bad points, transform,
        ``spacing`` or ``direction`` (see :func:`map_points`), and
        :class:`InverseNotConvergedError` from a DDF inverse that fails.

    Examples
    --------
    >>> ddf = np.zeros((8, 8, 8, 3)); ddf[..., 0] = 1.5
    >>> fixed, moving = [[2.0, 3.0, 4.0]], [[3.5, 3.0, 5.0]]
    >>> tre = target_registration_error(fixed, moving, ddf, spacing=(2.0, 1.0, 1.0))
    >>> tre["per_point"].tolist(), tre["units"]
    ([1.0], 'mm')
    """
    fixed, moving, names = _paired(fixed_points, moving_points)
    scale = _as_spacing(spacing)
    _check_direction(direction)
    if direction == "fixed_to_moving":
        difference = map_points(fixed, transform) - moving
    else:
        difference = map_points(moving, transform, direction="moving_to_fixed") - fixed
    per_point = np.linalg.norm(difference * scale, axis=1)
    return {
        "per_point": per_point,
        "mean": float(per_point.mean()) if len(per_point) else float("nan"),
        "max": float(per_point.max()) if len(per_point) else float("nan"),
        "units": "voxels" if spacing is None else "mm",
        "names": names,
    }


# --------------------------------------------------------------------------
# landmarks from a label
# --------------------------------------------------------------------------
def _label_mask(label, threshold: float) -> np.ndarray:
    array = np.asarray(label)
    if array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"`label` has shape {np.shape(label)}, but it needs one binary volume "
                         "(d1, d2, d3) (or (1, d1, d2, d3[, 1])); pick a structure first, e.g. labels[..., 0].")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"`label` has dtype {array.dtype}; it needs a numeric or bool dtype.")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"`threshold` is {threshold!r}; it needs to be strictly between 0 and 1.")
    if array.dtype != bool and not np.all(np.isfinite(array)):
        raise ValueError("`label` has non-finite values (NaN or inf); a label cannot.")
    if array.dtype != bool and (array.min() < -1e-3 or array.max() > 1.0 + 1e-3):
        raise ValueError(f"`label` has values in [{array.min():.6g}, {array.max():.6g}], but a label is a "
                         "probability in [0, 1]: pick one structure of a label map with (label == k).")
    mask = array > threshold
    if not mask.any():
        raise ValueError(f"`label` (shape {array.shape}) has no voxel above {threshold}: an empty "
                         "structure has no landmarks.")
    return mask


def _extreme_names(orientation: Optional[str]):
    """``[(min name, max name)] * 3`` for the three axes."""
    if orientation is None:
        return [(f"d{axis}_min", f"d{axis}_max") for axis in (1, 2, 3)]
    code = str(orientation).upper()
    if len(code) != 3 or set(code) - set(_OPPOSITE) or len({frozenset((c, _OPPOSITE[c])) for c in code}) != 3:
        raise ValueError(f"`orientation` is {orientation!r}; it needs a 3-letter code such as 'LPS' "
                         "(one of L/R, one of A/P, one of S/I: the direction each of d1, d2, d3 "
                         "points to, as a loader's 'orientation'), or None.")
    return [(_ANATOMY[_OPPOSITE[c]], _ANATOMY[c]) for c in code]


def _slice_indices(mask: np.ndarray, slices, axis: int) -> Dict[str, int]:
    present = _occupied(mask, axis)
    if isinstance(slices, (int, np.integer)) and not isinstance(slices, bool):
        if slices < 1:
            raise ValueError(f"`slices` is {slices}; it needs a positive number of slices or a list of indices.")
        fractions = [0.5] if slices == 1 else np.linspace(0.0, 1.0, int(slices))
        return {f"d{axis + 1}@{f:.2f}": int(np.floor(present[0] + f * (present[-1] - present[0]) + 0.5))
                for f in fractions}
    try:
        indices = [int(i) for i in slices]
    except (TypeError, ValueError):
        indices = None
    if indices is None or list(slices) != indices or any(i < 0 or i >= mask.shape[axis] for i in indices):
        raise ValueError(f"`slices` is {slices!r}; it needs whole-number indices in [0, {mask.shape[axis]}) "
                         f"along d{axis + 1}, or a number of slices.")
    return {f"d{axis + 1}={i}": i for i in indices}


def _occupied(mask: np.ndarray, axis: int) -> np.ndarray:
    """The indices of the slices along ``axis`` that hold part of the structure, ascending."""
    return np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0).astype(np.float64)


def _slice_centroid(mask: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The centroid ``(3,)`` of the structure's voxels in slice ``index`` along ``axis``."""
    only = np.zeros_like(mask)
    where = [slice(None)] * 3
    where[axis] = int(index)
    only[tuple(where)] = mask[tuple(where)]
    return _centroid(only)


def landmarks_from_label(label, *, slices=None, slice_axis: int = 2, orientation: Optional[str] = None,
                         threshold: float = 0.5) -> Dict[str, np.ndarray]:
    """Named anatomical points of a binary structure: centroid, extremes, slice centroids.

    All points are deterministic functions of the voxel set ``label > threshold``
    (voxel centres, in voxels ``(d1, d2, d3)``, float64 ``(3,)``):

    - ``"centroid"``: the mean of the structure's voxel coordinates;
    - per array axis, its two extremes: the centroid of the structure's voxels
      in its first and in its last slice along that axis (the "most
      inferior"/"most superior" points and so on; a centroid of the extreme
      slice rather than a single voxel, so ties are resolved the same way
      every time). Named ``"d1_min"``, ``"d1_max"``, ... or, given the array's
      ``orientation`` (a loader's ``"orientation"``, e.g. ``"LPS"``: d1 points
      to the left, d2 posterior, d3 superior), anatomically: ``"right"``,
      ``"left"``, ``"anterior"``, ``"posterior"``, ``"inferior"``, ``"superior"``;
    - with ``slices``, the centroid of the structure in chosen slices along
      ``slice_axis``: a list of indices (named ``"d3=12"`` for index 12 along
      d3), or a number ``n`` of slices spread evenly from the structure's first
      to its last slice (fractions 0, 1/(n-1), ..., 1 of its extent, rounded to
      the nearest slice, half up; named ``"d3@0.50"`` for the middle), which
      correspond between two images of the same structure even if it moved.
      A chosen slice the structure misses raises.

    Landmarks of the same structure in the fixed and the moving image carry
    the same names, so :func:`target_registration_error` pairs them.

    Parameters
    ----------
    label : array ``(d1, d2, d3)`` (or ``(1, d1, d2, d3[, 1])``)
        One structure, probabilities in [0, 1] or bool.
    slices : None, int or sequence of int
    slice_axis : {0, 1, 2}
        The array axis of ``slices`` (0 for d1, 2 for d3).
    orientation : None or str
    threshold : float

    Returns
    -------
    dict name -> ndarray ``(3,)`` float64, in voxels; ``np.stack(list(d.values()))`` gives ``(n, 3)``.

    Raises
    ------
    ValueError
        For a label of another shape, non-finite, or empty; a bad
        ``orientation``, ``slices``, ``slice_axis`` or ``threshold``; a chosen
        slice without the structure.

    Examples
    --------
    >>> label = np.zeros((6, 6, 6)); label[1:4, 2, 2:4] = 1
    >>> points = landmarks_from_label(label, orientation="LPS")
    >>> points["centroid"].tolist(), points["right"].tolist(), points["left"].tolist()
    ([2.0, 2.0, 2.5], [1.0, 2.0, 2.5], [3.0, 2.0, 2.5])
    >>> landmarks_from_label(label, slices=[2, 3])["d3=3"].tolist()
    [2.0, 2.0, 3.0]
    """
    mask = _label_mask(label, threshold)
    names = _extreme_names(orientation)
    if slice_axis not in (0, 1, 2) or isinstance(slice_axis, bool):
        raise ValueError(f"`slice_axis` is {slice_axis!r}; it needs 0, 1 or 2 (d1, d2 or d3).")
    points = {"centroid": _centroid(mask)}
    for axis, (low, high) in enumerate(names):
        present = _occupied(mask, axis)
        points[low], points[high] = _slice_centroid(mask, axis, present[0]), _slice_centroid(mask, axis, present[-1])
    for name, index in ({} if slices is None else _slice_indices(mask, slices, slice_axis)).items():
        if not mask.take(index, axis=slice_axis).any():
            raise ValueError(f"`slices`: the structure has no voxel in slice {index} along d{slice_axis + 1} "
                             f"(it spans slices {_occupied(mask, slice_axis)[[0, -1]].tolist()}).")
        points[name] = _slice_centroid(mask, slice_axis, index)
    return points
