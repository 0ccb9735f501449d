"""Image files with their geometry: read scans, write results that 3D Slicer, ITK-SNAP and ANTs open.

Everything goes through SimpleITK (imported inside the functions; NumPy at
import time, never TensorFlow), so any format it reads is read: NIfTI
(``.nii``, ``.nii.gz``), NRRD, MetaImage (``.mha``/``.mhd``), and a folder
holding one DICOM series.

Conventions (derived in :mod:`tutorial_utils.geometry`):

- A volume is an array ``(d1, d2, d3)`` in SimpleITK's ``GetArrayFromImage``
  order, i.e. ITK's ``(z, y, x)``; its :class:`~tutorial_utils.geometry.Geometry`
  keeps spacing (mm), origin (mm) and direction in ITK's ``(x, y, z)`` order.
  :attr:`Volume.orientation` says which anatomical direction each array axis
  increases toward (e.g. ``"SPL"``), the code ``tutorial_utils.viz`` takes as
  ``orientation=``. Arrays are never reoriented. (nibabel's arrays are the
  transpose: the lung CT loader, which reads with nibabel, reports ``"LPS"``
  where :func:`read_image` of the same file reports ``"SPL"``.)
- A DDF (voxels, on the fixed grid, pointing into the moving image) is written
  as ITK's displacement field: a 3-component float64 vector image on the fixed
  grid holding ``T(p) - p`` in mm, ITK's ``(x, y, z)`` (LPS) components - the
  file ``SimpleITK.DisplacementFieldTransform``, ANTs (``antsApplyTransforms``),
  3D Slicer and ITK-SNAP read as a transform from the fixed to the moving image.
- An affine ``theta`` (voxels) is written as ITK's ``AffineTransform`` (``.tfm``
  or ``.txt``; also ``.mat``, ``.h5``) mapping fixed physical points to moving
  ones, as ITK's resampling uses it (``sitk.Resample(moving, fixed, transform)``).

Files are never overwritten unless ``overwrite=True``. Every conversion is
checked in ``tests/test_images.py`` against SimpleITK's own resampling and
against nibabel's reading of the NIfTI header.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .geometry import (Geometry, as_geometry, ddf_from_physical_field, orientation_code,
                       physical_affine_from_theta, physical_field_from_ddf, theta_from_physical_affine)

__all__ = ["Volume", "DisplacementField", "read_image", "read_label", "write_image",
           "write_ddf", "read_ddf", "write_affine", "read_affine"]


class Volume(NamedTuple):
    """A volume read from a file: ``array, geometry = read_image(path)``.

    Attributes
    ----------
    array : ndarray ``(d1, d2, d3)``
        float32 (:func:`read_image`) or uint8 (:func:`read_label`).
    geometry : Geometry
        Spacing, origin, direction (mm, ITK's x, y, z order).
    """

    array: np.ndarray
    geometry: Geometry

    @property
    def orientation(self) -> str:
        """The array axes' orientation code, e.g. ``"SPL"`` (:func:`~tutorial_utils.geometry.orientation_code`)."""
        return orientation_code(self.geometry)


class DisplacementField(NamedTuple):
    """A DDF read from a displacement field file: ``ddf, fixed_geometry = read_ddf(...)``.

    Attributes
    ----------
    ddf : ndarray ``(1, d1, d2, d3, 3)`` float32
        Voxels, on the fixed grid, pointing into the moving image (``warp.warp(moving, ddf)``).
    fixed_geometry : Geometry
        The field's (the fixed image's) geometry.
    """

    ddf: np.ndarray
    fixed_geometry: Geometry


# ----------------------------------------------------------------------------- files
def _said(error: Exception) -> str:
    """SimpleITK's message without its source-file prefix, on one line."""
    text = " ".join(str(error).split())
    text = re.sub(r"^Exception thrown in SimpleITK \S+: \S+: ", "", text)
    return text[-400:]


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`path` is {str(path)!r}, which does not exist.")
    return path


def _target(path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists already; pass overwrite=True to replace it.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {str(path.parent)!r} of `path` does not exist; create it first.")
    return path


def _read_series(folder: Path, series_id: Optional[str]):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    ids = list(reader.GetGDCMSeriesIDs(str(folder)))
    if not ids:
        raise OSError(f"{str(folder)!r} is a folder without a DICOM series SimpleITK can read; give a "
                      "file (NIfTI, NRRD, MHA) or a folder of one DICOM series.")
    if series_id is None and len(ids) > 1:
        raise ValueError(f"{str(folder)!r} holds {len(ids)} DICOM series {ids}; pass series_id= to choose one.")
    if series_id is not None and series_id not in ids:
        raise ValueError(f"`series_id` is {series_id!r}; {str(folder)!r} holds the series {ids}.")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_id or ids[0]))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise OSError(f"SimpleITK could not read the DICOM series in {str(folder)!r}: {_said(error)}") from None


