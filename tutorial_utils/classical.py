"""The established tools, run on the course's arrays and returned in its conventions.

elastix (through itk-elastix) is the reference classical registration package;
greedy (PICSL's fast affine and deformable registration, through its Python
package ``picsl_greedy``) is a second one, with NCC and a greedy diffeomorphic
update; scikit-image offers phase correlation (a translation) and TV-L1 optical
flow (a dense field). The chapters and ``benchmarks/bench_classical.py`` compare the
course's TensorFlow recipes with them on the same task, in the same process.

NumPy only at import time: ``itk``, ``SimpleITK``, ``picsl_greedy`` and
``skimage`` are imported inside the functions, and TensorFlow is never imported.

From elastix's transform to the course's ``theta``
--------------------------------------------------
The course works in voxel indices in array order ``(d1, d2, d3)``; elastix in
ITK's physical points. The conversion between the two (axis order reversed,
``p = origin + D S R i``, transforms map fixed points to moving points) has one
home, :mod:`tutorial_utils.geometry`, whose docstring derives it; this module
adds what is particular to elastix:

- elastix writes the ``Direction`` matrix into its parameter maps COLUMN by
  column (``d11 d21 d31 d12 ...``; elastix pull request #1208), whereas ITK's
  ``image.GetDirection()`` is the matrix itself (rows are physical axes);
- elastix's ``AffineTransform`` stores ``TransformParameters = [a11 a12 a13 a21
  ... a33 t1 t2 t3]`` (matrix row by row, then translation) and
  ``CenterOfRotationPoint = c``, and maps a point of the FIXED image to the
  MOVING image (as the course's theta does): ``T(p) = A (p - c) + c + t``, i.e.
  the physical affine ``A p + (c + t - A c)`` that
  :func:`~tutorial_utils.geometry.theta_from_physical_affine` converts;
- ``itk.transformix_deformation_field`` gives, on the fixed grid, the physical
  displacement ``q - p`` in ITK's ``(x, y, z)`` order, which
  :func:`~tutorial_utils.geometry.ddf_from_physical_field` converts to the
  course's DDF (fixed voxels -> moving voxels).

Geometry. The elastix adapters take the fixed and moving images' geometry
(``fixed_geometry=``, ``moving_geometry=``): a
:class:`~tutorial_utils.geometry.Geometry` (e.g. from
:func:`tutorial_utils.images.read_image`), a dict with ``spacing`` (3),
``origin`` (3) and ``direction`` (3x3, ITK's matrix, rows = physical axes), all in
ITK's ``(x, y, z)`` order, or an ITK or SimpleITK image to copy them from (e.g. one read from
a NIfTI file). The two volumes may then lie on different grids. Every
conversion is tested in ``tests/test_classical.py`` against ITK's own mapping
(``itk.AffineTransform``, transformix's resampling and deformation field, the
images' index <-> physical point) on oblique, anisotropic, off-origin images.

From greedy's outputs to the course's theta and DDF
---------------------------------------------------
Checked in greedy's source (github.com/pyushkevich/greedy, ``src/GreedyAPI.cxx``,
``src/AffineTransformUtilities.h``, ``src/WarpFunctors.h``) and in its Python
binding (github.com/pyushkevich/greedy_python, ``src/GreedyPythonBindings.cxx``):

- greedy's affine matrix (the ``-o`` of ``-a`` mode; ``Greedy3D()[name]`` returns
  the same 4x4 array as the file it would write) maps a point of the FIXED image
  to the MOVING image in NIfTI's RAS physical frame, not ITK's LPS: ``q = Q p + b``
  with ``[Q b; 0 1]`` the matrix (``MapAffineToPhysicalRASSpace``:
  ``Q = T_mov A T_fix^-1`` with ``T = diag(-1, -1, 1) D S``, the voxel -> RAS map).
  With ``P = diag(-1, -1, 1)`` (RAS <-> LPS, its own inverse) the ITK
  (LPS) affine is ``A = P Q P``, ``t = P b`` -- exactly greedy's own
  ``MapRASMatrixToITKTransform``, which flips the entries (0, 2), (1, 2), (2, 0),
  (2, 1) and the first two translations -- and
  :func:`~tutorial_utils.geometry.theta_from_physical_affine` converts that;
- greedy's warp (the ``-o`` of deformable mode) is a displacement field on the
  fixed (reference) grid in ITK's LPS millimetres, components ``(x, y, z)``
  (``VoxelToPhysicalWarpFunctor``: the physical point of ``i + u`` minus that of
  ``i``): ``p -> p + w(p)``. With ``-it affine`` it does NOT contain the affine:
  the moving image is read at ``T(p + w(p))`` (the reslice chain ``-r warp
  affine``, ``ReadTransformChain``/``MapRASAffineToPhysicalWarp``), and
  :func:`ddf_from_greedy_warp` composes the two before
  :func:`~tutorial_utils.geometry.ddf_from_physical_field`;
- greedy saves warps rounded to ``-wp`` voxels (default 0.1, also for warps
  returned in memory); the adapters pass ``-wp 0`` so the field is not
  quantised (a 0.1-voxel staircase would show up in the Jacobian and folding
  counts).

Both conversions are tested against greedy's own reslicing: the image greedy
resamples with its matrix (``-rf/-rm/-r``) equals SciPy's resampling with the
converted ``theta``, and the composed field greedy writes (``-rc``) for its warp
and an affine equals :func:`ddf_from_greedy_warp`'s, on oblique, anisotropic
grids (``tests/test_classical.py``). The adapters hand images, the affine and the
warp to greedy and back in memory (``Greedy3D``'s cache), never through files:
in a process where itk-elastix had run, greedy misread a warp FILE (its bundled
ITK and itk's libraries meet in one process), while its in-memory runs were
unaffected (every greedy test also passes after the elastix ones).

Determinism: elastix's random-coordinate sampler draws from a generator with a
fixed default seed, so repeated runs in the same setting give identical
parameters (checked by a test; measured on the chapter 3 task too). Logging to
the console and to files is switched off. greedy draws its initial jitter and
sampling noise from a generator seeded by ``-seed`` (stochastic by default); the
adapters pass ``seed=1``, which makes single-threaded runs repeatable; with
several threads greedy's sums are reduced in varying order and the result
varies from run to run, more than in the last digits (prostate pair: Dice 0.748
then 0.745, fields up to 6 voxels apart); pass ``threads=1`` to repeat a run. Its console output is captured (``-V 0``, and the
binding's ``out``/``err`` streams, and what its L-BFGS line search prints from
C straight to the process's standard output, e.g. "LINE SEARCH FAILED": see
``_process_stdout_into``); it is kept in the result's ``details``.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Dict, Optional

import numpy as np

from .geometry import (Geometry, as_geometry, ddf_from_physical_field, index_to_physical,
                       theta_from_physical_affine)
from .images import _sitk_image
from .results import RegistrationResult

__all__ = [
    "theta_from_itk_affine",
    "ddf_from_itk_field",
    "elastix_affine",
    "elastix_bspline",
    "theta_from_greedy_matrix",
    "ddf_from_greedy_warp",
    "greedy_affine",
    "greedy_deformable",
    "phase_correlation_shift",
    "optical_flow_tvl1",
]

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


def _geometry(spec, name: str) -> Geometry:
    """The checked :class:`~tutorial_utils.geometry.Geometry` of a dict, an ITK image or None."""
    return as_geometry(spec, name)


def theta_from_itk_affine(parameter_map, moving_geometry=None) -> np.ndarray:
    """Convert an elastix ``AffineTransform`` parameter map to the course's ``theta``.

    See the module docstring for the derivation.

    Parameters
    ----------
    parameter_map : mapping
        An elastix transform parameter map (e.g. ``dict(result.GetParameterMap(0))``)
        with ``Transform`` = ``AffineTransform``, ``TransformParameters`` (12),
        ``CenterOfRotationPoint`` (3) and the fixed image's ``Spacing``, ``Origin``,
        ``Direction`` (defaults: 1, 0, identity; ``Direction`` column by column, as
        elastix writes it).
    moving_geometry : Geometry, dict or ITK image, optional
        The moving image's ``"spacing"``, ``"origin"``, ``"direction"`` (ITK's
        (x, y, z) order, ``direction`` the 3x3 matrix, rows = physical axes);
        default: the same as the fixed image's.

    Returns
    -------
    ndarray ``(1, 4, 3)`` float64: fixed voxel (numpy index order) -> moving voxel,
    row vectors ``[i, 1] @ theta``.

    Raises
    ------
    ValueError
        For another transform type, or a parameter with the wrong number of values.

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
    fixed = _geometry({
        "spacing": _values(parameter_map, "Spacing", 3, [1, 1, 1]),
        "origin": _values(parameter_map, "Origin", 3, [0, 0, 0]),
        # elastix writes the direction column by column (elastix PR #1208)
        "direction": _values(parameter_map, "Direction", 9, np.eye(3).ravel()).reshape(3, 3).T,
    }, "the parameter map's fixed geometry")
    moving = fixed if moving_geometry is None else _geometry(moving_geometry, "moving_geometry")
    # T(p) = A (p - c) + c + t = A p + (c + t - A c)
    return theta_from_physical_affine(matrix, centre + translation - matrix @ centre,
                                      fixed_geometry=fixed, moving_geometry=moving)


