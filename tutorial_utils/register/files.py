"""Register two image FILES, in millimetres, and write what 3D Slicer and ITK-SNAP open.

:func:`register_files` is the course's pipeline (:func:`~tutorial_utils.register.register_affine`,
then :func:`~tutorial_utils.register.register_nonrigid` on top of it) for a
student's own scans; ``python -m tutorial_utils.register`` (:mod:`tutorial_utils.register.cli`)
is the same function on the command line, and the appendix chapter
"Your own images" walks through it.

Why an isotropic registration grid
----------------------------------
The course's registration works in voxels: the two arrays must have one shape,
and its regulariser (bending energy), folding penalty and folding count take
derivatives per voxel. On real scans that is wrong twice: the two files cover
different fields of view on different grids, and a 3.6 mm x 0.6 mm x 0.6 mm
voxel makes one voxel step along d1 six times longer than along d2, so a
"smooth" field in voxels is not smooth in millimetres. The course's way to be
right in millimetres is explicit: resample BOTH images onto ONE grid in
physical space, with isotropic voxels (the fixed image's field of view, its
direction, voxels of the fixed image's finest spacing or ``spacing=`` mm), the
moving image through the identity transform in physical space (ITK's
``Resample``: linear for images, nearest neighbour for labels, 0 outside).
On that grid a voxel is the same length along every axis and the same point
in both images, so every voxel-based quantity (regularisation, folding, the
affine's parameters) is a physical one up to one scale factor.

The result is then expressed back on the ORIGINAL fixed image's grid as the
transform ``T`` from fixed physical points to moving physical points (ITK's
convention, :mod:`tutorial_utils.geometry`): the affine part is linear, so it
is carried exactly; the nonrigid rest is interpolated (trilinear, edge values
repeated) at each original fixed voxel's point.

Files written into ``out_dir``: ``affine.tfm`` (ITK ``AffineTransform``, fixed
mm -> moving mm: the affine stage alone), ``ddf.nii.gz`` (ITK displacement
field in mm on the original fixed grid, affine included: the whole
registration), ``warped_moving.nii.gz`` (the moving file resampled onto the
fixed grid by SimpleITK through that field, original intensities),
``warped_moving_label.nii.gz`` (with ``moving_label``: nearest neighbour) and
``report.json`` (settings, seconds per phase, Dice and HD95 in mm in the fixed
file's frame, folding).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..geometry import Geometry, index_to_physical, physical_to_index
from ..images import _sitk_image, read_image, read_label, write_affine, write_ddf, write_image
from ..progress import ProgressBar

__all__ = ["register_files", "registration_grid", "SETTINGS", "OUTPUTS", "MAX_GRID_VOXELS"]

#: The course's defaults (full) and the quick ones (``quick=True``); ``downscale=2``
#: on every axis, since the registration grid is isotropic.
SETTINGS = {
    "full": {"affine": {"sigmas": (4.0, 2.0, 1.0, 0.5), "iterations": (5, 5, 5, 30)},
             "nonrigid": {"levels": 3, "downscale": 2.0, "iterations": (300, 300, 0)}},
    "quick": {"affine": {"sigmas": (4.0, 2.0, 1.0, 0.5), "iterations": (3, 3, 3, 10)},
              "nonrigid": {"levels": 3, "downscale": 2.0, "iterations": (60, 30, 0)}},
}
#: What :func:`register_files` writes, by key.
OUTPUTS = {"affine": "affine.tfm", "ddf": "ddf.nii.gz", "warped": "warped_moving.nii.gz",
           "warped_label": "warped_moving_label.nii.gz", "report": "report.json"}
#: The largest registration grid accepted (voxels): 256^3, a few GB while optimising.
MAX_GRID_VOXELS = 256 ** 3
_PHASES = ("read", "resample", "affine", "nonrigid", "write", "evaluate")


# ----------------------------------------------------------------------------- the grid
def registration_grid(geometry: Geometry, shape, spacing: Optional[float] = None):
    """The isotropic grid over a volume's field of view: ``(Geometry, shape)``.

    Same direction and centre as ``geometry``'s volume; ``m_k = max(1,
    round(n_k s_k / s))`` voxels of ``s`` mm along each ITK axis ``k``, so the
    new box (``m_k s`` mm) matches the volume's (``n_k s_k`` mm) to half a voxel.

    Parameters
    ----------
    geometry : Geometry
        The (fixed) volume's geometry.
    shape : sequence of 3 int
        Its array shape ``(d1, d2, d3)``.
    spacing : float, optional
        Voxel size in mm; default the volume's finest spacing.

    Returns
    -------
    (Geometry, tuple of 3 int) : the grid's geometry and array shape ``(d1, d2, d3)``.

    Raises
    ------
    ValueError
        For a ``spacing`` that is not a positive finite number.

    Examples
    --------
    >>> grid, shape = registration_grid(Geometry(spacing=(0.5, 0.5, 2.0)), (10, 40, 40))
    >>> grid.spacing, shape, grid.origin        # 10 slices of 2 mm -> 40 of 0.5 mm
    ((0.5, 0.5, 0.5), (40, 40, 40), (0.0, 0.0, -0.75))
    """
    size = np.asarray(shape, np.float64)[::-1]  # ITK's (x, y, z)
    old = np.asarray(geometry.spacing, np.float64)
    new = float(old.min() if spacing is None else spacing)
    if not np.isfinite(new) or new <= 0:
        raise ValueError(f"`spacing` is {spacing!r}; it needs a positive number of mm.")
    count = np.maximum(1, np.round(size * old / new)).astype(int)
    direction = np.asarray(geometry.direction)
    centre = np.asarray(geometry.origin) + direction @ ((size - 1) / 2 * old)
    origin = centre - direction @ ((count - 1) / 2 * new)
    grid = Geometry(spacing=(new,) * 3, origin=tuple(origin), direction=geometry.direction)
    return grid, tuple(int(c) for c in count[::-1])


def _resample(array, geometry, grid: Geometry, shape, label: bool = False) -> np.ndarray:
    """``array`` (on ``geometry``) resampled onto ``grid`` through the identity in mm (0 outside)."""
    import SimpleITK as sitk

    reference = _sitk_image(np.zeros(shape, np.uint8), grid)
    image = _sitk_image(np.asarray(array, np.uint8 if label else np.float32), geometry)
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    pixel = sitk.sitkUInt8 if label else sitk.sitkFloat32
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(3, sitk.sitkIdentity),
                                                interpolator, 0.0, pixel))


def _normalised(array: np.ndarray, name: str) -> np.ndarray:
    """Robustly to [0, 1]: the 1st and 99th percentiles map to 0 and 1, clipped."""
    low, high = np.percentile(array, [1.0, 99.0])
    if not high > low:
        low, high = float(array.min()), float(array.max())
    if not high > low:
        raise ValueError(f"{name} is constant ({low}); there is nothing to register.")
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- inputs
def _read_pair(image_path, label_path, role: str):
    """``(Volume, label array or None)``; the label must lie on its image's grid."""
    volume = read_image(image_path)
    if label_path is None:
        return volume, None
    label = read_label(label_path)
    same_grid = (label.array.shape == volume.array.shape
                 and np.allclose(label.geometry.spacing, volume.geometry.spacing, rtol=1e-4, atol=1e-4)
                 and np.allclose(label.geometry.origin, volume.geometry.origin, atol=1e-3)
                 and np.allclose(label.geometry.direction, volume.geometry.direction, atol=1e-4))
    if not same_grid:
        raise ValueError(
            f"the {role} label {str(label_path)!r} lies on another grid than its image {str(image_path)!r} "
            f"(label: shape {label.array.shape}, spacing {label.geometry.spacing}, origin "
            f"{label.geometry.origin}; image: shape {volume.array.shape}, spacing {volume.geometry.spacing}, "
            f"origin {volume.geometry.origin}); resample the label onto its image first.")
    return volume, label.array


