"""fields.py against NumPy/SciPy float64, analytic cases and per-voxel loops."""
import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import fields

RNG = np.random.default_rng(21)


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_gradient_is_numpy_gradient_bit_for_bit_and_same_in_tensorflow(axis):
    field = RNG.standard_normal((2, 5, 4, 6, 3))
    expected = np.gradient(field, axis=axis, edge_order=2)
    assert np.array_equal(fields.gradient(field, axis), expected)
    got = fields.gradient(tf.constant(field), axis)
    assert isinstance(got, tf.Tensor)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_central_differences_of_the_quadratic_extension_equal_the_gradient():
    field = RNG.standard_normal((1, 5, 6, 7, 2))
    extended = fields.extend_quadratically(field, 1)
    for axis, derivative in zip((1, 2, 3), fields.central_differences(extended)):
        np.testing.assert_allclose(derivative, np.gradient(field, axis=axis, edge_order=2), atol=1e-12)


def extension_by_hand(field, width):
    """The quadratic extension written out per axis: the parabola through the 3 outer
    voxels, evaluated at -1, -2 and at size, size + 1 (Lagrange form, float64)."""
    for axis in (1, 2, 3):
        take = lambda i: np.take(field, [i], axis=axis)  # noqa: E731
        n = field.shape[axis]
        # p(x) through (0, f0), (1, f1), (2, f2): p(-1) = 3 f0 - 3 f1 + f2, p(-2) = 6 f0 - 8 f1 + 3 f2
        low = [3 * take(0) - 3 * take(1) + take(2), 6 * take(0) - 8 * take(1) + 3 * take(2)][:width]
        high = [3 * take(n - 1) - 3 * take(n - 2) + take(n - 3),
                6 * take(n - 1) - 8 * take(n - 2) + 3 * take(n - 3)][:width]
        field = np.concatenate(low[::-1] + [field] + high, axis=axis)
    return field


@pytest.mark.parametrize("width", [1, 2])
def test_quadratic_extension_is_the_parabola_in_numpy_and_tensorflow(width):
    field = RNG.standard_normal((2, 5, 3, 7, 3))
    expected = extension_by_hand(field, width)
    np.testing.assert_allclose(fields.extend_quadratically(field, width), expected, rtol=1e-12, atol=1e-10)
    got = fields.extend_quadratically(tf.constant(field.astype(np.float32)), width)
    assert isinstance(got, tf.Tensor) and got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-3)
    # exact for a quadratic field: the extension continues it
    x = np.arange(-width, 6 + width, dtype=float)
    quadratic = (0.5 * x**2 - x + 2)[None, :, None, None, None] * np.ones((1, 1, 3, 3, 1))
    inner = quadratic[:, width:-width]
    extended = fields.extend_quadratically(inner, width)
    np.testing.assert_allclose(extended[:, :, width, width], quadratic[:, :, 0, 0], atol=1e-12)


def loop_central_determinant(ddf):
    """det(I + du/dx) per voxel with numpy.gradient's derivatives and np.linalg.det."""
    jac = np.stack([np.gradient(ddf, axis=a, edge_order=2) for a in (1, 2, 3)], axis=-1)
    return np.linalg.det(jac + np.eye(3))


def test_central_jacobian_determinant_matches_linalg_det_in_numpy_and_tensorflow():
    ddf = 0.4 * RNG.standard_normal((2, 5, 6, 4, 3))
    expected = loop_central_determinant(ddf)
    np.testing.assert_allclose(fields.jacobian_determinant(ddf), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fields.jacobian_determinant(tf.constant(ddf)).numpy(), expected, rtol=1e-10, atol=1e-12)


def loop_one_sided(ddf):
    """Float64 per-voxel loop: det(I + D u) for each of the 8 forward/backward choices,
    at a border the missing neighbour replaced by the other one-sided difference."""
    _, d1, d2, d3, _ = ddf.shape
    out = np.empty((8,) + ddf.shape[:4])
    for b, i, j, k in np.ndindex(*ddf.shape[:4]):
        for n, combo in enumerate(itertools.product((1, -1), repeat=3)):
            jac = np.eye(3)
            for axis, step in enumerate(combo):
                here = np.array([i, j, k])
                there = here.copy()
                there[axis] += step
                if not 0 <= there[axis] < (d1, d2, d3)[axis]:
                    step, there[axis] = -step, here[axis] - step
                jac[:, axis] += (ddf[(b,) + tuple(there)] - ddf[(b, i, j, k)]) * step
            out[n, b, i, j, k] = np.linalg.det(jac)
    return out


