"""The established tools, run on the course's arrays and returned in its conventions.

elastix (through itk-elastix) is the reference classical registration package;
scikit-image offers phase correlation (a translation) and TV-L1 optical flow
(a dense field). The chapters and ``benchmarks/bench_classical.py`` compare the
course's TensorFlow recipes with them on the same task, in the same process.

NumPy only at import time: ``itk`` and ``skimage`` are imported inside the
functions, and TensorFlow is never imported.

From elastix's transform to the course's ``theta``
--------------------------------------------------
The course works in voxel indices in array order ``(d1, d2, d3)``: an affine
``theta`` (4, 3) maps a fixed voxel ``i`` (row vector) to the moving position
``[i, 1] @ theta``, and the warped image is the moving one sampled there.

ITK differs in three ways.

1. Axis order. ``itk.image_view_from_array`` of an array ``(d1, d2, d3)`` gives
   an ITK image of size ``(d3, d2, d1)``: ITK's ``(x, y, z)`` index is the
   numpy index reversed, ``i_itk = R i`` with ``R`` the 3x3 reversal matrix.
2. Physical space. A voxel index ``i_itk`` lies at the physical point
   ``p = origin + direction @ diag(spacing) @ i_itk`` (column vectors).
3. The transform acts on physical points. elastix's ``AffineTransform``
   stores ``TransformParameters = [a11 a12 a13 a21 ... a33 t1 t2 t3]`` (matrix
   row by row, then translation) and ``CenterOfRotationPoint = c``, and maps a
   point of the FIXED image to the MOVING image (as the course's theta does):
   ``T(p) = A (p - c) + c + t``.

So, for a fixed voxel ``i``: ``p = o_f + D_f S_f R i``, ``q = T(p)``, and the
moving voxel is ``j = R S_m^-1 D_m^-1 (q - o_m)``. Collecting terms,
``j = M i + b`` with ``M = R S_m^-1 D_m^-1 A D_f S_f R`` and
``b = R S_m^-1 D_m^-1 (A (o_f - c) + c + t - o_m)``; in the course's row-vector
form ``theta = [M^T; b]``. The images the course hands to elastix have unit
spacing, zero origin and identity direction, so there ``M = R A R`` and
``b = R (c + t - A c)``. Both the axis reversal and the direction of the
mapping are tested in ``tests/test_classical.py`` (a hand-built parameter map
against ``scipy.ndimage.affine_transform``, and a known affine recovered by elastix).

Dense fields follow the same rule: ``itk.transformix_deformation_field`` gives,
on the fixed grid, the physical displacement ``q - p`` in ITK's ``(x, y, z)``
order; reversing the last axis and dividing by the spacing gives the course's
DDF in voxels (unit spacing here).

Determinism: elastix's random-coordinate sampler draws from a generator with a
fixed default seed, so repeated runs in the same setting give identical
parameters (checked by a test; measured on the chapter 3 task too). Logging to
the console and to files is switched off.
"""
from __future__ import annotations

import tempfile
import time
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = [
    "theta_from_itk_affine",
    "elastix_affine",
    "elastix_bspline",
    "phase_correlation_shift",
    "optical_flow_tvl1",
]

_REVERSE = np.eye(3)[::-1]


def _volume(array, name: str) -> np.ndarray:
    volume = np.asarray(array, dtype=np.float32)
    if volume.ndim == 4 and volume.shape[0] == 1:
        volume = volume[0]
    if volume.ndim != 3:
        raise ValueError(
            f"`{name}` has shape {np.shape(array)}; it needs (d1, d2, d3) or (1, d1, d2, d3)."
        )
    if not np.all(np.isfinite(volume)):
        raise ValueError(f"`{name}` contains NaN or infinite values; clean it before registering.")
    return np.ascontiguousarray(volume)


def _pair(fixed, moving):
    fixed, moving = _volume(fixed, "fixed"), _volume(moving, "moving")
    if fixed.shape != moving.shape:
        raise ValueError(
            f"`fixed` has shape {fixed.shape} but `moving` has {moving.shape}; these wrappers "
            "take volumes on the same grid (resample one onto the other first)."
        )
    return fixed, moving


def _values(parameter_map, key: str, count: int, default=None) -> np.ndarray:
    if key not in parameter_map:
        if default is None:
            raise ValueError(f"the parameter map has no {key!r}; it is needed to convert the transform.")
        return np.asarray(default, np.float64)
    values = np.asarray([float(v) for v in parameter_map[key]], np.float64)
    if values.size != count:
        raise ValueError(f"{key!r} has {values.size} values in the parameter map; expected {count}.")
    return values