def _itk_image(volume, geometry):
    import itk

    image = itk.image_view_from_array(volume)  # ITK size (d3, d2, d1): index order reversed
    image.SetSpacing(list(geometry.spacing))
    image.SetOrigin(list(geometry.origin))
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(geometry.direction, np.float64)))
    return image


def _elastix_inputs(fixed, moving, fixed_geometry, moving_geometry):
    """The two volumes (any shapes when their geometry says where they lie) and their geometry."""
    fixed, moving = _volume(fixed, "fixed"), _volume(moving, "moving")
    if fixed.shape != moving.shape and fixed_geometry is None and moving_geometry is None:
        raise ValueError(
            f"`fixed` has shape {fixed.shape} but `moving` has {moving.shape}; without `fixed_geometry` "
            "and `moving_geometry` these wrappers take volumes on the same grid (resample one onto the "
            "other first, or say where each lies)."
        )
    return fixed, moving, _geometry(fixed_geometry, "fixed_geometry"), _geometry(moving_geometry, "moving_geometry")


def _run_elastix(fixed, moving, parameter_maps, threads: Optional[int], geometries):
    import itk

    parameter_object = itk.ParameterObject.New()
    for parameter_map in parameter_maps:
        parameter_object.AddParameterMap(parameter_map)
    fixed_image, moving_image = _itk_image(fixed, geometries[0]), _itk_image(moving, geometries[1])
    method = itk.ElastixRegistrationMethod.New(fixed_image, moving_image)
    method.SetParameterObject(parameter_object)
    method.SetLogToConsole(False)
    method.SetLogToFile(False)
    if threads is not None:
        method.SetNumberOfThreads(int(threads))
    method.UpdateLargestPossibleRegion()
    return method.GetTransformParameterObject(), moving_image


