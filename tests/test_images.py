"""images.py: files written by the package, applied by SimpleITK's OWN resampling, give the course's
warps (scipy.ndimage.map_coordinates, order 1, constant 0 outside = tutorial_utils.warp.warp); files
read back give what was written; NIfTI headers written by nibabel read with nibabel's geometry."""
import locale
import subprocess
import sys

import numpy as np
from rotations import rotation_about
import pytest
from scipy import ndimage

from tutorial_utils import images
from tutorial_utils.geometry import Geometry

sitk = pytest.importorskip("SimpleITK")
nibabel = pytest.importorskip("nibabel")

RNG = np.random.default_rng(17)


# oblique, anisotropic, off-origin, on different grids
FIXED = Geometry(spacing=(0.8, 1.1, 1.5), origin=(5.0, -3.0, 2.0),
                 direction=tuple(map(tuple, rotation_about((1, 2, 3), 25))))
MOVING = Geometry(spacing=(1.2, 0.9, 1.0), origin=(1.0, -6.0, -1.0),
                  direction=tuple(map(tuple, rotation_about((-2, 1, 0.5), 15))))
FIXED_SHAPE, MOVING_SHAPE = (18, 16, 14), (16, 18, 20)


def smooth(shape, sigma=2.0, seed=0):
    volume = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)


def sitk_image(array, geometry):
    """Built with SimpleITK's own API (not the package's writer)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(tuple(np.ravel(geometry.direction)))
    return image


def course_warp(moving, positions):
    """The course's warp: linear interpolation at voxel positions (..., 3), 0 outside."""
    return ndimage.map_coordinates(moving.astype(np.float64), np.moveaxis(positions, -1, 0), order=1,
                                   mode="constant", cval=0.0)


def inside(positions, shape, margin=1e-3):
    return np.all((positions >= margin) & (positions <= np.asarray(shape) - 1 - margin), axis=-1)


def grid(shape):
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)


