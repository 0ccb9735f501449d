"""register.py: the compiled (timed) steps agree with the plain TensorFlow path and make progress."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import metrics, register, warp

RNG = np.random.default_rng(5)


def smooth_volume(shape, sigma=2.0):
    volume = ndimage.gaussian_filter(RNG.standard_normal(shape), sigma)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)[None]


def test_affine_step_xla_matches_graph_and_recovers_transform():
    fixed = tf.constant(smooth_volume((24, 24, 12)))
    theta_true = warp.random_transform_generator(1, 0.1, seed=2)
    moving = warp.resample(fixed, warp.warp_grid(warp.get_reference_grid((24, 24, 12)), theta_true))
    step_xla, theta_xla = register.make_affine_step(fixed, moving, 0.01, jit_compile=True)
    step_graph, theta_graph = register.make_affine_step(fixed, moving, 0.01, jit_compile=False)
    for _ in range(3):
        np.testing.assert_allclose(step_xla().numpy(), step_graph().numpy(), rtol=1e-4)
    np.testing.assert_allclose(theta_xla.numpy(), theta_graph.numpy(), atol=1e-5)
    first = step_xla().numpy()
    for _ in range(100):
        last = step_xla().numpy()
    assert last < 0.5 * first


# --------------------------------------------------------------------------
# affine registration by stochastic sampling
# --------------------------------------------------------------------------
def test_sample_points_are_stateless_and_inside():
    first = register.sample_points((10, 12, 6), 500, seed=(3, 7), margin=1.0).numpy()
    again = register.sample_points((10, 12, 6), 500, seed=(3, 7), margin=1.0).numpy()
    other = register.sample_points((10, 12, 6), 500, seed=(3, 8), margin=1.0).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.min() >= 1.0 and np.all(first.max(axis=0) <= np.array([8.0, 10.0, 4.0]))
    assert np.mean(first != np.round(first)) > 0.99  # off the grid
    with pytest.raises(ValueError, match="`margin`"):
        register.sample_points((10, 12, 2), 5, seed=(0, 0), margin=1.0)


def test_point_sampler_matches_scipy():
    volume = smooth_volume((9, 11, 7))[0]
    points = np.concatenate([RNG.uniform(0, [8, 10, 6], size=(300, 3)),
                             [[-0.5, 3, 3], [4, 10.5, 2], [2, 2, 7.2]]]).astype(np.float32)
    ours = register._sample(tf.constant(volume), tf.constant(points)).numpy()
    expected = ndimage.map_coordinates(volume.astype(np.float64), points.T, order=1, mode="constant", cval=0.0)
    expected[-3:] = 0.0  # outside: zero, as warp.resample
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_sampled_ssd_is_exact_on_a_linear_image_with_overlap_mask():
    """Trilinear interpolation is exact on a linear image, so at the true shift the
    sampled SSD is 0, and the overlap fraction of a shift is known analytically."""
    shape = (12, 14, 10)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float64)
    slope = np.array([0.03, -0.02, 0.05])
    shift = np.array([0.0, 2.6, 0.0])
    fixed = (grid @ slope).astype(np.float32)
    moving = ((grid - shift) @ slope).astype(np.float32)  # moving(y) = fixed(y - shift)
    points = register.sample_points(shape, 20000, seed=(0, 1), margin=0.0)
    theta = np.concatenate([np.eye(3), shift[None]]).astype(np.float32)
    loss, overlap = register.sampled_dissimilarity(fixed, moving, points, theta)
    assert float(loss) < 1e-10
    expected_overlap = (shape[1] - 1 - shift[1]) / (shape[1] - 1)  # mapped d2 must stay <= 13
    assert abs(float(overlap) - expected_overlap) < 0.01
    off = theta.copy()
    off[3, 0] = 0.5
    loss_off, _ = register.sampled_dissimilarity(fixed, moving, points, off)
    np.testing.assert_allclose(float(loss_off), (0.5 * slope[0]) ** 2, rtol=1e-3)  # constant offset


def test_sampled_loss_gradient_matches_finite_differences_in_float64():
    fixed = smooth_volume((10, 12, 8), 1.5)[0]
    moving = np.roll(fixed, 1, axis=1)
    points = register.sample_points(fixed.shape, 2000, seed=(1, 2), margin=1.0)
    theta = tf.constant(np.concatenate([np.eye(3) * 1.01, [[0.2, 0.7, -0.1]]]).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss, _ = register.sampled_dissimilarity(fixed, moving, points, theta)
    gradient = tape.gradient(loss, theta).numpy()

    def numpy_loss(matrix):
        p = points.numpy().astype(np.float64)
        mapped = p @ matrix[:3] + matrix[3]
        inside = np.all((mapped >= 0) & (mapped <= np.array(fixed.shape) - 1), axis=1)
        f = ndimage.map_coordinates(fixed.astype(np.float64), p.T, order=1)
        m = ndimage.map_coordinates(moving.astype(np.float64), mapped.T, order=1)
        return np.sum(inside * (f - m) ** 2) / inside.sum()

    base = theta.numpy().astype(np.float64)
    for row, col in [(3, 0), (3, 1), (3, 2), (0, 0), (1, 2)]:
        step = 1e-4 if row < 3 else 1e-3
        plus, minus = base.copy(), base.copy()
        plus[row, col] += step
        minus[row, col] -= step
        numeric = (numpy_loss(plus) - numpy_loss(minus)) / (2 * step)
        np.testing.assert_allclose(gradient[row, col], numeric, rtol=0.05, atol=1e-5)


def test_affine_parameterisation_is_centred_and_invertible():
    to_theta, from_theta = register.affine_parameterisation((21, 31, 11))
    theta = warp.random_transform_generator(1, 0.1, seed=3)
    np.testing.assert_allclose(to_theta(from_theta(theta)).numpy(), theta.numpy(), atol=1e-5)
    parameters = from_theta(warp.identity_affine(1)).numpy()
    parameters[:3] = np.diag([1.1, 1.0, 1.0])  # scale about the centre: the centre stays put
    centre = np.array([10.0, 15.0, 5.0, 1.0])
    np.testing.assert_allclose(centre @ to_theta(tf.constant(parameters)).numpy()[0], centre[:3], atol=1e-5)


def test_register_affine_recovers_a_known_affine_deterministically():
    fixed = smooth_volume((32, 36, 24), 2.5)
    theta_true = warp.random_transform_generator(1, 0.15, seed=4)
    grid = warp.get_reference_grid(fixed.shape[1:4])
    moving = warp.resample(fixed, warp.warp_grid(grid, theta_true)).numpy()
    options = dict(iterations=(100, 100, 100, 200), progress=False)
    result = register.register_affine(fixed=fixed, moving=moving, **options)
    again = register.register_affine(fixed=fixed, moving=moving, **options)
    assert result["theta"].shape == (1, 4, 3) and result["iterations"] == 500
    np.testing.assert_array_equal(result["theta"], again["theta"])
    before = metrics.affine_residual(warp.identity_affine(1).numpy(), theta_true.numpy(), fixed.shape[1:4])
    after = metrics.affine_residual(result["theta"], theta_true.numpy(), fixed.shape[1:4])
    assert before[0] > 1.5 and after[0] < 0.1 and after[0] < 0.05 * before[0], (before, after)
    assert set(result["history"]) == {"loss", "movement", "overlap", "level"}
    assert result["seconds"] > 0


def test_register_affine_refuses_bad_settings():
    volume = smooth_volume((8, 8, 8))
    with pytest.raises(ValueError, match="`sigmas`"):
        register.register_affine(fixed=volume, moving=volume, sigmas=(2, 1), iterations=(10,))
    with pytest.raises(ValueError, match="`moving` has shape"):
        register.register_affine(fixed=volume, moving=smooth_volume((8, 8, 9)))
    with pytest.raises(ValueError, match="`average_last`"):
        register.register_affine(fixed=volume, moving=volume, average_last=1.0)


@pytest.mark.parametrize("velocity", [False, True])
def test_ddf_step_xla_matches_graph(velocity):
    fixed = tf.constant(smooth_volume((12, 16, 16)))
    moving = tf.constant(np.roll(fixed.numpy(), 1, axis=2))
    options = dict(learning_rate=0.1, velocity=velocity, seed=3)
    step_xla, field_xla, _ = register.make_ddf_step(fixed, moving, jit_compile=True, **options)
    step_graph, field_graph, _ = register.make_ddf_step(fixed, moving, jit_compile=False, **options)
    np.testing.assert_array_equal(field_xla.numpy(), field_graph.numpy())
    for _ in range(3):
        np.testing.assert_allclose(np.array(step_xla()), np.array(step_graph()), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(field_xla.numpy(), field_graph.numpy(), atol=1e-3)


def test_register_ddf_finds_a_known_shift():
    fixed = tf.constant(smooth_volume((16, 32, 32), 3.0))
    # moving(x) = fixed(x - e2), so the DDF that aligns it is +1 voxel along d2
    moving = tf.constant(np.roll(fixed.numpy(), 1, axis=2))
    result = register.register_ddf(fixed, moving, iterations=100, progress=False, seed=0)
    assert result["ddf"].shape == (1, 16, 32, 32, 3)
    assert len(result["history"]["total"]) == 100
    interior = result["ddf"][0, 4:-4, 8:-8, 8:-8]
    assert interior[..., 1].mean() > 0.6
    assert np.abs(interior[..., [0, 2]]).mean() < 0.2


def test_wrong_pair_shapes_are_refused():
    with pytest.raises(ValueError, match="`moving` has shape"):
        register.make_affine_step(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 5)))