def _as_lists(parameter_map) -> Dict[str, list]:
    return {key: list(value) for key, value in dict(parameter_map).items()}


def elastix_affine(*, fixed, moving, threads: Optional[int] = None, fixed_geometry=None,
                   moving_geometry=None) -> RegistrationResult:
    """elastix with its DEFAULT affine parameter map, as a course ``theta``.

    The default map (``GetDefaultParameterMap("affine")``): Mattes mutual
    information, 2048 random off-grid samples per iteration (new ones each
    iteration), adaptive stochastic gradient descent, 4 smoothing-pyramid
    levels of 256 iterations, parameter scales estimated automatically.

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``
        Same shape, unless their geometry is given.
    threads : int, optional
        Threads elastix may use; default: elastix's own choice (all cores). With
        itk-elastix 0.25.4 an explicit count above 1 crashed the B-spline
        registration (segmentation fault) on the course's machine, so the
        default leaves it alone.
    fixed_geometry, moving_geometry : Geometry, dict or ITK image, optional
        Where each volume lies: ``spacing``, ``origin``, ``direction`` in ITK's
        ``(x, y, z)`` order (see the module docstring); default: unit spacing,
        zero origin, identity direction.

    Returns
    -------
    RegistrationResult
        ``theta`` ``(1, 4, 3)``: fixed voxels (numpy index order) -> moving voxels
        (``warp_grid(grid, theta)`` maps the fixed grid into the moving image),
        ``seconds`` (wall time, image wrapping included), ``method``
        ``"elastix affine"``, ``details["parameter_map"]`` (elastix's result, a dict).

    Raises
    ------
    ValueError
        For volumes that are not 3-D, not finite, of different shapes without
        geometry, or a malformed geometry.
    """
    import itk

    fixed, moving, *geometries = _elastix_inputs(fixed, moving, fixed_geometry, moving_geometry)
    start = time.perf_counter()
    default = itk.ParameterObject.New().GetDefaultParameterMap("affine")
    result, _ = _run_elastix(fixed, moving, [default], threads, geometries)
    parameter_map = _as_lists(result.GetParameterMap(0))
    theta = theta_from_itk_affine(parameter_map, moving_geometry=geometries[1])
    return RegistrationResult(method="elastix affine", seconds=time.perf_counter() - start, theta=theta,
                              details={"parameter_map": parameter_map})


