"""classical.py: elastix and scikit-image wrappers, checked against ITK, SciPy and known transforms.

The conversion from elastix's transform (physical ITK x/y/z points, fixed ->
moving) to the course's theta (numpy voxel indices, row vectors) is checked
against ITK's own point mapping and against scipy.ndimage.affine_transform; the
wrappers are checked on volumes warped with known transforms.
"""
import importlib.util
import io
import subprocess
import sys

import numpy as np
from rotations import rotation_about
import pytest
from scipy import ndimage

from tutorial_utils import classical

itk = pytest.importorskip("itk")
pytest.importorskip("skimage")

RNG = np.random.default_rng(11)


def smooth_volume(shape, sigma=3.0, seed=0):
    volume = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)


def hand_built_map(matrix, translation, centre, spacing=(1, 1, 1), origin=(0, 0, 0), direction=np.eye(3)):
    return {
        "Transform": ["AffineTransform"],
        "TransformParameters": [repr(float(v)) for v in list(np.ravel(matrix)) + list(translation)],
        "CenterOfRotationPoint": [repr(float(v)) for v in centre],
        "Spacing": [repr(float(v)) for v in spacing],
        "Origin": [repr(float(v)) for v in origin],
        "Direction": [repr(float(v)) for v in np.ravel(direction, order="F")],  # elastix: column by column
    }


def random_rotation(angle):
    axis = RNG.standard_normal(3)
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_module_does_not_import_tensorflow():
    code = "import tutorial_utils.classical, sys; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("geometry", ["unit", "physical"])
def test_conversion_agrees_with_itk_point_mapping(geometry):
    """theta maps fixed voxel i to the moving voxel that ITK's own transform gives."""
    shape = (7, 9, 11)  # numpy (d1, d2, d3); ITK size (11, 9, 7)
    matrix = random_rotation(0.3) @ np.diag([1.1, 0.9, 1.05])
    translation, centre = RNG.uniform(-3, 3, 3), RNG.uniform(0, 5, 3)
    if geometry == "unit":
        spacing, origin, direction = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)
    else:
        spacing, origin, direction = (0.7, 1.3, 2.5), (-4.0, 10.0, 2.0), random_rotation(0.4)
    parameter_map = hand_built_map(matrix, translation, centre, spacing, origin, direction)
    theta = classical.theta_from_itk_affine(parameter_map)[0]

    image = itk.image_view_from_array(np.zeros(shape, np.float32))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(direction)))
    transform = itk.AffineTransform[itk.D, 3].New()
    transform.SetCenter([float(c) for c in centre])
    transform.SetMatrix(itk.matrix_from_array(np.ascontiguousarray(matrix)))
    transform.SetTranslation([float(t) for t in translation])
    for index in RNG.integers(0, 7, size=(10, 3)):
        point = image.TransformIndexToPhysicalPoint([int(v) for v in index[::-1]])
        mapped = transform.TransformPoint(point)
        expected = np.asarray(image.TransformPhysicalPointToContinuousIndex(mapped))[::-1]
        np.testing.assert_allclose(np.append(index, 1.0) @ theta, expected, atol=1e-9)


def test_conversion_resamples_like_scipy_and_transformix():
    """Transformix resampling with a hand-built map equals scipy.ndimage.affine_transform with theta."""
    volume = smooth_volume((12, 14, 16), sigma=1.5)
    matrix = random_rotation(0.15) @ np.diag([1.05, 0.95, 1.0])
    parameter_map = hand_built_map(matrix, [1.2, -0.7, 0.4], [7.5, 6.5, 5.5])
    theta = classical.theta_from_itk_affine(parameter_map)[0]
    expected = ndimage.affine_transform(volume.astype(np.float64), theta[:3].T, theta[3], order=1,
                                        mode="constant", cval=0.0)
    itk_map = {key: list(value) for key, value in parameter_map.items()}
    itk_map.update({"NumberOfParameters": ["12"], "Size": ["16", "14", "12"], "Index": ["0", "0", "0"],
                    "InitialTransformParameterFileName": ["NoInitialTransform"],
                    "HowToCombineTransforms": ["Compose"], "FixedImageDimension": ["3"],
                    "MovingImageDimension": ["3"], "FixedInternalImagePixelType": ["float"],
                    "MovingInternalImagePixelType": ["float"], "ResampleInterpolator": ["FinalLinearInterpolator"],
                    "Resampler": ["DefaultResampler"], "DefaultPixelValue": ["0"], "UseDirectionCosines": ["true"],
                    "ResultImagePixelType": ["float"], "ResultImageFormat": ["nii"]})
    parameter_object = itk.ParameterObject.New()
    parameter_object.AddParameterMap(itk_map)
    warped = np.asarray(itk.transformix_filter(itk.image_view_from_array(volume), parameter_object,
                                               log_to_console=False))
    inside = ndimage.binary_erosion(expected != 0, iterations=2)  # away from the zero border
    np.testing.assert_allclose(warped[inside], expected[inside], atol=1e-4)