def theta_from_itk_affine(parameter_map, moving_geometry: Optional[Dict[str, Sequence[float]]] = None) -> np.ndarray:
    """Convert an elastix ``AffineTransform`` parameter map to the course's ``theta``.

    See the module docstring for the derivation.

    Parameters
    ----------
    parameter_map : mapping
        An elastix transform parameter map (e.g. ``dict(result.GetParameterMap(0))``)
        with ``Transform`` = ``AffineTransform``, ``TransformParameters`` (12),
        ``CenterOfRotationPoint`` (3) and the fixed image's ``Spacing``, ``Origin``,
        ``Direction`` (defaults: 1, 0, identity).
    moving_geometry : dict, optional
        The moving image's ``"spacing"``, ``"origin"``, ``"direction"`` (ITK order,
        direction row by row); default: the same as the fixed image's.

    Returns
    -------
    ndarray ``(1, 4, 3)`` float64: fixed voxel (numpy index order) -> moving voxel,
    row vectors ``[i, 1] @ theta``.

    Examples
    --------
    >>> shift = {"Transform": ["AffineTransform"],
    ...          "TransformParameters": "1 0 0 0 1 0 0 0 1 3 0 0".split(),
    ...          "CenterOfRotationPoint": ["0", "0", "0"]}
    >>> theta_from_itk_affine(shift)[0, 3].tolist()   # ITK x is numpy's last axis
    [0.0, 0.0, 3.0]
    """
    kind = parameter_map.get("Transform", ["AffineTransform"])
    kind = kind[0] if isinstance(kind, (list, tuple)) else kind
    if kind != "AffineTransform":
        raise ValueError(f"the parameter map's Transform is {kind!r}; only 'AffineTransform' is converted.")
    parameters = _values(parameter_map, "TransformParameters", 12)
    matrix, translation = parameters[:9].reshape(3, 3), parameters[9:]
    centre = _values(parameter_map, "CenterOfRotationPoint", 3, [0, 0, 0])
    fixed = {
        "spacing": _values(parameter_map, "Spacing", 3, [1, 1, 1]),
        "origin": _values(parameter_map, "Origin", 3, [0, 0, 0]),
        "direction": _values(parameter_map, "Direction", 9, np.eye(3).ravel()).reshape(3, 3),
    }
    moving = dict(fixed)
    for key, value in (moving_geometry or {}).items():
        moving[key] = np.asarray(value, np.float64).reshape(3, 3) if key == "direction" else np.asarray(value, np.float64)
    index_to_point = fixed["direction"] @ np.diag(fixed["spacing"]) @ _REVERSE
    point_to_index = _REVERSE @ np.diag(1.0 / moving["spacing"]) @ np.linalg.inv(moving["direction"])
    linear = point_to_index @ matrix @ index_to_point
    offset = point_to_index @ (matrix @ (fixed["origin"] - centre) + centre + translation - moving["origin"])
    return np.concatenate([linear.T, offset[None]], axis=0)[None]


def _itk_image(volume):
    import itk

    return itk.image_view_from_array(volume)  # unit spacing, zero origin, identity direction


def _run_elastix(fixed, moving, parameter_maps, threads: Optional[int]):
    import itk

    parameter_object = itk.ParameterObject.New()
    for parameter_map in parameter_maps:
        parameter_object.AddParameterMap(parameter_map)
    fixed_image, moving_image = _itk_image(fixed), _itk_image(moving)
    method = itk.ElastixRegistrationMethod.New(fixed_image, moving_image)
    method.SetParameterObject(parameter_object)
    method.SetLogToConsole(False)
    method.SetLogToFile(False)
    if threads is not None:
        method.SetNumberOfThreads(int(threads))
    method.UpdateLargestPossibleRegion()
    return method.GetTransformParameterObject(), moving_image


def elastix_affine(*, fixed, moving, threads: Optional[int] = None) -> Dict[str, object]:
    """elastix with its DEFAULT affine parameter map, as a course ``theta``.

    The default map (``GetDefaultParameterMap("affine")``): Mattes mutual
    information, 2048 random off-grid samples per iteration (new ones each
    iteration), adaptive stochastic gradient descent, 4 smoothing-pyramid
    levels of 256 iterations, parameter scales estimated automatically.

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``, same shape.
    threads : int, optional
        Threads elastix may use; default: elastix's own choice (all cores). With
        itk-elastix 0.25.4 an explicit count above 1 crashed the B-spline
        registration (segmentation fault) on the course's machine, so the
        default leaves it alone.

    Returns
    -------
    dict with ``theta`` ``(1, 4, 3)`` float32 (``warp_grid(grid, theta)`` maps the
    fixed grid into the moving image), ``seconds`` (wall time, image wrapping
    included) and ``parameter_map`` (elastix's result, a dict).
    """
    import itk

    fixed, moving = _pair(fixed, moving)
    start = time.perf_counter()
    default = itk.ParameterObject.New().GetDefaultParameterMap("affine")
    result, _ = _run_elastix(fixed, moving, [default], threads)
    parameter_map = {key: list(value) for key, value in dict(result.GetParameterMap(0)).items()}
    theta = theta_from_itk_affine(parameter_map).astype(np.float32)
    return {"theta": theta, "seconds": time.perf_counter() - start, "parameter_map": parameter_map}