def ddf_from_itk_field(field, *, fixed_geometry=None, moving_geometry=None) -> np.ndarray:
    """Convert a physical displacement field on the fixed grid to the course's DDF in voxels.

    Parameters
    ----------
    field : array ``(d1, d2, d3, 3)``
        ``q - p`` at each fixed voxel (numpy order), components in ITK's ``(x, y, z)``
        order and physical units (e.g. ``itk.transformix_deformation_field``).
    fixed_geometry, moving_geometry : Geometry, dict or ITK image, optional
        As for :func:`elastix_affine`.

    Returns
    -------
    ndarray ``(1, d1, d2, d3, 3)`` float32: moving voxel ``j`` minus fixed voxel ``i``
    (numpy index order), so that ``warp.warp(moving, ddf)`` samples the moving image
    where ITK maps each fixed voxel.

    Examples
    --------
    >>> field = np.zeros((2, 3, 4, 3)); field[..., 0] = 2.0   # 2 mm along ITK x
    >>> grid = {"spacing": [2.0, 1.0, 1.0]}                   # 2 mm voxels along x = numpy's d3
    >>> ddf_from_itk_field(field, fixed_geometry=grid, moving_geometry=grid)[0, 0, 0, 0].tolist()
    [0.0, 0.0, 1.0]
    """
    return ddf_from_physical_field(field, fixed_geometry=_geometry(fixed_geometry, "fixed_geometry"),
                                   moving_geometry=_geometry(moving_geometry, "moving_geometry"))


def elastix_bspline(*, fixed, moving, affine_first: bool = True, threads: Optional[int] = None,
                    fixed_geometry=None, moving_geometry=None) -> RegistrationResult:
    """elastix with its default B-spline map (after its default affine map).

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``
        Same shape, unless their geometry is given.
    affine_first : bool
        Run the default affine map first and the B-spline map on top (elastix's
        usual chain); False runs the B-spline map alone.
    threads : int, optional
        See :func:`elastix_affine` (an explicit count above 1 crashed here).
    fixed_geometry, moving_geometry : Geometry, dict or ITK image, optional
        See :func:`elastix_affine`.

    Returns
    -------
    RegistrationResult
        ``ddf`` ``(1, d1, d2, d3, 3)`` in voxels on the fixed grid, pointing to moving
        voxels (``warp.warp(moving, ddf)``), from ``itk.transformix_deformation_field``
        and :func:`ddf_from_itk_field`; ``seconds`` (registration and field, wall
        time); ``method``; ``details["parameter_maps"]`` (elastix's results, dicts).
    """
    import itk

    fixed, moving, *geometries = _elastix_inputs(fixed, moving, fixed_geometry, moving_geometry)
    start = time.perf_counter()
    defaults = itk.ParameterObject.New()
    maps = [defaults.GetDefaultParameterMap("affine")] if affine_first else []
    maps.append(defaults.GetDefaultParameterMap("bspline"))
    result, moving_image = _run_elastix(fixed, moving, maps, threads, geometries)
    with tempfile.TemporaryDirectory() as folder:  # transformix writes its field file to disk
        field = itk.transformix_deformation_field(
            moving_image, result, output_directory=folder, log_to_console=False
        )
        field = np.array(field, dtype=np.float64)  # on the fixed grid (the map's Size, Spacing, ...)
    ddf = ddf_from_itk_field(field, fixed_geometry=geometries[0], moving_geometry=geometries[1])
    maps = [_as_lists(result.GetParameterMap(i)) for i in range(result.GetNumberOfParameterMaps())]
    name = "elastix affine + B-spline" if affine_first else "elastix B-spline"
    return RegistrationResult(method=name, seconds=time.perf_counter() - start, ddf=ddf,
                              details={"parameter_maps": maps})