def warp_with_theta(volume, theta):
    """moving(j) = volume([j, 1] @ inverse(theta)), so theta (fixed -> moving) is the answer."""
    square = np.concatenate([theta, [[0.0], [0.0], [0.0], [1.0]]], axis=1)
    inverse = np.linalg.inv(square)[:, :3]
    return ndimage.affine_transform(volume, inverse[:3].T, inverse[3], order=3, mode="nearest").astype(np.float32)


def residual(theta, theta_true, shape):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    homogeneous = np.concatenate([grid, np.ones((len(grid), 1))], axis=1)
    return float(np.linalg.norm(homogeneous @ theta - homogeneous @ theta_true, axis=1).mean())


@pytest.fixture(scope="module")
def known_affine_pair():
    fixed = smooth_volume((32, 36, 28), sigma=2.5, seed=4)
    theta_true = np.concatenate([random_rotation(0.05) @ np.diag([1.04, 0.97, 1.02]), [[1.5, -2.0, 0.8]]], 0)
    return fixed, warp_with_theta(fixed, theta_true), theta_true


def test_elastix_affine_recovers_a_known_affine_and_is_deterministic(known_affine_pair):
    fixed, moving, theta_true = known_affine_pair
    first = classical.elastix_affine(fixed=fixed, moving=moving)
    second = classical.elastix_affine(fixed=fixed[None], moving=moving[None])
    assert first.theta.shape == (1, 4, 3) and first.method == "elastix affine"
    assert first.details["parameter_map"]["Transform"] == ["AffineTransform"]
    identity = np.concatenate([np.eye(3), np.zeros((1, 3))])
    assert residual(identity, theta_true, fixed.shape) > 2.0
    assert residual(first.theta[0], theta_true, fixed.shape) < 0.2
    np.testing.assert_array_equal(first.theta, second.theta)


def test_elastix_affine_recovers_a_known_shift():
    fixed = smooth_volume((24, 32, 32), seed=2)
    moving = ndimage.shift(fixed, (0.0, 2.5, -1.5), order=3, mode="nearest")  # moving(x) = fixed(x - s)
    theta = classical.elastix_affine(fixed=fixed, moving=moving).theta[0]
    np.testing.assert_allclose(theta[3], [0.0, 2.5, -1.5], atol=0.25)  # warped(x) = moving(x + s)
    np.testing.assert_allclose(theta[:3], np.eye(3), atol=0.02)


def test_elastix_bspline_field_has_the_course_sign_and_axis_order_and_nothing_is_written_here(
        tmp_path, monkeypatch):
    """The B-spline map alone (affine_first=False; the affine + B-spline chain, three times
    slower, is checked against a known map in the oblique test below). Run in an empty
    working directory: transformix writes its field file somewhere, never into the reader's
    folder."""
    monkeypatch.chdir(tmp_path)
    fixed = smooth_volume((20, 32, 32), seed=3)
    moving = ndimage.shift(fixed, (0.0, 2.0, -1.0), order=3, mode="nearest")
    # batched (1, d1, d2, d3) inputs here; the oblique test passes (d1, d2, d3)
    result = classical.elastix_bspline(fixed=fixed[None], moving=moving[None], affine_first=False)
    assert list(tmp_path.iterdir()) == []
    assert result.ddf.shape == (1, 20, 32, 32, 3) and len(result.details["parameter_maps"]) == 1
    interior = result.ddf[0, 5:-5, 8:-8, 8:-8].reshape(-1, 3)
    np.testing.assert_allclose(interior.mean(axis=0), [0.0, 2.0, -1.0], atol=0.3)
    coords = np.moveaxis(np.indices(fixed.shape) + np.moveaxis(result.ddf[0], -1, 0), 0, 0)
    warped = ndimage.map_coordinates(moving, coords, order=1)
    before = np.abs(moving - fixed)[5:-5, 8:-8, 8:-8].mean()
    after = np.abs(warped - fixed)[5:-5, 8:-8, 8:-8].mean()
    assert after < 0.3 * before