def test_module_does_not_import_tensorflow():
    code = ("import tutorial_utils.images, sys; "
            "assert 'tensorflow' not in sys.modules and 'SimpleITK' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- (1) DDF applied by SimpleITK
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_saved_ddf_resampled_by_simpleitk_is_the_course_warp(tmp_path, suffix):
    moving = smooth(MOVING_SHAPE, seed=1)
    index = grid(FIXED_SHAPE)
    theta = np.concatenate([rotation_about((1, 0, 1), 10) * 0.9, [[1.0, 2.0, 3.0]]])
    smooth_part = np.stack([ndimage.gaussian_filter(RNG.normal(0, 6.0, FIXED_SHAPE), 2) for _ in range(3)], -1)
    ddf = (np.c_[index.reshape(-1, 3), np.ones(index[..., 0].size)] @ theta).reshape(index.shape) - index
    ddf = (ddf + smooth_part).astype(np.float32)[None]
    path = images.write_ddf(tmp_path / f"ddf{suffix}", ddf, fixed_geometry=FIXED, moving_geometry=MOVING)

    field = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    transform = sitk.DisplacementFieldTransform(field)
    fixed_image = sitk_image(np.zeros(FIXED_SHAPE, np.float32), FIXED)
    warped = sitk.GetArrayFromImage(sitk.Resample(sitk_image(moving, MOVING), fixed_image, transform,
                                                  sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    positions = index + ddf[0]
    mask = inside(positions, MOVING_SHAPE)
    assert mask.mean() > 0.5  # most of the volume is compared
    np.testing.assert_allclose(warped[mask], course_warp(moving, positions)[mask], atol=2e-5)


def test_field_written_by_simpleitk_reads_as_the_ddf_itk_applies(tmp_path):
    field = RNG.normal(0, 2.0, FIXED_SHAPE + (3,))
    field_image = sitk.GetImageFromArray(field, isVector=True)
    field_image.CopyInformation(sitk_image(np.zeros(FIXED_SHAPE, np.float32), FIXED))
    sitk.WriteImage(field_image, str(tmp_path / "field.nrrd"))
    transform = sitk.DisplacementFieldTransform(sitk.Image(field_image))
    ddf, fixed = images.read_ddf(tmp_path / "field.nrrd", moving_geometry=MOVING)
    assert ddf.shape == (1,) + FIXED_SHAPE + (3,)
    np.testing.assert_allclose(np.r_[fixed.spacing, fixed.origin], np.r_[FIXED.spacing, FIXED.origin], atol=1e-12)
    np.testing.assert_allclose(fixed.direction, FIXED.direction, atol=1e-12)
    moving_image = sitk_image(np.zeros(MOVING_SHAPE, np.float32), MOVING)
    for index in [(0, 0, 0), (4, 9, 13), (17, 15, 0)]:
        point = field_image.TransformIndexToPhysicalPoint(index[::-1])
        expected = moving_image.TransformPhysicalPointToContinuousIndex(transform.TransformPoint(point))[::-1]
        np.testing.assert_allclose(np.asarray(index) + ddf[0][index], expected, atol=1e-4)


# ----------------------------------------------------------------------------- (2) affine applied by SimpleITK
@pytest.mark.parametrize("suffix", [".tfm", ".txt", ".mat"])
def test_saved_affine_resampled_by_simpleitk_is_the_course_warp(tmp_path, suffix):
    moving = smooth(MOVING_SHAPE, seed=2)
    theta = np.concatenate([rotation_about((2, -1, 1), 12) @ np.diag([1.05, 0.95, 1.1]), [[-1.0, 2.5, 4.0]]])
    path = images.write_affine(tmp_path / f"affine{suffix}", theta[None], fixed_geometry=FIXED,
                               moving_geometry=MOVING)
    transform = sitk.ReadTransform(str(path))
    fixed_image = sitk_image(np.zeros(FIXED_SHAPE, np.float32), FIXED)
    warped = sitk.GetArrayFromImage(sitk.Resample(sitk_image(moving, MOVING), fixed_image, transform,
                                                  sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    index = grid(FIXED_SHAPE)
    positions = (np.c_[index.reshape(-1, 3), np.ones(index[..., 0].size)] @ theta).reshape(index.shape)
    mask = inside(positions, MOVING_SHAPE)
    assert mask.mean() > 0.3
    np.testing.assert_allclose(warped[mask], course_warp(moving, positions)[mask], atol=2e-5)


def test_rigid_transform_written_by_simpleitk_reads_as_the_theta_itk_applies(tmp_path):
    transform = sitk.Euler3DTransform((3.0, -2.0, 1.0), 0.1, -0.2, 0.3, (2.0, 1.0, -4.0))
    sitk.WriteTransform(transform, str(tmp_path / "rigid.tfm"))
    theta = images.read_affine(tmp_path / "rigid.tfm", fixed_geometry=FIXED, moving_geometry=MOVING)[0]
    fixed_image = sitk_image(np.zeros(FIXED_SHAPE, np.float32), FIXED)
    moving_image = sitk_image(np.zeros(MOVING_SHAPE, np.float32), MOVING)
    for index in [(0, 0, 0), (5, 3, 11), (17, 15, 13)]:
        point = transform.TransformPoint(fixed_image.TransformIndexToPhysicalPoint(index[::-1]))
        expected = moving_image.TransformPhysicalPointToContinuousIndex(point)[::-1]
        np.testing.assert_allclose(np.r_[index, 1.0] @ theta, expected, atol=1e-9)


# ----------------------------------------------------------------------------- (3) round trips
@pytest.mark.parametrize("suffix, atol", [(".mha", 0.0), (".nrrd", 1e-12), (".nii.gz", 1e-6)])
def test_image_label_and_geometry_round_trip(tmp_path, suffix, atol):
    image, label = smooth(FIXED_SHAPE) * 1000 - 300, (smooth(FIXED_SHAPE) * 4).astype(np.uint8)
    images.write_image(tmp_path / f"image{suffix}", image, FIXED)
    images.write_image(tmp_path / f"label{suffix}", label.astype(np.float32), FIXED, label=True)
    read = images.read_image(tmp_path / f"image{suffix}")
    np.testing.assert_array_equal(read.array, image)
    assert read.array.dtype == np.float32
    for got, want in [(read.geometry.spacing, FIXED.spacing), (read.geometry.origin, FIXED.origin),
                      (read.geometry.direction, FIXED.direction)]:
        np.testing.assert_allclose(got, want, atol=atol, rtol=0)  # NIfTI stores float32 (quaternion) headers
    assert read.orientation == FIXED.orientation
    labels = images.read_label(tmp_path / f"label{suffix}")
    assert labels.array.dtype == np.uint8
    assert sitk.ReadImage(str(tmp_path / f"label{suffix}")).GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(labels.array, label)


def test_ddf_and_affine_round_trip(tmp_path):
    ddf = RNG.normal(0, 3.0, (1,) + FIXED_SHAPE + (3,)).astype(np.float32)
    images.write_ddf(tmp_path / "ddf.nii.gz", ddf, fixed_geometry=FIXED, moving_geometry=MOVING)
    read, fixed = images.read_ddf(tmp_path / "ddf.nii.gz", moving_geometry=MOVING)
    np.testing.assert_allclose(read, ddf, atol=1e-5)
    np.testing.assert_allclose(fixed.direction, FIXED.direction, atol=1e-6)
    theta = np.concatenate([rotation_about((1, 1, 1), 20) * 1.1, [[3.0, -1.0, 0.5]]])
    for suffix in (".tfm", ".txt", ".mat", ".h5"):
        images.write_affine(tmp_path / f"a{suffix}", theta, fixed_geometry=FIXED, moving_geometry=MOVING)
        np.testing.assert_allclose(images.read_affine(tmp_path / f"a{suffix}", fixed_geometry=FIXED,
                                                      moving_geometry=MOVING)[0], theta, atol=1e-10)


# ----------------------------------------------------------------------------- (4) NIfTI headers (nibabel)
def nifti_affine():
    affine = np.eye(4)
    affine[:3, :3] = rotation_about((1, -2, 0.5), 30) @ np.diag([0.9, 1.4, 2.2])
    affine[:3, 3] = (-80.0, 35.0, 12.5)
    return affine  # RAS, nibabel's (i, j, k) = ITK's (x, y, z)


def lps_geometry(ras_affine):
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras_affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return spacing, lps[:3, 3], lps[:3, :3] / spacing


@pytest.mark.parametrize("form", ["both", "qform", "sform"])
def test_nifti_written_by_nibabel_reads_with_its_geometry(tmp_path, form):
    data = RNG.normal(size=(7, 8, 9)).astype(np.float32)  # nibabel's (i, j, k)
    ras = nifti_affine()
    volume = nibabel.Nifti1Image(data, None)
    if form in ("both", "qform"):
        volume.set_qform(ras, code=1)
    if form in ("both", "sform"):
        volume.set_sform(ras, code=1)
    volume.header.set_zooms(np.linalg.norm(ras[:3, :3], axis=0))  # pixdim, as a scanner's converter writes it
    nibabel.save(volume, str(tmp_path / "scan.nii.gz"))
    read = images.read_image(tmp_path / "scan.nii.gz")
    spacing, origin, direction = lps_geometry(ras)
    np.testing.assert_allclose(read.geometry.spacing, spacing, atol=1e-5)
    np.testing.assert_allclose(read.geometry.origin, origin, atol=1e-4)
    np.testing.assert_allclose(read.geometry.direction, direction, atol=1e-5)
    np.testing.assert_array_equal(read.array, data.transpose(2, 1, 0))  # the course's (d1, d2, d3) = (k, j, i)
    assert read.orientation == "".join(nibabel.aff2axcodes(ras))[::-1]


def test_written_nifti_has_the_affine_nibabel_and_slicer_read(tmp_path):
    ras = nifti_affine()
    spacing, origin, direction = lps_geometry(ras)
    geometry = Geometry(spacing=tuple(spacing), origin=tuple(origin), direction=tuple(map(tuple, direction)))
    array = RNG.normal(size=(9, 8, 7)).astype(np.float32)
    images.write_image(tmp_path / "out.nii.gz", array, geometry)
    volume = nibabel.load(str(tmp_path / "out.nii.gz"))
    np.testing.assert_allclose(volume.affine, ras, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(volume.dataobj), array.transpose(2, 1, 0))


# ----------------------------------------------------------------------------- errors
def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.nii.gz.*does not exist"):
        images.read_image(tmp_path / "nothing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(OSError, match="SimpleITK could not read .*junk.nii.gz"):
        images.read_image(tmp_path / "junk.nii.gz")
    with pytest.raises(OSError, match="without a DICOM series"):
        images.read_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="rigid.tfm.*does not exist"):
        images.read_affine(tmp_path / "rigid.tfm", fixed_geometry=None, moving_geometry=None)


def test_images_of_other_dimensions_or_components_are_refused(tmp_path):
    sitk.WriteImage(sitk.Image(5, 6, sitk.sitkFloat32), str(tmp_path / "flat.mha"))
    with pytest.raises(ValueError, match="flat.mha' holds a 2-D image of size \\(5, 6\\); read_image reads 3-D"):
        images.read_image(tmp_path / "flat.mha")
    sitk.WriteImage(sitk.Image([3, 4, 5, 2], sitk.sitkFloat32), str(tmp_path / "series.nii.gz"))
    with pytest.raises(ValueError, match="holds a 4-D image"):
        images.read_image(tmp_path / "series.nii.gz")
    images.write_ddf(tmp_path / "ddf.mha", np.zeros((3, 4, 5, 3)), fixed_geometry=None, moving_geometry=None)
    with pytest.raises(ValueError, match="3 components per voxel .*read_ddf"):
        images.read_image(tmp_path / "ddf.mha")
    images.write_image(tmp_path / "image.mha", np.zeros((3, 4, 5)), None)
    with pytest.raises(ValueError, match="1 component\\(s\\) per voxel; a displacement field is"):
        images.read_ddf(tmp_path / "image.mha", moving_geometry=None)


def test_image_read_as_label_and_bad_labels_are_refused(tmp_path):
    images.write_image(tmp_path / "image.mha", np.full((3, 4, 5), 0.25), None)
    with pytest.raises(ValueError, match="image.mha' holds values from 0.25 to 0.25 .*not whole numbers"):
        images.read_label(tmp_path / "image.mha")
    with pytest.raises(ValueError, match="`array` holds values from -1.0 to 256.0"):
        images.write_image(tmp_path / "label.mha", np.r_[-1.0, 256.0, 0.0].reshape(1, 1, 3), None, label=True)
    with pytest.raises(ValueError, match=r"`array` has shape \(3, 4, 5, 2\); .*one file each"):
        images.write_image(tmp_path / "labels.mha", np.zeros((3, 4, 5, 2)), None, label=True)


def test_nonlinear_transform_is_refused_by_read_affine(tmp_path):
    bspline = sitk.BSplineTransformInitializer(sitk.Image(8, 8, 8, sitk.sitkFloat32), [3, 3, 3])
    sitk.WriteTransform(bspline, str(tmp_path / "bspline.tfm"))
    with pytest.raises(ValueError, match="BSplineTransform; read_affine reads 3-D linear"):
        images.read_affine(tmp_path / "bspline.tfm", fixed_geometry=None, moving_geometry=None)


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    path = images.write_image(tmp_path / "x.nii.gz", np.zeros((3, 4, 5)), None)
    for write in (lambda: images.write_image(path, np.ones((3, 4, 5)), None),
                  lambda: images.write_ddf(path, np.zeros((3, 4, 5, 3)), fixed_geometry=None, moving_geometry=None),
                  lambda: images.write_affine(path, np.eye(4, 3), fixed_geometry=None, moving_geometry=None)):
        with pytest.raises(FileExistsError, match="x.nii.gz' exists already; pass overwrite=True"):
            write()
    assert images.read_image(path).array.max() == 0
    images.write_image(path, np.ones((3, 4, 5)), None, overwrite=True)
    assert images.read_image(path).array.min() == 1
    with pytest.raises(FileNotFoundError, match="the folder .*no-such-folder"):
        images.write_image(tmp_path / "no-such-folder" / "x.nii.gz", np.zeros((3, 4, 5)), None)
    with pytest.raises(OSError, match="SimpleITK could not write .*x.unknownformat"):
        images.write_image(tmp_path / "x.unknownformat", np.zeros((3, 4, 5)), None)


def write_dicom_series(folder, array, geometry):
    """One DICOM file per slice along ITK's z, tags set as SimpleITK's DICOM series example does
    (GDCM sets the C locale to "C" when a slice carries ImagePositionPatient: restored here, or
    later tests in the session read text files as ASCII)."""
    saved = locale.setlocale(locale.LC_ALL, None)
    try:
        _write_dicom_slices(folder, array, geometry)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_slices(folder, array, geometry):
    image = sitk.Cast(sitk_image(array, geometry), sitk.sitkInt16)
    direction = np.ravel(geometry.direction)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in [("0008|0060", "CT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.42"),
                           ("0020|0037", "\\".join(f"{v:.10f}" for v in direction[[0, 3, 6, 1, 4, 7]])),
                           ("0020|0032", "\\".join(f"{v:.10f}" for v in position)),
                           ("0020|0013", str(k)), ("0018|0050", str(geometry.spacing[2]))]:
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)


def test_dicom_series_folder_reads_with_its_geometry(tmp_path):
    array = (smooth((6, 10, 12)) * 1000).round().astype(np.int16)
    write_dicom_series(tmp_path, array, FIXED)
    saved = locale.setlocale(locale.LC_ALL, None)
    read = images.read_image(tmp_path)
    assert locale.setlocale(locale.LC_ALL, None) == saved  # reading leaves the process's locale alone
    np.testing.assert_array_equal(read.array, array)
    np.testing.assert_allclose(read.geometry.spacing, FIXED.spacing, atol=1e-6)
    np.testing.assert_allclose(read.geometry.origin, FIXED.origin, atol=1e-6)
    np.testing.assert_allclose(read.geometry.direction, FIXED.direction, atol=1e-6)
    with pytest.raises(ValueError, match="`series_id` is 'nope'"):
        images.read_image(tmp_path, series_id="nope")