# ---------------------------------------------------------------- greedy (PICSL)
#: RAS <-> LPS: NIfTI's x and y axes point the other way from ITK's (its own inverse).
_RAS_LPS = np.diag([-1.0, -1.0, 1.0])


def _lps_affine(matrix) -> tuple:
    """ITK (LPS) ``(A, t)`` of greedy's 4x4 RAS matrix: ``A = P Q P``, ``t = P b``."""
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"greedy's affine has shape {matrix.shape}; it needs a finite 4x4 matrix "
                         "(as greedy writes it, or Greedy3D()[name] returns it).")
    return _RAS_LPS @ matrix[:3, :3] @ _RAS_LPS, _RAS_LPS @ matrix[:3, 3]


def theta_from_greedy_matrix(matrix, *, fixed_geometry=None, moving_geometry=None) -> np.ndarray:
    """Convert greedy's affine matrix (RAS, fixed -> moving) to the course's ``theta``.

    See the module docstring: greedy's matrix ``[Q b; 0 1]`` maps a fixed point to a
    moving point in RAS millimetres; in ITK's LPS frame that is ``A = P Q P``,
    ``t = P b`` with ``P = diag(-1, -1, 1)``.

    Parameters
    ----------
    matrix : array ``(4, 4)``
        What ``greedy -a ... -o file.mat`` writes (a text file of 4 rows) or
        ``Greedy3D()[name]`` returns.
    fixed_geometry, moving_geometry : Geometry, dict or ITK/SimpleITK image, optional
        The grids the registration ran on (see :func:`elastix_affine`); default: unit
        spacing, zero origin, identity direction.

    Returns
    -------
    ndarray ``(1, 4, 3)`` float64: fixed voxel (numpy index order) -> moving voxel,
    ``[i, 1] @ theta``.

    Examples
    --------
    >>> shift = np.eye(4); shift[0, 3] = 3.0          # 3 mm toward the patient's RIGHT (RAS x)
    >>> theta_from_greedy_matrix(shift)[0, 3].tolist()   # = -3 along ITK's x = numpy's last axis
    [0.0, 0.0, -3.0]
    """
    matrix, translation = _lps_affine(matrix)
    return theta_from_physical_affine(matrix, translation, fixed_geometry=_geometry(fixed_geometry, "fixed_geometry"),
                                      moving_geometry=_geometry(moving_geometry, "moving_geometry"))


def ddf_from_greedy_warp(warp, affine=None, *, fixed_geometry=None, moving_geometry=None) -> np.ndarray:
    """The course's DDF of greedy's warp, composed with the affine it was run on (``-it``).

    Parameters
    ----------
    warp : array ``(d1, d2, d3, 3)``
        greedy's deformable output on the fixed grid (``SimpleITK.GetArrayFromImage``
        of ``Greedy3D()[name]``, or of the file ``-o`` writes): ``w(p)``, LPS mm,
        components in ITK's ``(x, y, z)`` order.
    affine : array ``(4, 4)``, optional
        greedy's RAS matrix that the deformable run was given with ``-it``; the
        full map is then ``p -> T(p + w(p))`` (greedy's ``-r warp affine``).
        Default: the warp alone, ``p -> p + w(p)``.
    fixed_geometry, moving_geometry : Geometry, dict or ITK/SimpleITK image, optional
        As for :func:`elastix_affine`.

    Returns
    -------
    ndarray ``(1, d1, d2, d3, 3)`` float32: moving voxel minus fixed voxel (numpy
    index order), for ``warp.warp(moving, ddf)``.

    Examples
    --------
    >>> w = np.zeros((2, 3, 4, 3)); w[..., 0] = 2.0          # 2 mm along ITK x (LPS)
    >>> ddf_from_greedy_warp(w, fixed_geometry={"spacing": [2, 1, 1]},
    ...                      moving_geometry={"spacing": [2, 1, 1]})[0, 0, 0, 0].tolist()
    [0.0, 0.0, 1.0]
    """
    warp = np.asarray(warp, np.float64)
    if warp.ndim != 4 or warp.shape[-1] != 3:
        raise ValueError(f"`warp` has shape {warp.shape}; it needs (d1, d2, d3, 3) (greedy's warp as an array).")
    fixed, moving = _geometry(fixed_geometry, "fixed_geometry"), _geometry(moving_geometry, "moving_geometry")
    field = warp
    if affine is not None:
        matrix, translation = _lps_affine(affine)
        points = index_to_physical(np.indices(warp.shape[:3]).transpose(1, 2, 3, 0), fixed)
        field = (points + warp) @ matrix.T + translation - points
    return ddf_from_physical_field(field, fixed_geometry=fixed, moving_geometry=moving)