def test_phase_correlation_gives_the_course_sign():
    fixed = smooth_volume((16, 24, 24), seed=5)
    moving = np.roll(fixed, (1, -3, 2), axis=(0, 1, 2))  # moving(x) = fixed(x - s)
    result = classical.phase_correlation_shift(fixed=fixed, moving=moving, as_ddf=True)
    np.testing.assert_allclose(result.details["shift"], [1.0, -3.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(result.details["theta"][0, 3], [1.0, -3.0, 2.0], atol=1e-6)
    assert result.ddf.shape == (1, 16, 24, 24, 3)
    warped = ndimage.map_coordinates(moving, np.indices(fixed.shape) + np.moveaxis(result.ddf[0], -1, 0),
                                     order=1, mode="grid-wrap")
    np.testing.assert_allclose(warped, fixed, atol=1e-5)


def test_optical_flow_tvl1_recovers_a_smooth_shift():
    fixed = smooth_volume((16, 32, 32), sigma=3.0, seed=6)
    moving = ndimage.shift(fixed, (0.0, 1.5, -1.0), order=3, mode="nearest")
    result = classical.optical_flow_tvl1(fixed=fixed, moving=moving)
    assert result.ddf.shape == (1, 16, 32, 32, 3)
    interior = result.ddf[0, 4:-4, 8:-8, 8:-8].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(interior, [0.0, 1.5, -1.0], atol=0.3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="`moving` has"):
        classical.elastix_affine(fixed=np.zeros((8, 8, 8)), moving=np.zeros((8, 8, 9)))
    with pytest.raises(ValueError, match="`fixed` has shape"):
        classical.optical_flow_tvl1(fixed=np.zeros((8, 8)), moving=np.zeros((8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        classical.phase_correlation_shift(fixed=np.full((4, 4, 4), np.nan), moving=np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="only 'AffineTransform'"):
        classical.theta_from_itk_affine({"Transform": ["EulerTransform"]})
    with pytest.raises(ValueError, match="TransformParameters"):
        classical.theta_from_itk_affine({"Transform": ["AffineTransform"], "TransformParameters": ["1"] * 6})


# ---------------------------------------------------------------- real-world geometry (#22)
def itk_image(volume, geometry):
    """An ITK image of a numpy (d1, d2, d3) volume, made with ITK's own API (size (d3, d2, d1))."""
    image = itk.GetImageFromArray(np.ascontiguousarray(volume, np.float32))
    image.SetSpacing([float(v) for v in geometry["spacing"]])
    image.SetOrigin([float(v) for v in geometry["origin"]])
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(geometry["direction"], np.float64)))
    return image


FIXED_SHAPE, MOVING_SHAPE = (24, 22, 20), (20, 24, 22)
FIXED_GEOMETRY = {"spacing": (0.8, 1.1, 1.5), "origin": (5.0, -3.0, 2.0),
                  "direction": rotation_about((1, 2, 3), 25)}
MOVING_GEOMETRY = {"spacing": (1.2, 0.9, 1.0), "origin": (1.0, -6.0, -1.0),
                   "direction": rotation_about((-2, 1, 0.5), 15)}


def itk_voxel_map(index, transform, fixed_image, moving_image):
    """ITK's own mapping of a fixed voxel (numpy order) to a moving voxel (numpy order)."""
    point = fixed_image.TransformIndexToPhysicalPoint([int(v) for v in index[::-1]])
    mapped = transform(point) if callable(transform) else transform.TransformPoint(point)
    return np.asarray(moving_image.TransformPhysicalPointToContinuousIndex(mapped), np.float64)[::-1]


def zero_iteration_map(fixed_image, moving_image):
    """The identity parameter map as elastix itself writes it for these two images."""
    parameter_object = itk.ParameterObject.New()
    parameter_map = parameter_object.GetDefaultParameterMap("affine")
    parameter_map["MaximumNumberOfIterations"] = ["0"]
    parameter_map["NumberOfResolutions"] = ["1"]
    parameter_map["AutomaticTransformInitialization"] = ["false"]
    parameter_object.AddParameterMap(parameter_map)
    method = itk.ElastixRegistrationMethod.New(fixed_image, moving_image)
    method.SetParameterObject(parameter_object)
    method.SetLogToConsole(False)
    method.UpdateLargestPossibleRegion()
    return {key: list(value) for key, value in dict(method.GetTransformParameterObject().GetParameterMap(0)).items()}


def test_elastix_written_direction_is_read_column_by_column():
    """Reported: identity transform, fixed direction a 90-degree turn about z, written by elastix
    itself, moving geometry the same: the linear part came out diag(1, -1, -1)."""
    geometry = {"spacing": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0), "direction": rotation_about((0, 0, 1), 90)}
    volume = smooth_volume((12, 12, 12), sigma=1.5)
    fixed_image, moving_image = itk_image(volume, geometry), itk_image(volume, geometry)
    parameter_map = zero_iteration_map(fixed_image, moving_image)
    theta = classical.theta_from_itk_affine(parameter_map, moving_geometry=moving_image)[0]
    np.testing.assert_allclose(theta, np.concatenate([np.eye(3), np.zeros((1, 3))]), atol=1e-9)
    as_dict = {key: itk.array_from_matrix(moving_image.GetDirection()) if key == "direction" else value
               for key, value in geometry.items()}
    np.testing.assert_allclose(classical.theta_from_itk_affine(parameter_map, moving_geometry=as_dict)[0],
                               theta, atol=1e-12)


def test_elastix_written_oblique_map_agrees_with_itk_point_mapping():
    """Oblique, anisotropic, off-origin fixed and moving images on different grids: the map
    elastix writes for them, with a hand-set affine, maps voxels as ITK's own AffineTransform does."""
    fixed_image = itk_image(np.zeros(FIXED_SHAPE), FIXED_GEOMETRY)
    moving_image = itk_image(np.zeros(MOVING_SHAPE), MOVING_GEOMETRY)
    parameter_map = zero_iteration_map(itk_image(smooth_volume(FIXED_SHAPE, 2.0), FIXED_GEOMETRY),
                                       itk_image(smooth_volume(MOVING_SHAPE, 2.0, seed=1), MOVING_GEOMETRY))
    matrix = random_rotation(0.2) @ np.diag([1.05, 0.95, 1.1])
    translation = np.array([1.5, -2.0, 0.7])
    parameter_map["TransformParameters"] = [repr(float(v)) for v in list(matrix.ravel()) + list(translation)]
    theta = classical.theta_from_itk_affine(parameter_map, moving_geometry=moving_image)[0]

    transform = itk.AffineTransform[itk.D, 3].New()
    transform.SetCenter([float(v) for v in parameter_map["CenterOfRotationPoint"]])
    transform.SetMatrix(itk.matrix_from_array(np.ascontiguousarray(matrix)))
    transform.SetTranslation([float(v) for v in translation])
    for index in RNG.integers(0, 20, size=(20, 3)):
        expected = itk_voxel_map(index, transform, fixed_image, moving_image)
        np.testing.assert_allclose(np.append(index, 1.0) @ theta, expected, atol=1e-6)


def test_transformix_field_of_an_oblique_map_becomes_the_course_ddf():
    """transformix's own deformation field (physical, ITK x/y/z) -> DDF in voxels, fixed -> moving."""
    matrix = random_rotation(0.15) @ np.diag([1.02, 0.97, 1.0])
    fixed_image = itk_image(np.zeros(FIXED_SHAPE), FIXED_GEOMETRY)
    moving_image = itk_image(np.zeros(MOVING_SHAPE), MOVING_GEOMETRY)
    centre, translation = np.array([10.0, 5.0, 20.0]), np.array([-1.0, 2.0, 0.5])
    parameter_map = hand_built_map(matrix, translation, centre, FIXED_GEOMETRY["spacing"],
                                   FIXED_GEOMETRY["origin"], FIXED_GEOMETRY["direction"])
    parameter_map.update({"NumberOfParameters": ["12"], "Size": [str(n) for n in FIXED_SHAPE[::-1]],
                          "Index": ["0", "0", "0"], "InitialTransformParameterFileName": ["NoInitialTransform"],
                          "HowToCombineTransforms": ["Compose"], "FixedImageDimension": ["3"],
                          "MovingImageDimension": ["3"], "UseDirectionCosines": ["true"]})
    parameter_object = itk.ParameterObject.New()
    parameter_object.AddParameterMap(parameter_map)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        field = np.array(itk.transformix_deformation_field(moving_image, parameter_object,
                                                           output_directory=folder, log_to_console=False))
    assert field.shape == FIXED_SHAPE + (3,)
    ddf = classical.ddf_from_itk_field(field, fixed_geometry=fixed_image, moving_geometry=MOVING_GEOMETRY)
    assert ddf.shape == (1,) + FIXED_SHAPE + (3,)
    transform = itk.AffineTransform[itk.D, 3].New()
    transform.SetCenter([float(v) for v in centre])
    transform.SetMatrix(itk.matrix_from_array(np.ascontiguousarray(matrix)))
    transform.SetTranslation([float(v) for v in translation])
    for index in RNG.integers(0, 20, size=(20, 3)):
        expected = itk_voxel_map(index, transform, fixed_image, moving_image) - index
        np.testing.assert_allclose(ddf[0][tuple(index)], expected, atol=1e-4)


def phantom(shape, geometry, shift=(0.0, 0.0, 0.0), ramp=0.02):
    """A smooth pattern defined in PHYSICAL space, f(p - shift), sampled on an image's voxels."""
    image = itk_image(np.zeros(shape), geometry)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    points = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in i[::-1]]) for i in index])
    points = points - np.asarray(shift)
    blobs = np.random.default_rng(7).uniform([4, -2, 6], [18, 16, 28], size=(10, 3))
    values = sum(np.exp(-np.sum((points - c) ** 2, axis=1) / (2 * 3.0 ** 2)) for c in blobs)
    return (values + ramp * points[:, 0]).reshape(shape).astype(np.float32)