def test_one_sided_determinants_match_a_per_voxel_loop():
    ddf = 0.5 * RNG.standard_normal((2, 4, 3, 5, 3))
    expected = loop_one_sided(ddf)
    np.testing.assert_allclose(fields.one_sided_jacobian_determinants(ddf), expected, rtol=1e-10, atol=1e-12)
    got = fields.one_sided_jacobian_determinants(tf.constant(ddf, tf.float32)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert fields.ONE_SIDED_COMBINATIONS[0] == ("forward", "forward", "forward")


def test_one_sided_determinants_of_an_affine_field_are_its_determinant():
    matrix = 0.3 * RNG.standard_normal((3, 3))
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in (4, 5, 6)], indexing="ij"), -1)
    dets = fields.one_sided_jacobian_determinants((grid @ matrix + 2.0)[None])
    np.testing.assert_allclose(dets, np.linalg.det(np.eye(3) + matrix), rtol=1e-10)


def test_checkerboard_is_invisible_to_central_differences_but_not_to_one_sided_ones():
    ddf = np.zeros((1, 8, 8, 8, 3))
    ddf[0, ..., 1] = 0.6 * (-1.0) ** np.indices((8, 8, 8)).sum(0)
    inside = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    assert np.allclose(fields.jacobian_determinant(ddf)[inside], 1.0)
    assert fields.one_sided_jacobian_determinants(ddf).min() < 0


@pytest.mark.parametrize("call, message", [
    (lambda: fields.gradient(np.zeros((1, 2, 4, 4, 3)), 1), "at least 3 voxels"),
    (lambda: fields.gradient(np.zeros((1, 4, 4, 4, 3)), 0), "`axis` is 0"),
    (lambda: fields.jacobian_determinant(np.zeros((4, 4, 4, 3))), "`ddf` has shape (4, 4, 4, 3)"),
    (lambda: fields.one_sided_jacobian_determinants(np.zeros((1, 4, 4, 4, 2))), "3 displacements"),
    (lambda: fields.one_sided_difference(np.zeros((1, 4, 4, 4, 3)), 1, "up"), "`direction` is 'up'"),
    (lambda: fields.gaussian_kernel_1d(0.0), "`sigma` is 0.0"),
    (lambda: fields.extend_quadratically(np.zeros((1, 5, 2, 7, 3)), 1), "at least 3 voxels per axis"),
    (lambda: fields.extend_quadratically(np.zeros((1, 5, 4, 7, 3)), 3), "`width` is 3"),
    (lambda: fields.smooth_array(np.zeros((4, 4)), 1.0), "`volume` has shape (4, 4)"),
    (lambda: fields.smooth_tensor(np.zeros((1, 4, 4, 4)), -1.0), "`sigma` is -1.0"),
])
def test_bad_input_gets_clear_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.5, 6.0, 16.0, (0.0, 2.0, 1.0), (3.0, 0.5, 0.0)])
def test_smooth_tensor_and_smooth_array_match_scipy_nearest(sigma):
    volume = RNG.random((2, 13, 11, 9)).astype(np.float32)
    expected = np.stack([ndimage.gaussian_filter(v.astype(np.float64), sigma, mode="nearest", truncate=4.0)
                         for v in volume])
    np.testing.assert_allclose(fields.smooth_tensor(volume, sigma).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(fields.smooth_tensor(volume[..., None], sigma).numpy()[..., 0], expected, atol=1e-6)
    np.testing.assert_allclose(fields.smooth_array(volume, sigma), expected, atol=1e-6)
    np.testing.assert_allclose(fields.smooth_array(volume[0].astype(np.float64), sigma), expected[0], atol=1e-12)


def test_gaussian_kernel_is_scipys():
    for sigma in (0.5, 1.0, 3.3):
        radius = int(4.0 * sigma + 0.5)
        spike = np.zeros(2 * radius + 1)
        spike[radius] = 1.0
        expected = ndimage.gaussian_filter1d(spike, sigma, mode="constant", truncate=4.0)
        np.testing.assert_allclose(fields.gaussian_kernel_1d(sigma), expected, atol=1e-15)


def test_smooth_tensor_is_differentiable_and_compiles():
    volume = tf.constant(RNG.random((1, 6, 7, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(volume)
        total = tf.reduce_sum(fields.smooth_tensor(volume, 1.0) ** 2)
    assert np.all(np.isfinite(tape.gradient(total, volume).numpy()))
    compiled = tf.function(lambda v: fields.smooth_tensor(v, 1.0), jit_compile=True)
    np.testing.assert_allclose(compiled(volume), fields.smooth_tensor(volume, 1.0), atol=1e-6)