def _greedy_flags(threads: Optional[int], seed: int) -> str:
    threads = "" if threads is None else f" -threads {int(threads)}"
    return f"-d 3 -V 0 -seed {int(seed)}{threads}"


def _iterations(iterations) -> str:
    counts = [int(n) for n in np.atleast_1d(iterations)]
    if not counts or min(counts) < 1:  # a level of 0 iterations crashed the process (picsl-greedy 1.4.0.3)
        raise ValueError(f"`iterations` is {iterations!r}; it needs one count (>= 1) per level, coarsest first.")
    return "x".join(str(n) for n in counts)


def _run_greedy(greedy, command: str, **objects) -> str:
    """One ``greedy`` command on in-memory objects; its captured console text."""
    import io

    log = io.StringIO()
    with _process_stdout_into(log):
        greedy.execute(command, out=log, err=log, **objects)
    return log.getvalue()


@contextlib.contextmanager
def _process_stdout_into(log):
    """Send what C code writes to the process's standard output (file descriptor 1)
    into ``log`` for the duration, then restore it.

    greedy's L-BFGS line search reports a failed line search with C's ``printf``,
    past the binding's ``out`` stream; in a notebook that line lands in the cell's
    output. C's buffer is flushed before descriptor 1 is restored, so nothing of
    it appears later. (Descriptor 1 is the process's: Python's own ``print`` from
    another thread during the call would be captured too.)
    """
    import ctypes

    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            log.write(sink.read().decode(errors="replace"))


def _metric_history(greedy) -> Dict[str, list]:
    """greedy's metric log (one value per metric evaluation) and the pyramid level of each."""
    levels = greedy.metric_log()
    metric = [float(v) for level in levels for v in np.ravel(level["TotalPerPixelMetric"])]
    level = [float(k) for k, entries in enumerate(levels) for _ in np.ravel(entries["TotalPerPixelMetric"])]
    return {"metric": metric, "level": level}


_GREEDY_INIT = {"identity": "-ia-identity", "image-centers": "-ia-image-centers"}


def _greedy_affine_command(metric: str, iterations, dof: int, initialization: str, flags: str) -> str:
    if initialization not in _GREEDY_INIT:
        raise ValueError(f"`initialization` is {initialization!r}; it needs one of {sorted(_GREEDY_INIT)}.")
    return (f"{flags} -i fixed_image moving_image -a -dof {int(dof)} -m {metric} "
            f"-n {_iterations(iterations)} {_GREEDY_INIT[initialization]} -o affine_matrix")