def elastix_bspline(*, fixed, moving, affine_first: bool = True, threads: Optional[int] = None) -> Dict[str, object]:
    """elastix with its default B-spline map (after its default affine map).

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``, same shape.
    affine_first : bool
        Run the default affine map first and the B-spline map on top (elastix's
        usual chain); False runs the B-spline map alone.
    threads : int, optional
        See :func:`elastix_affine` (an explicit count above 1 crashed here).

    Returns
    -------
    dict with ``ddf`` ``(1, d1, d2, d3, 3)`` float32 in voxels on the fixed grid
    (the course's convention: warped = moving sampled at ``grid + ddf``), obtained
    from ``itk.transformix_deformation_field``, and ``seconds`` (registration and
    field, wall time).
    """
    import itk

    fixed, moving = _pair(fixed, moving)
    start = time.perf_counter()
    defaults = itk.ParameterObject.New()
    maps = [defaults.GetDefaultParameterMap("affine")] if affine_first else []
    maps.append(defaults.GetDefaultParameterMap("bspline"))
    result, moving_image = _run_elastix(fixed, moving, maps, threads)
    with tempfile.TemporaryDirectory() as folder:  # transformix writes its field file to disk
        field = itk.transformix_deformation_field(
            moving_image, result, output_directory=folder, log_to_console=False
        )
        field = np.array(field, dtype=np.float32)
    ddf = np.asarray(field, dtype=np.float32)[..., ::-1]  # ITK (x, y, z) -> (d1, d2, d3); unit spacing
    return {"ddf": np.ascontiguousarray(ddf)[None], "seconds": time.perf_counter() - start}


def phase_correlation_shift(*, fixed, moving, as_ddf: bool = False, upsample_factor: int = 10) -> Dict[str, object]:
    """The translation that best aligns ``moving`` to ``fixed``, by phase correlation.

    ``skimage.registration.phase_cross_correlation(fixed, moving)`` returns the
    shift ``s`` such that ``scipy.ndimage.shift(moving, s)`` matches ``fixed``,
    i.e. ``warped(x) = moving(x - s)``: in the course's convention a translation
    of ``-s``. A quick initialiser for the affine or nonrigid recipes.

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``, same shape.
    as_ddf : bool
        Also return the translation as a constant DDF ``(1, d1, d2, d3, 3)``.
    upsample_factor : int
        Sub-voxel precision 1 / upsample_factor.

    Returns
    -------
    dict with ``theta`` ``(1, 4, 3)`` float32 (identity linear part), ``shift``
    ``(3,)`` (voxels, index order, the course's sign), ``seconds``, and ``ddf``
    if ``as_ddf``.

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.zeros((16, 16, 16), np.float32); fixed[6:10, 5:9, 7:11] = 1
    >>> moving = np.roll(fixed, 2, axis=1)        # moving(x) = fixed(x - 2 e2)
    >>> phase_correlation_shift(fixed=fixed, moving=moving)["shift"].round(2).tolist()
    [0.0, 2.0, 0.0]
    """
    from skimage.registration import phase_cross_correlation

    fixed, moving = _pair(fixed, moving)
    start = time.perf_counter()
    shift, _, _ = phase_cross_correlation(fixed, moving, upsample_factor=int(upsample_factor))
    translation = -np.asarray(shift, np.float64) + 0.0
    theta = np.concatenate([np.eye(3), translation[None]], axis=0)[None].astype(np.float32)
    result = {"theta": theta, "shift": translation, "seconds": time.perf_counter() - start}
    if as_ddf:
        result["ddf"] = np.broadcast_to(translation.astype(np.float32), (1,) + fixed.shape + (3,)).copy()
    return result


def optical_flow_tvl1(*, fixed, moving, **options) -> Dict[str, object]:
    """TV-L1 optical flow (scikit-image) on 3-D volumes, as a course DDF.

    ``skimage.registration.optical_flow_tvl1(fixed, moving)`` returns ``flow``
    ``(3, d1, d2, d3)`` such that ``moving`` sampled at ``grid + flow`` matches
    ``fixed``: the course's convention with the component axis moved last.

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``, same shape.
    **options
        Passed to scikit-image (``attachment``, ``tightness``, ``num_warp``,
        ``num_iter``, ``tol``, ``prefilter``).

    Returns
    -------
    dict with ``ddf`` ``(1, d1, d2, d3, 3)`` float32 (voxels) and ``seconds``.
    """
    from skimage.registration import optical_flow_tvl1 as tvl1

    fixed, moving = _pair(fixed, moving)
    start = time.perf_counter()
    flow = tvl1(fixed, moving, **options)
    ddf = np.moveaxis(np.asarray(flow, np.float32), 0, -1)[None]
    return {"ddf": np.ascontiguousarray(ddf), "seconds": time.perf_counter() - start}