@pytest.fixture(scope="module")
def oblique_pair():
    """The same physical pattern seen by an oblique fixed image and a moving image on another grid,
    the moving content shifted by SHIFT mm: ITK's true map is p -> p + SHIFT."""
    shift = np.array([1.5, -1.0, 2.0])
    fixed = phantom(FIXED_SHAPE, FIXED_GEOMETRY)
    moving = phantom(MOVING_SHAPE, MOVING_GEOMETRY, shift)
    fixed_image = itk_image(np.zeros(FIXED_SHAPE), FIXED_GEOMETRY)
    moving_image = itk_image(np.zeros(MOVING_SHAPE), MOVING_GEOMETRY)
    truth = lambda point: [float(v) for v in np.asarray(point) + shift]  # noqa: E731
    return fixed, moving, fixed_image, moving_image, truth


def interior(shape, margin=6, count=30):
    return RNG.integers(margin, np.asarray(shape) - margin, size=(count, 3))


def test_elastix_affine_on_oblique_images_on_different_grids(oblique_pair):
    fixed, moving, fixed_image, moving_image, truth = oblique_pair
    result = classical.elastix_affine(fixed=fixed, moving=moving, fixed_geometry=FIXED_GEOMETRY,
                                      moving_geometry=moving_image)
    errors = [np.linalg.norm(np.append(i, 1.0) @ result.theta[0].astype(np.float64)
                             - itk_voxel_map(i, truth, fixed_image, moving_image)) for i in interior(FIXED_SHAPE)]
    assert np.mean(errors) < 0.5, np.mean(errors)
    # and theta maps voxels as ITK's AffineTransform built from elastix's own parameters does
    parameter_map = result.details["parameter_map"]
    parameters = np.array([float(v) for v in parameter_map["TransformParameters"]])
    transform = itk.AffineTransform[itk.D, 3].New()
    transform.SetCenter([float(v) for v in parameter_map["CenterOfRotationPoint"]])
    transform.SetMatrix(itk.matrix_from_array(np.ascontiguousarray(parameters[:9].reshape(3, 3))))
    transform.SetTranslation([float(v) for v in parameters[9:]])
    for index in interior(FIXED_SHAPE, margin=0, count=10):
        np.testing.assert_allclose(np.append(index, 1.0) @ result.theta[0].astype(np.float64),
                                   itk_voxel_map(index, transform, fixed_image, moving_image), atol=1e-3)