def greedy_affine(*, fixed, moving, metric: str = "NCC 2x2x2", iterations=(100, 50, 10), dof: int = 12,
                  initialization: str = "identity", seed: int = 1, threads: Optional[int] = None,
                  fixed_geometry=None, moving_geometry=None) -> RegistrationResult:
    """greedy's affine registration (``-a``) with PICSL's usual settings, as a course ``theta``.

    The command, as in greedy's documentation and PICSL's examples: ``-a -dof 12 -m
    NCC 2x2x2 -n 100x50x10`` (normalised cross-correlation over 5x5x5-voxel
    windows, L-BFGS, three pyramid levels of at most 100, 50 and 10 iterations,
    coarsest first) and ``-ia-identity`` (greedy's default start: the identity in
    physical space, i.e. trust the images' geometry; ``"image-centers"``
    (``-ia-image-centers``) instead matches the two images' centres, the same on
    one grid).

    greedy reads 0 outside the moving image (in affine mode too), so the moving
    image should cover the fixed one: on an oblique pair whose moving grid leaves
    half of the fixed field of view outside, its NCC and SSD affines shrank
    (determinant about 0.2; ``tests/test_classical.py``), where elastix, which
    counts only the overlap, did not.

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``
        Same shape, unless their geometry is given.
    metric : str
        greedy's ``-m`` argument (``"NCC 2x2x2"``, ``"SSD"``, ``"NMI"``, ``"MI"``).
    iterations : sequence of int
        Iterations per pyramid level, coarsest first (``-n``).
    dof : int
        6 (rigid) or 12 (affine).
    initialization : ``"identity"`` or ``"image-centers"``
    seed : int
        ``-seed``: greedy's generator (its start jitter); 0 = greedy's default, a
        new seed every run.
    threads : int, optional
        ``-threads``; default: greedy's (all cores).
    fixed_geometry, moving_geometry : Geometry, dict or ITK/SimpleITK image, optional
        Where each volume lies (see :func:`elastix_affine`); default: unit spacing,
        zero origin, identity direction.

    Returns
    -------
    RegistrationResult
        ``theta`` ``(1, 4, 3)``: fixed voxels -> moving voxels (``warp_grid``'s
        convention), via :func:`theta_from_greedy_matrix`; ``seconds`` (wall time:
        image wrapping, greedy, conversion); ``method`` ``"greedy affine"``;
        ``history`` (greedy's metric per evaluation, ``"level"`` of each);
        ``details``: ``"matrix"`` (greedy's 4x4 RAS matrix), ``"command"``, ``"log"``.

    Raises
    ------
    ValueError
        For volumes that are not 3-D, not finite, of different shapes without
        geometry, a malformed geometry or an unknown ``initialization``.
    """
    from picsl_greedy import Greedy3D

    fixed, moving, *geometries = _elastix_inputs(fixed, moving, fixed_geometry, moving_geometry)
    command = _greedy_affine_command(metric, iterations, dof, initialization, _greedy_flags(threads, seed))
    start = time.perf_counter()
    greedy = Greedy3D()
    log = _run_greedy(greedy, command, fixed_image=_sitk_image(fixed, geometries[0]),
                      moving_image=_sitk_image(moving, geometries[1]), affine_matrix=None)
    matrix = np.array(greedy["affine_matrix"], np.float64)
    theta = theta_from_greedy_matrix(matrix, fixed_geometry=geometries[0], moving_geometry=geometries[1])
    return RegistrationResult(method="greedy affine", seconds=time.perf_counter() - start, theta=theta,
                              history=_metric_history(greedy),
                              details={"matrix": matrix, "command": command, "log": log})


def greedy_deformable(*, fixed, moving, affine_first: bool = True, metric: str = "NCC 2x2x2",
                      iterations=(100, 50, 10), affine_iterations=(100, 50, 10), seed: int = 1,
                      threads: Optional[int] = None, fixed_geometry=None, moving_geometry=None) -> RegistrationResult:
    """greedy's deformable registration (its default mode), after its affine, as a course DDF.

    The commands, as in greedy's documentation and PICSL's examples: the affine of
    :func:`greedy_affine` (``-a -dof 12 -m NCC 2x2x2 -n 100x50x10``), then
    ``-m NCC 2x2x2 -n 100x50x10 -it affine`` with greedy's default regularisation
    (``-s 1.732vox 0.7071vox``: Gaussian smoothing of the update and of the
    field, greedy's defaults) and ``-wp 0`` (the warp not rounded, see the module
    docstring). Both run in one ``Greedy3D`` object, the affine handed over in
    memory.

    Parameters
    ----------
    fixed, moving : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``
        Same shape, unless their geometry is given.
    affine_first : bool
        Run the affine first and the deformable stage on top (``-it``); False runs
        the deformable stage alone (from the identity in physical space).
    metric : str
        ``-m`` of both stages.
    iterations, affine_iterations : sequence of int
        Iterations per pyramid level, coarsest first, of the deformable and the
        affine stage.
    seed, threads, fixed_geometry, moving_geometry
        See :func:`greedy_affine`.

    Returns
    -------
    RegistrationResult
        ``ddf`` ``(1, d1, d2, d3, 3)`` in voxels on the fixed grid, pointing to moving
        voxels (``warp.warp(moving, ddf)``): the affine and the warp composed,
        :func:`ddf_from_greedy_warp`; ``seconds`` (wall time of both stages and the
        conversion); ``method``; ``history`` (the deformable stage's metric per
        iteration, ``"level"`` of each); ``details``: ``"matrix"`` (the affine, RAS,
        or None), ``"stage_seconds"``, ``"commands"``, ``"log"``.
    """
    import SimpleITK as sitk
    from picsl_greedy import Greedy3D

    fixed, moving, *geometries = _elastix_inputs(fixed, moving, fixed_geometry, moving_geometry)
    flags = _greedy_flags(threads, seed)
    commands = [_greedy_affine_command(metric, affine_iterations, 12, "identity", flags)] if affine_first else []
    commands.append(f"{flags} -i fixed_image moving_image{' -it affine_matrix' if affine_first else ''} "
                    f"-m {metric} -n {_iterations(iterations)} -wp 0 -o warp_field")
    start = time.perf_counter()
    greedy, stage_seconds, log = Greedy3D(), [], ""
    images = {"fixed_image": _sitk_image(fixed, geometries[0]), "moving_image": _sitk_image(moving, geometries[1]),
              "affine_matrix": None, "warp_field": None}
    for command in commands:
        log += _run_greedy(greedy, command, **images)
        images = {}  # the images and the affine stay in the object's cache
        stage_seconds.append(time.perf_counter() - start - sum(stage_seconds))
    matrix = np.array(greedy["affine_matrix"], np.float64) if affine_first else None
    warp = sitk.GetArrayFromImage(greedy["warp_field"])
    ddf = ddf_from_greedy_warp(warp, matrix, fixed_geometry=geometries[0], moving_geometry=geometries[1])
    name = "greedy affine + deformable" if affine_first else "greedy deformable"
    return RegistrationResult(method=name, seconds=time.perf_counter() - start, ddf=ddf,
                              history=_metric_history(greedy),
                              details={"matrix": matrix, "stage_seconds": stage_seconds, "commands": commands,
                                       "log": log})