def _read(path, series_id: Optional[str] = None):
    import SimpleITK as sitk

    path = _existing(path)
    if path.is_dir():
        return _read_series(path, series_id)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise OSError(f"SimpleITK could not read {str(path)!r}: {_said(error)}") from None


def _scalar_volume(image, path, reader: str) -> Volume:
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise ValueError(f"{str(path)!r} holds a {image.GetDimension()}-D image of size {image.GetSize()}; "
                         f"{reader} reads 3-D volumes.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{str(path)!r} holds {image.GetNumberOfComponentsPerPixel()} components per voxel "
                         f"(a displacement field, or colour?); {reader} reads scalar volumes (a field: read_ddf).")
    return Volume(sitk.GetArrayFromImage(image), as_geometry(image, str(path)))


def _write(image, path: Path) -> Path:
    import SimpleITK as sitk

    try:
        sitk.WriteImage(image, str(path))
    except RuntimeError as error:
        raise OSError(f"SimpleITK could not write {str(path)!r}: {_said(error)}") from None
    return path


def _sitk_image(array: np.ndarray, geometry: Geometry, vector: bool = False):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=vector)  # size (d3, d2, d1)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(tuple(np.ravel(geometry.direction)))
    return image


# ----------------------------------------------------------------------------- images and labels
def read_image(path, *, series_id: Optional[str] = None) -> Volume:
    """Read a 3-D image with its geometry.

    Parameters
    ----------
    path : str or Path
        Any file SimpleITK reads (NIfTI ``.nii``/``.nii.gz``, NRRD, ``.mha``/``.mhd``,
        ...) or a folder holding a DICOM series.
    series_id : str, optional
        Which DICOM series, when the folder holds several.

    Returns
    -------
    Volume
        ``array`` ``(d1, d2, d3)`` float32, the file's values (no rescaling), in
        SimpleITK's ``GetArrayFromImage`` order (ITK's z, y, x); ``geometry`` (mm,
        ITK's x, y, z); ``orientation``, e.g. ``"SPL"``.

    Raises
    ------
    FileNotFoundError
        For a missing path.
    OSError
        For a file SimpleITK cannot read (its message quoted), a folder without DICOM.
    ValueError
        For a 2-D or 4-D image, or one with several components per voxel (a field).

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> path = write_image(os.path.join(folder, "ct.nii.gz"), np.ones((2, 3, 4)),
    ...                    Geometry(spacing=(0.5, 0.5, 2.0)))
    >>> volume = read_image(path)
    >>> volume.array.shape, volume.geometry.spacing, volume.orientation
    ((2, 3, 4), (0.5, 0.5, 2.0), 'SPL')
    """
    volume = _scalar_volume(_read(path, series_id), path, "read_image")
    return Volume(volume.array.astype(np.float32), volume.geometry)