def test_elastix_bspline_on_oblique_images_on_different_grids(oblique_pair):
    fixed, moving, fixed_image, moving_image, truth = oblique_pair
    result = classical.elastix_bspline(fixed=fixed, moving=moving, fixed_geometry=fixed_image,
                                       moving_geometry=MOVING_GEOMETRY)
    assert result.ddf.shape == (1,) + FIXED_SHAPE + (3,) and len(result.details["parameter_maps"]) == 2
    points = interior(FIXED_SHAPE)
    expected = np.array([itk_voxel_map(i, truth, fixed_image, moving_image) for i in points])
    errors = np.linalg.norm(points + np.array([result.ddf[0][tuple(i)] for i in points]) - expected, axis=1)
    unregistered = np.linalg.norm(points - expected, axis=1)  # the moving voxel at the fixed index
    # elastix's B-spline stage itself drifts by up to ~2 voxels on this phantom (measured: its affine
    # stage is within 0.4, checked below); a wrong direction, spacing, origin or axis order puts the
    # field several voxels off (8.9 for the affine before #22)
    assert np.median(errors) < 2.5 and np.mean(errors) < 0.25 * np.mean(unregistered), (
        np.median(errors), np.mean(errors), np.mean(unregistered))
    # the chain's affine stage: transformix's own field, converted, equals its theta and the truth
    affine_map = result.details["parameter_maps"][0]
    theta = classical.theta_from_itk_affine(affine_map, moving_geometry=moving_image)[0]
    parameter_object = itk.ParameterObject.New()
    parameter_object.AddParameterMap(affine_map)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        field = np.array(itk.transformix_deformation_field(moving_image, parameter_object,
                                                           output_directory=folder, log_to_console=False))
    ddf = classical.ddf_from_itk_field(field, fixed_geometry=fixed_image, moving_geometry=moving_image)[0]
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    np.testing.assert_allclose(points + np.array([ddf[tuple(i)] for i in points]), homogeneous @ theta, atol=1e-3)
    assert np.mean(np.linalg.norm(homogeneous @ theta - expected, axis=1)) < 0.5


