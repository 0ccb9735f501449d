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
    step_xla, theta_xla = register.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01, jit_compile=True)
    step_graph, theta_graph = register.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01, jit_compile=False)
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
    step_xla, field_xla, _ = register.make_ddf_step(fixed=fixed, moving=moving, jit_compile=True, **options)
    step_graph, field_graph, _ = register.make_ddf_step(fixed=fixed, moving=moving, jit_compile=False, **options)
    np.testing.assert_array_equal(field_xla.numpy(), field_graph.numpy())
    for _ in range(3):
        np.testing.assert_allclose(np.array(step_xla()), np.array(step_graph()), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(field_xla.numpy(), field_graph.numpy(), atol=1e-3)


def test_register_ddf_finds_a_known_shift():
    fixed = tf.constant(smooth_volume((16, 32, 32), 3.0))
    # moving(x) = fixed(x - e2), so the DDF that aligns it is +1 voxel along d2
    moving = tf.constant(np.roll(fixed.numpy(), 1, axis=2))
    result = register.register_ddf(fixed=fixed, moving=moving, iterations=100, progress=False, seed=0)
    assert result["ddf"].shape == (1, 16, 32, 32, 3)
    assert len(result["history"]["total"]) == 100
    interior = result["ddf"][0, 4:-4, 8:-8, 8:-8]
    assert interior[..., 1].mean() > 0.6
    assert np.abs(interior[..., [0, 2]]).mean() < 0.2


def test_wrong_pair_shapes_are_refused():
    with pytest.raises(ValueError, match="`moving` has shape"):
        register.make_affine_step(fixed=np.zeros((1, 4, 4, 4)), moving=np.zeros((1, 4, 4, 5)))


# --------------------------------------------------------------------------
# multi-resolution (nonrigid section): pyramid and field upsampling
# --------------------------------------------------------------------------
def test_gaussian_pyramid_matches_skimage_pyramid_gaussian():
    from skimage.transform import pyramid_gaussian

    volume = RNG.random((20, 33, 16))
    ours = register.gaussian_pyramid(volume, 3, downscale=2)
    reference = list(pyramid_gaussian(volume, max_layer=2, downscale=2, channel_axis=None))
    assert [level.shape for level in ours] == [level.shape for level in reference[::-1]]
    for level, expected in zip(ours, reference[::-1]):
        np.testing.assert_allclose(level, expected, atol=1e-5)


def scipy_reduce(volume, factors):
    """One anisotropic pyramid level by SciPy only: Gaussian, then linear sampling at
    the coarse voxel centres ``(q + 0.5) f - 0.5`` (edges clamped)."""
    sigma = [2 * f / 6 if f > 1 else 0 for f in factors]
    smoothed = ndimage.gaussian_filter(volume, sigma, mode="reflect")
    axes = [(np.arange(int(np.ceil(s / f))) + 0.5) * (s / np.ceil(s / f)) - 0.5
            for s, f in zip(volume.shape, factors)]
    coordinates = np.stack(np.meshgrid(*axes, indexing="ij"))
    return ndimage.map_coordinates(smoothed, coordinates, order=1, mode="nearest")


def test_gaussian_pyramid_anisotropic_matches_scipy_and_keeps_batch():
    volume = RNG.random((2, 8, 24, 30))
    pyramid = register.gaussian_pyramid(volume, 3, downscale=(1, 2, 2))
    assert [p.shape for p in pyramid] == [(2, 8, 6, 8), (2, 8, 12, 15), (2, 8, 24, 30)]
    np.testing.assert_array_equal(pyramid[-1], volume.astype(np.float32))
    for b in range(2):
        middle = scipy_reduce(volume[b], (1, 2, 2))
        np.testing.assert_allclose(pyramid[1][b], middle, atol=1e-5)
        np.testing.assert_allclose(pyramid[0][b], scipy_reduce(middle, (1, 2, 2)), atol=1e-5)


def affine_ddf_centres(linear, shift, size, ratio):
    """The DDF, in voxels of a grid of ``size``, of the transform that maps physical
    points (voxel centres ``(p + 0.5) * ratio`` of a unit grid) by ``y = x A + t``."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in size],
                                indexing="ij"), axis=-1)
    physical = (grid + 0.5) / ratio
    moved = physical @ linear + shift
    return (moved * ratio - 0.5 - grid)[None]


def test_upsample_field_keeps_an_affine_field_affine():
    linear = np.eye(3) + RNG.uniform(-0.1, 0.1, (3, 3))
    shift = RNG.uniform(-1, 1, 3)
    coarse_size, fine_size = (8, 6, 10), (8, 12, 20)
    coarse = affine_ddf_centres(linear, shift, coarse_size, np.array(coarse_size, float))
    fine = affine_ddf_centres(linear, shift, fine_size, np.array(fine_size, float))
    np.testing.assert_allclose(register.upsample_field(coarse, fine_size), fine, atol=1e-4)


def test_upsample_field_interior_matches_skimage_resize():
    from skimage.transform import resize

    coarse = RNG.standard_normal((1, 5, 7, 6, 3))
    fine = register.upsample_field(coarse, (5, 14, 12))
    for c, ratio in enumerate((1.0, 2.0, 2.0)):
        expected = ratio * resize(coarse[0, ..., c], (5, 14, 12), order=1, mode="edge",
                                  anti_aliasing=False)
        # the two differ only where resize clamps and we extrapolate: the outer half voxel
        np.testing.assert_allclose(fine[0, :, 1:-1, 1:-1, c], expected[:, 1:-1, 1:-1], atol=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: register.gaussian_pyramid(np.zeros((4, 4)), 2), "`volume` has shape"),
        (lambda: register.gaussian_pyramid(np.zeros((4, 4, 4)), 0), "`levels` is 0"),
        (lambda: register.gaussian_pyramid(np.zeros((4, 4, 4)), 2, 0.5), "`downscale` is"),
        (lambda: register.upsample_field(np.zeros((1, 4, 4, 4)), (8, 8, 8)), "`field` has shape"),
        (lambda: register.upsample_field(np.zeros((1, 4, 4, 4, 3)), (2, 8, 8)), "`size` is"),
    ],
)
def test_pyramid_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------
# nonrigid section: folding penalty, affine base on pyramid levels, register_nonrigid
# --------------------------------------------------------------------------
def test_folding_penalty_matches_numpy_jacobian():
    from tutorial_utils import metrics

    rough = (1.2 * RNG.standard_normal((2, 6, 7, 8, 3))).astype(np.float32)
    det = metrics.jacobian_determinant(rough.astype(np.float64))  # numpy.gradient, edge_order 2
    for threshold in (0.0, 0.1):
        expected = np.maximum(threshold - det.astype(np.float64), 0).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(register.folding_penalty(rough, threshold), expected, rtol=1e-4)
    assert expected.min() > 0  # the case does fold somewhere
    smooth = warp.ddf_from_affine(warp.random_transform_generator(1, 0.1, seed=1), (6, 7, 8))
    assert float(register.folding_penalty(smooth)[0]) == 0.0


def test_folding_penalty_gradient_matches_finite_differences():
    ddf = tf.constant((0.6 * RNG.standard_normal((1, 4, 4, 4, 3))).astype(np.float32))
    theoretical, numerical = tf.test.compute_gradient(
        lambda d: register.folding_penalty(d, 0.1), [ddf], delta=1e-3)
    scale = np.abs(numerical[0]).max()
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=0.05 * scale)


def test_affine_on_a_level_upsamples_to_warps_affine_ddf():
    theta = warp.random_transform_generator(1, 0.1, seed=4).numpy()
    theta[0, 3] = [0.5, -2.0, 3.0]
    size, level = (8, 24, 20), (8, 6, 5)
    expected = warp.ddf_from_affine(theta, size).numpy()
    np.testing.assert_allclose(register._affine_ddf_on_level(theta, size, size), expected, atol=1e-4)
    coarse = register._affine_ddf_on_level(theta, size, level)
    np.testing.assert_allclose(register.upsample_field(coarse, size), expected, atol=1e-4)


def test_register_nonrigid_recovers_a_smooth_deformation_with_affine_base():
    size = (8, 32, 32)
    fixed = smooth_volume(size, 2.5)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in size], indexing="ij"), -1)
    bump = np.exp(-((grid[..., 1] - 16) ** 2 + (grid[..., 2] - 16) ** 2) / 60.0)
    true_ddf = np.zeros((1,) + size + (3,), np.float32)
    true_ddf[0, ..., 1] = 1.0 + 1.5 * bump  # a shift plus a smooth local bulge
    # moving(x) = fixed(x - t(x)): warping it with about t gives fixed back
    moving = warp.warp(fixed, -true_ddf).numpy()
    theta = warp.identity_affine(1).numpy()
    theta[0, 3, 1] = 1.0  # the affine part: the shift
    result = register.register_nonrigid(fixed=fixed, moving=moving, initial_theta=theta,
                                        iterations=(60, 40, 20), deform_weight=1.0,
                                        fold_weight=1.0, progress=False, seed=0)
    assert result["ddf"].shape == (1,) + size + (3,)
    assert set(result["history"]["level"]) == {0, 1, 2} and len(result["history"]["total"]) == 120
    assert result["seconds"] >= sum(result["level_seconds"]) > 0
    inside = (slice(2, -2), slice(6, -6), slice(6, -6))
    before = np.mean((moving[0][inside] - fixed[0][inside]) ** 2)
    after = np.mean((warp.warp(moving, result["ddf"]).numpy()[0][inside] - fixed[0][inside]) ** 2)
    assert after < 0.25 * before
    error = np.abs(result["ddf"][0][inside] - true_ddf[0][inside])
    assert np.median(error) < 0.5


def test_register_nonrigid_refuses_a_wrong_schedule():
    volume = np.zeros((1, 8, 16, 16), np.float32)
    with pytest.raises(ValueError, match="`iterations` is"):
        register.register_nonrigid(fixed=volume, moving=volume, levels=3, iterations=(10, 10))
    with pytest.raises(ValueError, match="`initial_theta` has shape"):
        register.register_nonrigid(fixed=volume, moving=volume, initial_theta=np.eye(3))
    with pytest.raises(ValueError, match="`moving` has shape"):
        register.register_nonrigid(fixed=volume, moving=volume[:, :4])


def test_run_steps_stops_with_a_message_when_the_loss_is_not_finite():
    values = iter([1.0, float("nan")])
    with pytest.raises(FloatingPointError, match="step 1 returned non-finite values"):
        register.run_steps(lambda: next(values), 5, progress=False)