def read_label(path, *, series_id: Optional[str] = None) -> Volume:
    """Read a 3-D label map (segmentation) with its geometry.

    As :func:`read_image`, but the array is ``(d1, d2, d3)`` uint8 and must hold
    whole numbers in ``0..255``.

    Raises
    ------
    ValueError
        As :func:`read_image`, and for values that are not whole numbers in
        ``0..255`` (an intensity image read as a label).

    Examples
    --------
    >>> import tempfile, os
    >>> path = write_image(os.path.join(tempfile.mkdtemp(), "mask.nii.gz"), np.eye(3)[None], None, label=True)
    >>> read_label(path).array.dtype
    dtype('uint8')
    """
    array, geometry = _scalar_volume(_read(path, series_id), path, "read_label")
    return Volume(_label_values(array, repr(str(path))), geometry)


def _label_values(array: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(array)
    if values.dtype == np.uint8:
        return values
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or values.min() < 0 or values.max() > 255:
        raise ValueError(f"{name} holds values from {float(np.nanmin(values))} to {float(np.nanmax(values))} "
                         f"({values.dtype}), not whole numbers 0..255; a label map needs those (is it an image?).")
    return values.astype(np.uint8)


def write_image(path, array, geometry, *, label: bool = False, overwrite: bool = False) -> Path:
    """Write a 3-D image or label map with its geometry (any format SimpleITK writes).

    Parameters
    ----------
    path : str or Path
        E.g. ``"warped.nii.gz"``, ``".nrrd"``, ``".mha"``; its folder must exist.
    array : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``
        The course's array order (SimpleITK's ``GetArrayFromImage`` order).
    geometry : Geometry, dict, SimpleITK/ITK image or None
        Where the voxels lie (:func:`~tutorial_utils.geometry.as_geometry`; None:
        1 mm voxels at the origin, identity direction). For a warped image: the
        FIXED image's geometry.
    label : bool
        Write a label map: uint8, whole numbers ``0..255`` required. Otherwise float32.
    overwrite : bool
        Replace an existing file (default: refuse).

    Returns
    -------
    Path written.

    Raises
    ------
    FileExistsError, FileNotFoundError
        For an existing file without ``overwrite``, a missing folder.
    ValueError
        For another shape, non-finite values, a label that is not whole numbers 0..255.
    OSError
        For a format SimpleITK cannot write (its message quoted).

    Examples
    --------
    >>> import tempfile, os
    >>> path = write_image(os.path.join(tempfile.mkdtemp(), "x.mha"), np.zeros((1, 2, 3, 4)), None)
    >>> write_image(path, np.zeros((2, 3, 4)), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: ... exists already; pass overwrite=True to replace it.
    """
    geometry = as_geometry(geometry, "geometry")
    values = np.asarray(array)
    values = values[0] if values.ndim == 4 and values.shape[0] == 1 else values
    if values.ndim != 3:
        raise ValueError(f"`array` has shape {np.shape(array)}; it needs (d1, d2, d3) or (1, d1, d2, d3) "
                         "(write label channels one file each).")
    values = _label_values(values, "`array`") if label else values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("`array` contains NaN or infinite values; an image file needs finite ones.")
    return _write(_sitk_image(values, geometry), _target(path, overwrite))


# ----------------------------------------------------------------------------- displacement fields
def write_ddf(path, ddf, *, fixed_geometry, moving_geometry, overwrite: bool = False) -> Path:
    """Write a course DDF as ITK's displacement field (what ANTs, 3D Slicer, ITK-SNAP read).

    The file: a float64 vector image on the fixed grid (fixed geometry) with 3
    components, ``T(p) - p`` in mm, ITK's ``(x, y, z)``, where ``T(p)`` is the
    physical point of moving voxel ``i + ddf(i)`` (:func:`~tutorial_utils.geometry.physical_field_from_ddf`).
    ``sitk.DisplacementFieldTransform`` of it resamples the moving image as
    ``warp.warp(moving, ddf)`` does. Use ``.nii.gz`` (ANTs, Slicer), ``.nrrd`` or ``.mha``.

    Parameters
    ----------
    path : str or Path
    ddf : array ``(1, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``
        Voxels, fixed grid -> moving voxels.
    fixed_geometry, moving_geometry : Geometry, dict, image or None
        The two images' geometry (they may differ in grid).
    overwrite : bool

    Returns
    -------
    Path written.

    Raises
    ------
    ValueError
        For another shape or non-finite values; FileExistsError, FileNotFoundError,
        OSError as :func:`write_image`.

    Examples
    --------
    >>> import tempfile, os
    >>> ddf = np.zeros((1, 2, 3, 4, 3)); ddf[..., 2] = 1.0              # one voxel along d3
    >>> grid = Geometry(spacing=(2.0, 1.0, 1.0))                        # 2 mm along x = d3
    >>> path = write_ddf(os.path.join(tempfile.mkdtemp(), "ddf.nii.gz"), ddf,
    ...                  fixed_geometry=grid, moving_geometry=grid)
    >>> import SimpleITK as sitk
    >>> sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0, 0, 0].tolist()   # mm, (x, y, z)
    [2.0, 0.0, 0.0]
    """
    fixed = as_geometry(fixed_geometry, "fixed_geometry")
    field = physical_field_from_ddf(ddf, fixed_geometry=fixed, moving_geometry=moving_geometry)
    return _write(_sitk_image(field, fixed, vector=True), _target(path, overwrite))


def read_ddf(path, *, moving_geometry) -> DisplacementField:
    """Read an ITK displacement field file as the course's DDF.

    Parameters
    ----------
    path : str or Path
        A 3-component vector image of physical displacements (mm, ITK's x, y, z)
        on the fixed grid: :func:`write_ddf`'s files, ANTs' ``*Warp.nii.gz``,
        Slicer's or elastix's (transformix) displacement fields.
    moving_geometry : Geometry, dict, image or None
        The moving image's geometry (the file holds only the fixed one).

    Returns
    -------
    DisplacementField
        ``ddf`` ``(1, d1, d2, d3, 3)`` float32 voxels; ``fixed_geometry``.

    Raises
    ------
    FileNotFoundError, OSError
        As :func:`read_image`.
    ValueError
        For a file that is not a 3-D image of 3-component vectors.

    Examples
    --------
    >>> import tempfile, os
    >>> ddf = np.full((1, 2, 3, 4, 3), 0.5, np.float32)
    >>> path = write_ddf(os.path.join(tempfile.mkdtemp(), "ddf.mha"), ddf,
    ...                  fixed_geometry=None, moving_geometry=None)
    >>> read_ddf(path, moving_geometry=None).ddf[0, 1, 2, 3].tolist()
    [0.5, 0.5, 0.5]
    """
    import SimpleITK as sitk

    image = _read(path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 3:
        raise ValueError(f"{str(path)!r} holds a {image.GetDimension()}-D image with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel; a displacement "
                         "field is a 3-D image of 3-component vectors.")
    fixed = as_geometry(image, str(path))
    field = sitk.GetArrayFromImage(image).astype(np.float64)
    ddf = ddf_from_physical_field(field, fixed_geometry=fixed, moving_geometry=moving_geometry)
    return DisplacementField(ddf, fixed)


# ----------------------------------------------------------------------------- affine transforms
def write_affine(path, theta, *, fixed_geometry, moving_geometry, overwrite: bool = False) -> Path:
    """Write a course ``theta`` as ITK's ``AffineTransform`` (fixed mm -> moving mm).

    The transform file (``.tfm``/``.txt``, ITK's text format; ``.mat``, ``.h5``
    also) holds ``q = A p + t`` (centre 0) from
    :func:`~tutorial_utils.geometry.physical_affine_from_theta`: what
    ``sitk.Resample(moving, fixed, transform)``, ANTs and 3D Slicer apply.

    Parameters
    ----------
    path : str or Path
    theta : array ``(1, 4, 3)`` or ``(4, 3)``
        Fixed voxel -> moving voxel, ``[i, 1] @ theta`` (voxels, ``warp.warp_grid``).
    fixed_geometry, moving_geometry : Geometry, dict, image or None
    overwrite : bool

    Returns
    -------
    Path written.

    Raises
    ------
    ValueError
        For another shape; FileExistsError, FileNotFoundError, OSError as :func:`write_image`.

    Examples
    --------
    >>> import tempfile, os
    >>> theta = np.concatenate([np.eye(3), [[0.0, 0.0, 2.0]]])          # two voxels along d3
    >>> path = write_affine(os.path.join(tempfile.mkdtemp(), "affine.tfm"), theta,
    ...                     fixed_geometry=None, moving_geometry=Geometry(spacing=(1.5, 1, 1)))
    >>> import SimpleITK as sitk
    >>> sitk.ReadTransform(str(path)).TransformPoint((0.0, 0.0, 0.0))   # mm
    (3.0, 0.0, 0.0)
    """
    import SimpleITK as sitk

    matrix, translation = physical_affine_from_theta(theta, fixed_geometry=fixed_geometry,
                                                     moving_geometry=moving_geometry)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    transform.SetTranslation(tuple(float(v) for v in translation))
    path = _target(path, overwrite)
    try:
        sitk.WriteTransform(transform, str(path))
    except RuntimeError as error:
        raise OSError(f"SimpleITK could not write {str(path)!r}: {_said(error)}") from None
    return path


def read_affine(path, *, fixed_geometry, moving_geometry) -> np.ndarray:
    """Read an ITK linear transform file (fixed mm -> moving mm) as the course's ``theta``.

    Any linear 3-D transform ITK writes (``AffineTransform``, ``Euler3DTransform``,
    ``VersorRigid3DTransform``, ... or a composite of them, as ANTs, Slicer,
    elastix and SimpleITK write it) is read by where it maps four points.

    Parameters
    ----------
    path : str or Path
    fixed_geometry, moving_geometry : Geometry, dict, image or None
        The two images' geometry (the file holds neither).

    Returns
    -------
    ndarray ``(1, 4, 3)`` float64: fixed voxel -> moving voxel, ``[i, 1] @ theta``.

    Raises
    ------
    FileNotFoundError
        For a missing file.
    OSError
        For a file SimpleITK cannot read as a transform (its message quoted).
    ValueError
        For a transform that is not 3-D or not linear (e.g. a B-spline).

    Examples
    --------
    >>> import tempfile, os
    >>> theta = np.concatenate([np.eye(3), [[1.0, 0.0, 0.0]]])
    >>> path = write_affine(os.path.join(tempfile.mkdtemp(), "affine.txt"), theta,
    ...                     fixed_geometry=None, moving_geometry=None)
    >>> read_affine(path, fixed_geometry=None, moving_geometry=None)[0, 3].tolist()
    [1.0, 0.0, 0.0]
    """
    import SimpleITK as sitk

    path = _existing(path)
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as error:
        raise OSError(f"SimpleITK could not read {str(path)!r} as a transform: {_said(error)}") from None
    if transform.GetDimension() != 3 or not transform.IsLinear():
        raise ValueError(f"{str(path)!r} holds a {transform.GetDimension()}-D {transform.GetName()}; "
                         "read_affine reads 3-D linear transforms (a displacement field: read_ddf).")
    origin = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)), np.float64)
    matrix = np.stack([np.asarray(transform.TransformPoint(tuple(map(float, axis))), np.float64) - origin
                       for axis in np.eye(3)], axis=1)
    return theta_from_physical_affine(matrix, origin, fixed_geometry=fixed_geometry,
                                      moving_geometry=moving_geometry)