def test_geometry_is_checked():
    with pytest.raises(ValueError, match="`fixed_geometry\\['spacing'\\]`"):
        classical.elastix_affine(fixed=np.zeros((8, 8, 8)), moving=np.zeros((8, 8, 8)),
                                 fixed_geometry={"spacing": (1, 1)})
    with pytest.raises(ValueError, match="`moving_geometry` is"):
        classical.elastix_affine(fixed=np.zeros((8, 8, 8)), moving=np.zeros((8, 8, 8)),
                                 moving_geometry={"size": (1, 1, 1)})
    with pytest.raises(ValueError, match="spacing must be positive"):
        classical.ddf_from_itk_field(np.zeros((2, 2, 2, 3)), fixed_geometry={"spacing": (1, 0, 1)})


# ---------------------------------------------------------------- greedy (PICSL)
needs_greedy = pytest.mark.skipif(importlib.util.find_spec("picsl_greedy") is None,
                                  reason="picsl-greedy is not installed")


def blob_volume(shape, count=40, sigma=2.5, seed=1, margin=6):
    """Gaussian blobs on a ZERO background (greedy reads 0 outside the moving image)."""
    rng = np.random.default_rng(seed)
    index = np.indices(shape).reshape(3, -1).T
    centres = rng.uniform(margin, np.asarray(shape) - margin, size=(count, 3))
    weights = rng.uniform(0.5, 1.0, count)
    values = sum(w * np.exp(-np.sum((index - c) ** 2, axis=1) / (2 * sigma ** 2)) for c, w in zip(centres, weights))
    return values.reshape(shape).astype(np.float32)


def run_greedy(command, **objects):
    from picsl_greedy import Greedy3D

    greedy, log = Greedy3D(), io.StringIO()
    greedy.execute("-d 3 -V 0 " + command, out=log, err=log, **objects)
    return greedy


def sitk_image(volume, geometry):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    image.SetSpacing([float(v) for v in geometry["spacing"]])
    image.SetOrigin([float(v) for v in geometry["origin"]])
    image.SetDirection([float(v) for v in np.ravel(geometry["direction"])])
    return image


def ras_matrix(angle=0.2, translation=(2.0, -1.5, 1.0)):
    matrix = np.eye(4)
    matrix[:3, :3] = random_rotation(angle) @ np.diag([1.05, 0.95, 1.1])
    matrix[:3, 3] = translation
    return matrix


@needs_greedy
def test_greedy_matrix_converts_as_greedy_itself_reslices(tmp_path):
    """A hand-set RAS matrix, oblique anisotropic grids: the field greedy composes from it
    (-rc) and the image greedy resamples with it (-rm) agree with theta_from_greedy_matrix."""
    import SimpleITK as sitk

    matrix = ras_matrix()
    np.savetxt(tmp_path / "affine.mat", matrix)  # greedy's text format, 4 rows, as it writes it
    moving = smooth_volume(MOVING_SHAPE, sigma=2.0, seed=8)
    greedy = run_greedy(f"-rf fixed -rm moving resliced -rc composed -r {tmp_path / 'affine.mat'}",
                        fixed=sitk_image(np.zeros(FIXED_SHAPE, np.float32), FIXED_GEOMETRY),
                        moving=sitk_image(moving, MOVING_GEOMETRY), resliced=None, composed=None)
    theta = classical.theta_from_greedy_matrix(matrix, fixed_geometry=FIXED_GEOMETRY, moving_geometry=MOVING_GEOMETRY)
    index = np.indices(FIXED_SHAPE).transpose(1, 2, 3, 0).reshape(-1, 3)
    mapped = np.concatenate([index, np.ones((len(index), 1))], axis=1) @ theta[0]
    field = sitk.GetArrayFromImage(greedy["composed"])  # LPS mm on the fixed grid, ITK (x, y, z)
    ddf = classical.ddf_from_itk_field(field, fixed_geometry=FIXED_GEOMETRY, moving_geometry=MOVING_GEOMETRY)
    np.testing.assert_allclose(index + ddf[0].reshape(-1, 3), mapped, atol=1e-3)
    # greedy samples the moving image where theta says (linear interpolation both), inside it
    resliced = sitk.GetArrayFromImage(greedy["resliced"]).reshape(-1)
    inside = np.all((mapped > 0.5) & (mapped < np.asarray(MOVING_SHAPE) - 1.5), axis=1)
    expected = ndimage.map_coordinates(moving.astype(np.float64), mapped.T, order=1)
    assert inside.sum() > 1000
    np.testing.assert_allclose(resliced[inside], expected[inside], atol=1e-4)