def _targets(out_dir, with_label: bool, force: bool) -> dict:
    """The output paths; FileExistsError naming those that exist (unless ``force``)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"`out_dir` is {str(out_dir)!r}, which is a file; it needs a folder.")
    targets = {key: out_dir / name for key, name in OUTPUTS.items() if with_label or key != "warped_label"}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exist(s) already; pass force=True (--force) to replace.")
    return targets


# ----------------------------------------------------------------------------- back to the fixed grid
def _transform_on_fixed(theta, ddf, grid: Geometry, fixed: Geometry, shape) -> np.ndarray:
    """``T(p)`` (mm, ITK x, y, z) at each original fixed voxel ``(d1, d2, d3, 3)`` float64.

    ``ddf`` (registration-grid voxels, affine ``theta`` included) = affine part +
    rest; the affine part is applied exactly, the rest sampled trilinearly
    (edge values repeated) at each fixed voxel's registration-grid index.
    """
    from scipy.ndimage import map_coordinates

    theta = np.asarray(theta, np.float64).reshape(4, 3)
    ddf = np.asarray(ddf, np.float64).reshape(ddf.shape[-4:])
    axes = [np.arange(n, dtype=np.float64) for n in ddf.shape[:3]]
    grid_index = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    rest = ddf - (grid_index @ theta[:3] + theta[3] - grid_index)
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    fixed_index = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    at = physical_to_index(index_to_physical(fixed_index, fixed), grid)  # registration-grid index
    sampled = np.stack([map_coordinates(rest[..., k], np.moveaxis(at, -1, 0), order=1, mode="nearest")
                        for k in range(3)], -1)
    return index_to_physical(at @ theta[:3] + theta[3] + sampled, grid)


def _fixed_index(shape) -> np.ndarray:
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1)


def _resample_through(moving_array, moving_geometry, field_path, fixed_volume, label: bool) -> np.ndarray:
    """SimpleITK's own resampling of the moving volume onto the fixed grid through the saved field file."""
    import SimpleITK as sitk

    moving = _sitk_image(np.asarray(moving_array, np.uint8 if label else np.float32), moving_geometry)
    transform = sitk.DisplacementFieldTransform(sitk.ReadImage(str(field_path), sitk.sitkVectorFloat64))
    reference = _sitk_image(np.zeros(fixed_volume.array.shape, np.uint8), fixed_volume.geometry)
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    return sitk.GetArrayFromImage(sitk.Resample(moving, reference, transform, interpolator, 0.0,
                                                moving.GetPixelID()))


