"""affine.py against analytic cases, float64 NumPy and SciPy's own affine mapping."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from graph_ops import matrix_products, with_gradient
from tutorial_utils import affine, warp

RNG = np.random.default_rng(13)


def random_theta(batch=None, scale=0.3):
    linear = np.eye(3) + scale * RNG.standard_normal((3, 3) if batch is None else (batch, 3, 3))
    translation = 3.0 * RNG.standard_normal((1, 3) if batch is None else (batch, 1, 3))
    return np.concatenate([linear, translation], axis=-2)


def homogeneous(points):
    return np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)


def test_transform_points_is_the_row_vector_product():
    theta = random_theta()
    points = RNG.uniform(0, 10, (7, 3))
    np.testing.assert_allclose(affine.transform_points(theta, points), homogeneous(points) @ theta, rtol=1e-12)
    batch = random_theta(2)
    got = affine.transform_points(batch, points)
    assert got.shape == (2, 7, 3)
    for b in range(2):
        np.testing.assert_allclose(got[b], homogeneous(points) @ batch[b], rtol=1e-12)
    tensor = affine.transform_points(tf.constant(batch, tf.float32), tf.constant(points, tf.float32))
    assert isinstance(tensor, tf.Tensor)
    np.testing.assert_allclose(tensor.numpy(), got, rtol=1e-5, atol=1e-4)


def test_transform_points_agrees_with_scipy_affine_transform():
    # scipy.ndimage.affine_transform(matrix, offset) reads the input at matrix @ o + offset for
    # each output voxel o (column vectors): the package's theta is [matrix.T; offset].
    theta = random_theta(scale=0.1)
    theta[3] = [0.4, -0.3, 0.2]
    volume = RNG.random((9, 10, 11))
    out = ndimage.affine_transform(volume, theta[:3].T, offset=theta[3], order=1, mode="constant")
    grid = affine.reference_grid(volume.shape)
    mapped = affine.transform_points(theta, grid)
    ours = ndimage.map_coordinates(volume, np.moveaxis(mapped, -1, 0), order=1, mode="constant")
    np.testing.assert_allclose(ours, out, atol=1e-10)


def test_compose_invert_and_identity():
    a, b = random_theta(), random_theta()
    points = RNG.uniform(-5, 15, (20, 3))
    np.testing.assert_allclose(affine.transform_points(affine.compose(a, b), points),
                               homogeneous(homogeneous(points) @ a) @ b, rtol=1e-10)
    np.testing.assert_allclose(affine.compose(affine.invert(a), a), affine.identity(), atol=1e-12)
    np.testing.assert_allclose(affine.compose(a, affine.invert(a)), affine.identity(), atol=1e-12)
    np.testing.assert_allclose(affine.invert(a)[:3], np.linalg.inv(a[:3]), rtol=1e-10)
    assert affine.compose(random_theta(3), random_theta(3)).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="singular"):
        affine.invert(np.zeros((4, 3)))


def test_centre_keeps_the_grid_centre_in_place():
    theta = random_theta()
    size = (9, 12, 7)
    centred = affine.centre(theta, size)
    middle = (np.array(size) - 1) / 2.0
    np.testing.assert_allclose(centred[:3], theta[:3])
    np.testing.assert_allclose(affine.transform_points(centred, middle), middle + theta[3], rtol=1e-12)
    tensor = affine.centre(tf.constant(theta[None], tf.float32), size)
    np.testing.assert_allclose(tensor.numpy()[0], centred, rtol=1e-5, atol=1e-5)


def test_ddf_from_affine_is_the_displacement_at_every_voxel():
    theta = random_theta(2)
    size = (4, 5, 3)
    ddf = affine.ddf_from_affine(theta, size)
    assert ddf.shape == (2,) + size + (3,)
    for b in range(2):
        for index in [(0, 0, 0), (3, 4, 2), (1, 2, 1)]:
            point = np.array(index, float)
            np.testing.assert_allclose(ddf[(b,) + index], homogeneous(point) @ theta[b] - point, rtol=1e-12)
    tensor = warp.ddf_from_affine(tf.constant(theta, tf.float32), size)
    np.testing.assert_allclose(tensor.numpy(), ddf, rtol=1e-5, atol=1e-5)


def test_parameterisation_round_trip_and_formula():
    size = (9, 11, 5)
    to_theta, from_theta = affine.affine_parameterisation(size)
    np.testing.assert_allclose(from_theta(affine.identity()), affine.identity(), atol=1e-12)
    parameters = affine.identity() + 0.1 * RNG.standard_normal((4, 3))
    theta = to_theta(parameters)
    assert theta.shape == (1, 4, 3)
    middle = (np.array(size) - 1) / 2.0
    scale = max(np.sqrt(np.mean(middle ** 2)), 1.0)
    points = RNG.uniform(0, 10, (6, 3))
    expected = middle + (points - middle) @ parameters[:3] + scale * parameters[3]  # the documented map
    np.testing.assert_allclose(affine.transform_points(theta[0], points), expected, rtol=1e-10)
    np.testing.assert_allclose(from_theta(theta), parameters, rtol=1e-10, atol=1e-12)
    # the same constants in TensorFlow: matmul and add, differentiable
    variable = tf.Variable(parameters.astype(np.float32))
    with tf.GradientTape() as tape:
        out = to_theta(variable)
        total = tf.reduce_sum(out)
    assert isinstance(out, tf.Tensor)
    np.testing.assert_allclose(out.numpy(), theta, rtol=1e-5, atol=1e-5)
    assert tape.gradient(total, variable) is not None
    np.testing.assert_allclose(from_theta(out).numpy(), parameters, rtol=1e-4, atol=1e-5)
    matrix, offset, inverse = affine.parameterisation_matrices(size)
    np.testing.assert_allclose(matrix @ inverse, np.eye(4), atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: affine.as_theta(np.zeros((3, 3))), "`theta` has shape (3, 3)"),
    (lambda: affine.as_theta(np.full((4, 3), np.nan)), "non-finite"),
    (lambda: affine.grid_centre((4, 4)), "`grid_size` is (4, 4)"),
    (lambda: affine.compose(np.zeros((4, 3)), np.zeros((2, 3))), "`second` has shape"),
])
def test_bad_input_gets_clear_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_tensor_paths_have_no_matrix_product_and_keep_float32_at_large_coordinates():
    # TensorFloat-32 (TensorFlow's default for matrix products on Ampere and later GPUs)
    # would round a coordinate of 250 to a step of 0.125; the tensor paths use
    # elementwise products, so the graph has no matrix product to round and the
    # values are float32's. (The op check is what fails on any machine if a matmul
    # comes back; the values only differ on such a GPU.)
    theta, batch = random_theta(scale=0.1), random_theta(2, scale=0.1)
    points = RNG.uniform(150, 250, (64, 3))
    grid = tf.constant(affine.reference_grid((4, 5, 6)), tf.float32)
    to_theta, from_theta = affine.affine_parameterisation((40, 250, 250))

    cases = {
        "transform_points": (lambda t: affine.transform_points(t, tf.constant(points, tf.float32)), theta),
        "transform_points batched grid": (lambda t: affine.transform_points(t, grid), batch),
        "ddf_from_affine": (lambda t: affine.ddf_from_affine(t, (4, 5, 6)), batch),
        "centre": (lambda t: affine.centre(t, (40, 250, 250)), theta),
        "to_theta": (lambda p: to_theta(p), theta),
        "from_theta": (lambda t: from_theta(t), theta),
    }
    for name, (function, value) in cases.items():
        assert matrix_products(with_gradient(function), tf.constant(value, tf.float32)) == set(), name
    got = affine.transform_points(tf.constant(theta, tf.float32), tf.constant(points, tf.float32)).numpy()
    expected = homogeneous(points.astype(np.float32).astype(np.float64)) @ theta.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)  # float32 of ~250: 3e-5 per product