@needs_greedy
def test_greedy_warp_and_affine_compose_as_greedy_itself_does(tmp_path):
    """greedy's own warp (a deformable run on an oblique grid, kept in memory) and a hand-set
    RAS matrix: ddf_from_greedy_warp equals the composed field greedy writes for its reslice
    chain ``-r warp affine`` (moving read at T(p + w(p)), not T(p) + w(p))."""
    import SimpleITK as sitk

    matrix = ras_matrix(0.3, (-1.0, 2.0, 0.5))
    np.savetxt(tmp_path / "affine.mat", matrix)
    fixed = blob_volume(FIXED_SHAPE, count=20, margin=4)
    moving = ndimage.shift(fixed, (2.0, -1.5, 1.0), order=3)
    # (the warp stays in greedy's memory: a warp FILE read after itk-elastix ran in the same
    # process was misread, as greedy's and itk's bundled ITK libraries met)
    greedy = run_greedy("-i fixed moving -m NCC 2x2x2 -n 20x10 -wp 0 -o warp",
                        fixed=sitk_image(fixed, FIXED_GEOMETRY), moving=sitk_image(moving, FIXED_GEOMETRY), warp=None)
    greedy.execute(f"-d 3 -V 0 -rf fixed -rc composed -r warp {tmp_path / 'affine.mat'}", out=io.StringIO(),
                   err=io.StringIO(), composed=None)
    warp = sitk.GetArrayFromImage(greedy["warp"])
    field = sitk.GetArrayFromImage(greedy["composed"])
    expected = classical.ddf_from_itk_field(field, fixed_geometry=FIXED_GEOMETRY, moving_geometry=MOVING_GEOMETRY)
    ddf = classical.ddf_from_greedy_warp(warp, matrix, fixed_geometry=FIXED_GEOMETRY,
                                         moving_geometry=MOVING_GEOMETRY)
    assert np.abs(warp).max() > 1.5 and ddf.shape == (1,) + FIXED_SHAPE + (3,)
    np.testing.assert_allclose(ddf, expected, atol=1e-3)
    wrong_order = classical.ddf_from_greedy_warp(np.zeros_like(warp), matrix, fixed_geometry=FIXED_GEOMETRY,
                                                 moving_geometry=MOVING_GEOMETRY)
    wrong_order = wrong_order + classical.ddf_from_itk_field(warp, fixed_geometry=MOVING_GEOMETRY,
                                                             moving_geometry=MOVING_GEOMETRY)
    assert np.abs(wrong_order - expected).max() > 0.1  # the test tells the two orders apart
    # the warp alone: p -> p + w(p)
    alone = classical.ddf_from_greedy_warp(warp, fixed_geometry=FIXED_GEOMETRY, moving_geometry=FIXED_GEOMETRY)
    np.testing.assert_allclose(alone, classical.ddf_from_itk_field(warp, fixed_geometry=FIXED_GEOMETRY,
                                                                    moving_geometry=FIXED_GEOMETRY), atol=1e-5)


@needs_greedy
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_greedy_affine_recovers_a_known_shift_along_each_axis(axis):
    fixed = blob_volume((32, 32, 32))
    shift = np.zeros(3)
    shift[axis] = 3.0
    moving = ndimage.shift(fixed, shift, order=3)  # moving(x) = fixed(x - s): the course's theta moves x by +s
    result = classical.greedy_affine(fixed=fixed, moving=moving, threads=1)
    assert result.method == "greedy affine" and result.theta.shape == (1, 4, 3)
    theta = result.theta[0].astype(np.float64)
    centre = (np.asarray(fixed.shape) - 1) / 2
    np.testing.assert_allclose(np.append(centre, 1.0) @ theta - centre, shift, atol=0.3)
    np.testing.assert_allclose(theta[:3], np.eye(3), atol=0.1)


@needs_greedy
def test_greedy_affine_recovers_a_known_affine_and_is_repeatable():
    fixed = blob_volume((32, 40, 40), count=60)
    theta_true = np.concatenate([random_rotation(0.05) @ np.diag([1.04, 0.97, 1.02]), [[1.5, -2.0, 0.8]]], 0)
    moving = warp_with_theta(fixed, theta_true)
    first = classical.greedy_affine(fixed=fixed, moving=moving, threads=1)
    second = classical.greedy_affine(fixed=fixed[None], moving=moving[None], threads=1)
    identity = np.concatenate([np.eye(3), np.zeros((1, 3))])
    assert residual(identity, theta_true, fixed.shape) > 4.0
    # greedy's defaults on this small phantom: 0.44 voxels (elastix: < 0.2 on its own pair)
    assert residual(first.theta[0], theta_true, fixed.shape) < 0.8
    np.testing.assert_array_equal(first.theta, second.theta)  # seed 1, one thread
    assert first.details["matrix"].shape == (4, 4) and len(first.history["metric"]) == len(first.history["level"])