# ----------------------------------------------------------------------------- the workflow
def _register_on_grid(fixed, moving, settings: dict, progress: bool, clock: dict):
    """Affine, then nonrigid on top of it: ``(theta, ddf)`` in registration-grid voxels."""
    from .affine import register_affine
    from .nonrigid import register_nonrigid

    start = time.perf_counter()
    theta = np.concatenate([np.eye(3), np.zeros((1, 3))])[None].astype(np.float32)
    if settings["affine"] is not None:
        theta = register_affine(fixed=fixed[None], moving=moving[None], seed=0, progress=progress,
                                **settings["affine"]).theta
    clock["affine"] = time.perf_counter() - start
    start = time.perf_counter()
    nonrigid = register_nonrigid(fixed=fixed[None], moving=moving[None], initial_theta=theta,
                                 seed=0, progress=progress, **settings["nonrigid"])
    clock["nonrigid"] = time.perf_counter() - start
    return theta, nonrigid.ddf


def _scores(mapped, fixed_volume, fixed_label, moving_volume, moving_label) -> dict:
    """Dice and HD95 (mm) in the fixed file's frame, before (identity in mm) and after."""
    from .. import metrics

    index = _fixed_index(fixed_volume.array.shape)
    spacing = tuple(reversed(fixed_volume.geometry.spacing))  # (d1, d2, d3)
    scores = {}
    for when, points in (("before", index_to_physical(index, fixed_volume.geometry)), ("after", mapped)):
        ddf = physical_to_index(points, moving_volume.geometry) - index
        row = metrics.evaluate_registration(ddf, fixed_label=(fixed_label > 0).astype(np.float32),
                                            moving_label=(moving_label > 0).astype(np.float32),
                                            spacing=spacing)
        scores[f"dice_{when}"] = float(row["dice"])
        scores[f"hd95_mm_{when}"] = float(row["hd95"]) if np.isfinite(row["hd95"]) else None  # empty label
    return scores


def _write_results(targets, theta, mapped, grid, fixed_volume, moving_volume, moving_label, force):
    """The files: affine, field (mm, fixed grid), and SimpleITK's resampling through the saved field."""
    write_affine(targets["affine"], theta, fixed_geometry=grid, moving_geometry=grid, overwrite=force)
    index = _fixed_index(fixed_volume.array.shape)
    ddf = physical_to_index(mapped, moving_volume.geometry) - index  # original voxels, float64
    write_ddf(targets["ddf"], ddf, fixed_geometry=fixed_volume.geometry,
              moving_geometry=moving_volume.geometry, overwrite=force)
    warped = _resample_through(moving_volume.array, moving_volume.geometry, targets["ddf"], fixed_volume, False)
    write_image(targets["warped"], warped, fixed_volume.geometry, overwrite=force)
    if moving_label is not None:
        label = _resample_through(moving_label, moving_volume.geometry, targets["ddf"], fixed_volume, True)
        write_image(targets["warped_label"], label, fixed_volume.geometry, label=True, overwrite=force)


