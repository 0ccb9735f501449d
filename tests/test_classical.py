"""classical.py: elastix and scikit-image wrappers, checked against ITK, SciPy and known transforms.

The conversion from elastix's transform (physical ITK x/y/z points, fixed ->
moving) to the course's theta (numpy voxel indices, row vectors) is checked
against ITK's own point mapping and against scipy.ndimage.affine_transform; the
wrappers are checked on volumes warped with known transforms.
"""
import subprocess
import sys

import numpy as np
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
        "Direction": [repr(float(v)) for v in np.ravel(direction)],
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
    assert first["theta"].shape == (1, 4, 3)
    identity = np.concatenate([np.eye(3), np.zeros((1, 3))])
    assert residual(identity, theta_true, fixed.shape) > 2.0
    assert residual(first["theta"][0], theta_true, fixed.shape) < 0.2
    np.testing.assert_array_equal(first["theta"], second["theta"])


def test_elastix_affine_recovers_a_known_shift():
    fixed = smooth_volume((24, 32, 32), seed=2)
    moving = ndimage.shift(fixed, (0.0, 2.5, -1.5), order=3, mode="nearest")  # moving(x) = fixed(x - s)
    theta = classical.elastix_affine(fixed=fixed, moving=moving)["theta"][0]
    np.testing.assert_allclose(theta[3], [0.0, 2.5, -1.5], atol=0.25)  # warped(x) = moving(x + s)
    np.testing.assert_allclose(theta[:3], np.eye(3), atol=0.02)


def test_elastix_bspline_field_has_the_course_sign_and_axis_order():
    fixed = smooth_volume((20, 32, 32), seed=3)
    moving = ndimage.shift(fixed, (0.0, 2.0, -1.0), order=3, mode="nearest")
    result = classical.elastix_bspline(fixed=fixed, moving=moving)
    assert result["ddf"].shape == (1, 20, 32, 32, 3)
    interior = result["ddf"][0, 5:-5, 8:-8, 8:-8].reshape(-1, 3)
    np.testing.assert_allclose(interior.mean(axis=0), [0.0, 2.0, -1.0], atol=0.3)
    coords = np.moveaxis(np.indices(fixed.shape) + np.moveaxis(result["ddf"][0], -1, 0), 0, 0)
    warped = ndimage.map_coordinates(moving, coords, order=1)
    before = np.abs(moving - fixed)[5:-5, 8:-8, 8:-8].mean()
    after = np.abs(warped - fixed)[5:-5, 8:-8, 8:-8].mean()
    assert after < 0.3 * before


def test_phase_correlation_gives_the_course_sign():
    fixed = smooth_volume((16, 24, 24), seed=5)
    moving = np.roll(fixed, (1, -3, 2), axis=(0, 1, 2))  # moving(x) = fixed(x - s)
    result = classical.phase_correlation_shift(fixed=fixed, moving=moving, as_ddf=True)
    np.testing.assert_allclose(result["shift"], [1.0, -3.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(result["theta"][0, 3], [1.0, -3.0, 2.0], atol=1e-6)
    assert result["ddf"].shape == (1, 16, 24, 24, 3)
    warped = ndimage.map_coordinates(moving, np.indices(fixed.shape) + np.moveaxis(result["ddf"][0], -1, 0),
                                     order=1, mode="grid-wrap")
    np.testing.assert_allclose(warped, fixed, atol=1e-5)


def test_optical_flow_tvl1_recovers_a_smooth_shift():
    fixed = smooth_volume((16, 32, 32), sigma=3.0, seed=6)
    moving = ndimage.shift(fixed, (0.0, 1.5, -1.0), order=3, mode="nearest")
    result = classical.optical_flow_tvl1(fixed=fixed, moving=moving)
    assert result["ddf"].shape == (1, 16, 32, 32, 3)
    interior = result["ddf"][0, 4:-4, 8:-8, 8:-8].reshape(-1, 3).mean(axis=0)
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


def test_elastix_writes_nothing_into_the_working_directory(tmp_path, monkeypatch):
    """transformix writes its field file somewhere; never into the reader's folder."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    fixed = ndimage.gaussian_filter(rng.random((16, 16, 16)), 2).astype(np.float32)
    moving = np.roll(fixed, 1, axis=0)
    classical.elastix_bspline(fixed=fixed[None], moving=moving[None], affine_first=False)
    assert list(tmp_path.iterdir()) == []