@needs_greedy
def test_greedy_deformable_field_has_the_course_sign_and_axis_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fixed = blob_volume((24, 32, 32), count=30)
    moving = ndimage.shift(fixed, (0.0, 2.0, -1.0), order=3)
    for affine_first in (True, False):
        result = classical.greedy_deformable(fixed=fixed, moving=moving, affine_first=affine_first, threads=1)
        assert result.ddf.shape == (1, 24, 32, 32, 3)
        interior = result.ddf[0, 6:-6, 8:-8, 8:-8].reshape(-1, 3)
        np.testing.assert_allclose(interior.mean(axis=0), [0.0, 2.0, -1.0], atol=0.3)
        warped = ndimage.map_coordinates(moving, np.indices(fixed.shape) + np.moveaxis(result.ddf[0], -1, 0), order=1)
        before = np.abs(moving - fixed)[6:-6, 8:-8, 8:-8].mean()
        assert np.abs(warped - fixed)[6:-6, 8:-8, 8:-8].mean() < 0.3 * before
    assert result.method == "greedy deformable" and len(result.details["commands"]) == 1
    assert list(tmp_path.iterdir()) == []  # everything in memory


@needs_greedy
def test_greedy_on_oblique_images_on_different_grids():
    """The oblique phantom seen by a moving image on another oblique grid that COVERS the
    fixed one: greedy reads 0 outside the moving image, and on the elastix tests' moving grid
    (half the fixed field of view outside it) its affine shrank (determinant 0.2)."""
    geometry = dict(MOVING_GEOMETRY, origin=(-6.0, -12.0, -6.0))
    shape, shift = (48, 40, 36), np.array([1.5, -1.0, 2.0])
    fixed, moving = phantom(FIXED_SHAPE, FIXED_GEOMETRY, ramp=0.0), phantom(shape, geometry, shift, ramp=0.0)
    fixed_image, moving_image = itk_image(np.zeros(FIXED_SHAPE), FIXED_GEOMETRY), itk_image(np.zeros(shape), geometry)
    points = interior(FIXED_SHAPE)
    expected = np.array([itk_voxel_map(i, lambda p: list(np.asarray(p) + shift), fixed_image, moving_image)
                         for i in points])
    affine = classical.greedy_affine(fixed=fixed, moving=moving, fixed_geometry=FIXED_GEOMETRY,
                                     moving_geometry=moving_image, threads=1)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    errors = np.linalg.norm(homogeneous @ affine.theta[0].astype(np.float64) - expected, axis=1)
    assert np.mean(np.linalg.norm(points - expected, axis=1)) > 15  # the grids differ
    assert np.mean(errors) < 0.6, np.mean(errors)  # measured 0.25
    result = classical.greedy_deformable(fixed=fixed, moving=moving, fixed_geometry=fixed_image,
                                         moving_geometry=geometry, threads=1)
    errors = np.linalg.norm(points + np.array([result.ddf[0][tuple(i)] for i in points]) - expected, axis=1)
    assert np.mean(errors) < 0.5, np.mean(errors)  # measured 0.15


@needs_greedy
def test_greedy_inputs_are_checked():
    with pytest.raises(ValueError, match="`moving` has"):
        classical.greedy_affine(fixed=np.zeros((8, 8, 8)), moving=np.zeros((8, 8, 9)))
    with pytest.raises(ValueError, match="`initialization`"):
        classical.greedy_affine(fixed=np.zeros((8, 8, 8)), moving=np.zeros((8, 8, 8)), initialization="moments")
    with pytest.raises(ValueError, match="`iterations`"):
        classical.greedy_deformable(fixed=np.zeros((8, 8, 8)), moving=np.zeros((8, 8, 8)), iterations=(10, 0))
    with pytest.raises(ValueError, match="4x4"):
        classical.theta_from_greedy_matrix(np.eye(3))
    with pytest.raises(ValueError, match="`warp` has shape"):
        classical.ddf_from_greedy_warp(np.zeros((4, 4, 4)))


def test_what_c_code_prints_during_greedy_goes_into_its_log_not_the_console(capfd):
    import ctypes
    import io

    log = io.StringIO()
    with classical._process_stdout_into(log):
        ctypes.CDLL(None).printf(b"LINE SEARCH FAILED (a C printf)\n")
    print("after", flush=True)
    assert "LINE SEARCH FAILED (a C printf)" in log.getvalue()
    out = capfd.readouterr().out
    assert "LINE SEARCH" not in out and "after" in out