def phase_correlation_shift(*, fixed, moving, as_ddf: bool = False, upsample_factor: int = 10) -> RegistrationResult:
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
    RegistrationResult
        ``theta`` ``(1, 4, 3)`` (identity linear part), or, if ``as_ddf``, ``ddf``
        ``(1, d1, d2, d3, 3)`` (the same translation everywhere; ``theta`` then in
        ``details``); ``details["shift"]`` ``(3,)`` (voxels, index order, the course's
        sign); ``seconds``; ``method`` ``"phase correlation"``.

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.zeros((16, 16, 16), np.float32); fixed[6:10, 5:9, 7:11] = 1
    >>> moving = np.roll(fixed, 2, axis=1)        # moving(x) = fixed(x - 2 e2)
    >>> phase_correlation_shift(fixed=fixed, moving=moving).details["shift"].round(2).tolist()
    [0.0, 2.0, 0.0]
    """
    from skimage.registration import phase_cross_correlation

    fixed, moving = _pair(fixed, moving)
    start = time.perf_counter()
    shift, _, _ = phase_cross_correlation(fixed, moving, upsample_factor=int(upsample_factor))
    translation = -np.asarray(shift, np.float64) + 0.0
    theta = np.concatenate([np.eye(3), translation[None]], axis=0)[None].astype(np.float32)
    details = {"shift": translation}
    if as_ddf:
        details["theta"] = theta
        ddf = np.broadcast_to(translation.astype(np.float32), (1,) + fixed.shape + (3,)).copy()
        return RegistrationResult(method="phase correlation", seconds=time.perf_counter() - start, ddf=ddf,
                                  details=details)
    return RegistrationResult(method="phase correlation", seconds=time.perf_counter() - start, theta=theta,
                              details=details)


def optical_flow_tvl1(*, fixed, moving, **options) -> RegistrationResult:
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
    RegistrationResult
        ``ddf`` ``(1, d1, d2, d3, 3)`` (voxels), ``seconds``, ``method`` ``"TV-L1 optical flow"``.
    """
    from skimage.registration import optical_flow_tvl1 as tvl1

    fixed, moving = _pair(fixed, moving)
    start = time.perf_counter()
    flow = tvl1(fixed, moving, **options)
    ddf = np.moveaxis(np.asarray(flow, np.float32), 0, -1)[None]
    return RegistrationResult(method="TV-L1 optical flow", seconds=time.perf_counter() - start, ddf=ddf)