def register_files(fixed_path, moving_path, out_dir, *, fixed_label=None, moving_label=None,
                   spacing: Optional[float] = None, quick: bool = False, affine: bool = True,
                   force: bool = False, progress: bool = True) -> dict:
    """Register two image files (affine, then nonrigid) in millimetres; write the results.

    The moving image is registered to the fixed one on an isotropic grid over
    the fixed image's field of view (module docstring: why); the result is
    written for the ORIGINAL fixed grid (see :data:`OUTPUTS`): ``affine.tfm``,
    ``ddf.nii.gz`` (fixed mm -> moving mm, affine included), ``warped_moving.nii.gz``,
    ``warped_moving_label.nii.gz`` (given ``moving_label``) and ``report.json``.
    Intensities are scaled robustly to [0, 1] for the registration only.

    Parameters
    ----------
    fixed_path, moving_path : str or Path
        Any 3-D scalar image SimpleITK reads (NIfTI, NRRD, MHA, a DICOM folder).
    out_dir : str or Path
        Created if missing.
    fixed_label, moving_label : str or Path, optional
        Label maps on their image's grid; with both, Dice and HD95 (mm) of the
        foreground (label > 0) before and after are reported.
    spacing : float, optional
        The registration grid's voxel size in mm (default: the fixed image's finest spacing).
    quick : bool
        Fewer iterations (:data:`SETTINGS` ``"quick"``), for a first look and for tests.
    affine : bool
        Run the affine stage first (default). ``False``: start the nonrigid stage
        from the scanner's placement (the identity in mm), e.g. for two patients'
        scans, where the affine stage's SSD may shrink one image onto the other;
        ``affine.tfm`` is then the identity.
    force : bool
        Replace existing output files (default: refuse).
    progress : bool
        Show progress over the phases (and each registration level).

    Returns
    -------
    dict
        The report written to ``report.json``: ``settings``, ``grid`` (spacing,
        shape), ``seconds`` per phase, ``folding_percent`` (registration grid),
        Dice/HD95 before and after (with both labels), ``files``.

    Raises
    ------
    FileExistsError
        For output files that exist, all named, without ``force``.
    FileNotFoundError, OSError
        For a missing or unreadable file (its path and SimpleITK's reason).
    ValueError
        For a non-3-D or vector image, a label on another grid than its image,
        a degenerate geometry (zero spacing, singular direction), a constant
        image, a bad ``spacing``, a registration grid over :data:`MAX_GRID_VOXELS`.
    """
    from ..metrics import folding_fraction

    clock, mode = {}, "quick" if quick else "full"
    bar = ProgressBar(total=len(_PHASES), description="register_files", disable=not progress)
    start = time.perf_counter()
    targets = _targets(out_dir, moving_label is not None, force)
    fixed_volume, fixed_labels = _read_pair(fixed_path, fixed_label, "fixed")
    moving_volume, moving_labels = _read_pair(moving_path, moving_label, "moving")
    grid, shape = registration_grid(fixed_volume.geometry, fixed_volume.array.shape, spacing)
    if int(np.prod(shape)) > MAX_GRID_VOXELS:
        raise ValueError(f"the registration grid at {grid.spacing[0]:g} mm has {shape} voxels, over "
                         f"{MAX_GRID_VOXELS}; choose a coarser `spacing` (--spacing MM).")
    clock["read"] = _tick(bar, "read", start)
    start = time.perf_counter()
    fixed = _resample(_normalised(fixed_volume.array, f"the fixed image {str(fixed_path)!r}"),
                      fixed_volume.geometry, grid, shape)
    moving = _resample(_normalised(moving_volume.array, f"the moving image {str(moving_path)!r}"),
                       moving_volume.geometry, grid, shape)
    clock["resample"] = _tick(bar, "resample", start)
    settings = {**SETTINGS[mode], "affine": SETTINGS[mode]["affine"] if affine else None}
    theta, ddf = _register_on_grid(fixed, moving, settings, progress, clock)
    bar.update(2)
    start = time.perf_counter()
    mapped = _transform_on_fixed(theta, ddf, grid, fixed_volume.geometry, fixed_volume.array.shape)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    _write_results(targets, theta, mapped, grid, fixed_volume, moving_volume, moving_labels, force)
    clock["write"] = _tick(bar, "write", start)
    start = time.perf_counter()
    report = {"fixed": str(fixed_path), "moving": str(moving_path), "fixed_label": _str(fixed_label),
              "moving_label": _str(moving_label), "mode": mode, "settings": settings,
              "grid": {"spacing_mm": grid.spacing[0], "shape": list(shape)},
              "folding_percent": 100.0 * folding_fraction(ddf)}
    if fixed_labels is not None and moving_labels is not None:
        report.update(_scores(mapped, fixed_volume, fixed_labels, moving_volume, moving_labels))
    clock["evaluate"] = _tick(bar, "evaluate", start)
    report["seconds"] = {phase: round(clock[phase], 2) for phase in _PHASES}
    report["files"] = {key: str(path) for key, path in targets.items()}
    targets["report"].write_text(json.dumps(report, indent=2))
    bar.close()
    return report


def _tick(bar: ProgressBar, phase: str, start: float) -> float:
    bar.set_postfix(phase=phase)
    bar.update(1)
    return time.perf_counter() - start


def _str(path) -> Optional[str]:
    return None if path is None else str(path)
