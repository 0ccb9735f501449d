"""register.affine: sampled losses, centred parameters, the stochastic Adam step, the Gauss-Newton step
and register_affine."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from graph_ops import matrix_products, with_gradient
from tutorial_utils import metrics, register, warp
from tutorial_utils.register import affine

RNG = np.random.default_rng(5)


def smooth_volume(shape, sigma=2.0, seed=None):
    """A smooth random volume in [0, 1]; ``seed`` makes it independent of the tests run before."""
    rng = RNG if seed is None else np.random.default_rng(seed)
    volume = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)[None]


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


@pytest.mark.slow  # deselected under the lowest TensorFlow (scripts/test_colab.sh)
def test_register_affine_recovers_a_known_affine_deterministically():
    fixed = smooth_volume((32, 36, 24), 2.5, seed=5)  # the same volume whatever ran before
    theta_true = warp.random_transform_generator(1, 0.15, seed=4)
    grid = warp.get_reference_grid(fixed.shape[1:4])
    moving = warp.resample(fixed, warp.warp_grid(grid, theta_true)).numpy()
    options = dict(iterations=(100, 100, 100, 200), progress=False)
    result = register.register_affine(fixed=fixed, moving=moving, **options)
    again = register.register_affine(fixed=fixed, moving=moving, **options)
    assert result.theta.shape == (1, 4, 3) and result.iterations == 500
    np.testing.assert_array_equal(result.theta, again.theta)
    before = metrics.affine_residual(warp.identity_affine(1).numpy(), theta_true.numpy(), fixed.shape[1:4])
    after = metrics.affine_residual(result.theta, theta_true.numpy(), fixed.shape[1:4])
    assert before[0] > 1.5 and after[0] < 0.1 and after[0] < 0.05 * before[0], (before, after)
    assert set(result.history) == {"loss", "movement", "overlap", "iterations", "level"}
    assert result.seconds > 0


def test_register_affine_refuses_bad_settings():
    volume = smooth_volume((8, 8, 8))
    with pytest.raises(ValueError, match="`sigmas`"):
        register.register_affine(fixed=volume, moving=volume, sigmas=(2, 1), iterations=(10,))
    with pytest.raises(ValueError, match="`moving` has shape"):
        register.register_affine(fixed=volume, moving=smooth_volume((8, 8, 9)))
    with pytest.raises(ValueError, match="`average_last`"):
        register.register_affine(fixed=volume, moving=volume, average_last=1.0)



# --------------------------------------------------------------------------
# Gauss-Newton: the default optimiser of register_affine
# --------------------------------------------------------------------------
def test_gauss_newton_step_solves_the_normal_equations_of_a_finite_difference_jacobian():
    """The step equals the damped Gauss-Newton step built independently: the residuals by
    SciPy's trilinear interpolation, their Jacobian by central differences (float64)."""
    fixed = smooth_volume((14, 16, 12), 2.0, seed=21)[0].astype(np.float64)
    moving = ndimage.shift(fixed, (0.7, -0.4, 0.3), order=3, mode="nearest")
    rng = np.random.default_rng(3)
    points = 1.0 + rng.random((3000, 3)) * (np.array(fixed.shape) - 3.0)
    matrix, offset, _ = register.affine.parameterisation_matrices(fixed.shape)
    parameters = np.array([[1.01, 0.02, 0.0], [0.0, 0.98, -0.01], [0.01, 0.0, 1.0], [0.02, -0.01, 0.03]])

    def residuals(params):
        theta = matrix @ params + offset
        mapped = points @ theta[:3] + theta[3]
        return (ndimage.map_coordinates(moving, mapped.T, order=1)
                - ndimage.map_coordinates(fixed, points.T, order=1))

    columns = []
    for index in range(12):
        delta = np.zeros(12)
        delta[index] = 1e-7
        columns.append((residuals(parameters + delta.reshape(4, 3)) - residuals(parameters - delta.reshape(4, 3)))
                       / 2e-7)
    jacobian = np.stack(columns, axis=1)
    normal = jacobian.T @ jacobian
    expected = np.linalg.solve(normal + 1e-3 * np.diag(np.diag(normal)), jacobian.T @ residuals(parameters))
    updated, loss, overlap = register.gauss_newton_step(fixed, moving, parameters, points, damping=1e-3,
                                                        max_step=100.0)
    np.testing.assert_allclose(parameters - updated, expected.reshape(4, 3), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(loss, np.mean(residuals(parameters) ** 2), rtol=1e-12)
    assert overlap == 1.0


def test_gauss_newton_step_is_a_trust_region_and_refuses_what_it_cannot_fit():
    fixed = smooth_volume((14, 16, 12), 2.0, seed=22)[0]
    moving = np.roll(fixed, 3, axis=0)
    points = 1.0 + np.random.default_rng(4).random((2000, 3)) * (np.array(fixed.shape) - 3.0)
    identity = register.affine_parameterisation(fixed.shape)[1](warp.identity_affine(1).numpy())
    updated, _, _ = register.gauss_newton_step(fixed, moving, identity, points, max_step=0.5)
    matrix, _, _ = register.affine.parameterisation_matrices(fixed.shape)
    corners = np.array([[x, y, z, 1.0] for x in (0, 13) for y in (0, 15) for z in (0, 11)]) @ matrix
    assert np.max(np.linalg.norm(corners @ (updated - identity), axis=1)) == pytest.approx(0.5)
    far = identity.copy()
    far[3] = [40.0, 0.0, 0.0]  # translated far outside the moving volume
    with pytest.raises(ValueError, match="map inside the moving image"):
        register.gauss_newton_step(fixed, moving, far, points)
    with pytest.raises(ValueError, match="no gradient"):
        register.gauss_newton_step(fixed, np.ones_like(fixed), identity, points)
    with pytest.raises(ValueError, match="two \\(d1, d2, d3\\) images of one shape"):
        register.gauss_newton_step(fixed, moving[:-1], identity, points)
    with pytest.raises(ValueError, match="n >= 12"):
        register.gauss_newton_step(fixed, moving, identity, points[:11])
    with pytest.raises(ValueError, match="finite: False"):
        register.gauss_newton_step(fixed, moving, identity, np.vstack([points, [[np.nan, 1.0, 1.0]]]))
    with pytest.raises(ValueError, match=r"shape \(2000, 2\)"):
        register.gauss_newton_step(fixed, moving, identity, points[:, :2])
    with pytest.raises(ValueError, match="`max_step` -1"):
        register.gauss_newton_step(fixed, moving, identity, points, max_step=-1)
    broken = moving.copy()
    broken[5:9] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values at the sampled points"):
        register.gauss_newton_step(fixed, broken, identity, points)


@pytest.mark.slow  # deselected under the lowest TensorFlow (scripts/test_colab.sh)
def test_register_affine_gauss_newton_recovers_a_known_affine_deterministically():
    fixed = smooth_volume((32, 36, 24), 2.5, seed=5)
    theta_true = warp.random_transform_generator(1, 0.15, seed=4)
    moving = warp.resample(fixed, warp.warp_grid(warp.get_reference_grid(fixed.shape[1:4]), theta_true)).numpy()
    result = register.register_affine(fixed=fixed, moving=moving, progress=False)
    again = register.register_affine(fixed=fixed, moving=moving, progress=False)
    np.testing.assert_array_equal(result.theta, again.theta)
    assert result.method == "register_affine (gauss-newton)" and result.iterations == 45
    assert result.history["iterations"] == [1] * 45
    assert result.history["level"] == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 30
    before = metrics.affine_residual(warp.identity_affine(1).numpy(), theta_true.numpy(), fixed.shape[1:4])
    after = metrics.affine_residual(result.theta, theta_true.numpy(), fixed.shape[1:4])
    # the Adam test's bound: the moving image is a trilinear resampling, so the SSD's minimum
    # is a few hundredths of a voxel off the truth on this small volume for either optimiser
    assert before[0] > 1.5 and after[0] < 0.1 and after[0] < 0.05 * before[0], (before, after)
    other = register.register_affine(fixed=fixed, moving=moving, progress=False, seed=1)
    assert not np.array_equal(other.theta, result.theta)  # the seed draws the points
    negative = register.register_affine(fixed=fixed, moving=moving, progress=False, seed=-1)  # any int, as Adam
    assert metrics.affine_residual(negative.theta, theta_true.numpy(), fixed.shape[1:4])[0] < 0.1


def test_register_affine_refuses_settings_of_the_other_optimiser():
    volume = smooth_volume((8, 8, 8))
    with pytest.raises(ValueError, match="`optimiser` is 'lbfgs'"):
        register.register_affine(fixed=volume, moving=volume, optimiser="lbfgs")
    with pytest.raises(ValueError, match="`learning_rate` applies to optimiser='adam' only"):
        register.register_affine(fixed=volume, moving=volume, learning_rate=0.1)
    with pytest.raises(ValueError, match="`image_loss`='ncc' applies to optimiser='adam' only"):
        register.register_affine(fixed=volume, moving=volume, image_loss="ncc")
    with pytest.raises(ValueError, match="`learning_rate`, `image_loss`='ncc' apply to optimiser='adam' only"):
        register.register_affine(fixed=volume, moving=volume, image_loss="ncc", learning_rate=0.1)
    with pytest.raises(ValueError, match="`image_loss` is 'foo'; sampled losses are"):
        register.register_affine(fixed=volume, moving=volume, image_loss="foo")
    with pytest.raises(ValueError, match="the default for optimiser='gauss-newton'"):
        register.register_affine(fixed=volume, moving=volume, sigmas=(1.0,))
    with pytest.raises(ValueError, match="`margin` is 3.5"):  # (8 - 1) / 2: every point on one plane
        register.register_affine(fixed=volume, moving=volume, margin=3.5)
    with pytest.raises(ValueError, match="`seed` is 1.5"):
        register.register_affine(fixed=volume, moving=volume, seed=1.5)
    with pytest.raises(ValueError, match="`fixed` is constant"):  # it would collapse the moving image silently
        register.register_affine(fixed=np.full_like(volume, 0.5), moving=volume)
    for optimiser in ("gauss-newton", "adam"):
        with pytest.raises(ValueError, match="`samples` is 5"):
            register.register_affine(fixed=volume, moving=volume, optimiser=optimiser, samples=5)
        with pytest.raises(ValueError, match="`initial_theta` has shape"):
            register.register_affine(fixed=volume, moving=volume, optimiser=optimiser, initial_theta=np.eye(3))
        with pytest.raises(ValueError, match="finite: False"):
            register.register_affine(fixed=volume, moving=volume, optimiser=optimiser,
                                     initial_theta=np.full((1, 4, 3), np.nan))


# --------------------------------------------------------------------------
# bookkeeping: what register_affine reports is what ran (issue #22, fault 3)
# --------------------------------------------------------------------------
def reference_affine_run(fixed, moving, sigmas, iterations, *, samples, learning_rate,
                         final_learning_rate, seed, per_call=25):
    """An eager re-run, written out here, recording (level, parameters) after every iteration.

    Adam as Kingma & Ba 2015 (Algorithm 1) by hand; the learning rate and the
    points follow the documented rules: rate held per block of ``per_call``
    iterations, geometric across a level's blocks; a call starting at Adam
    counter ``t`` draws ``samples * per_call`` points from seed ``(seed, t)``.
    """
    sizes = fixed.shape[1:4]
    to_theta, from_theta = register.affine_parameterisation(sizes)
    params = from_theta(warp.identity_affine(1))
    first = second = tf.zeros((4, 3))
    t, recorded = 0, []
    for level, (sigma, count) in enumerate(zip(sigmas, iterations)):
        f, m = (tf.constant(ndimage.gaussian_filter(image[0], sigma, mode="nearest") if sigma else image[0])
                for image in (fixed, moving))
        rates = np.geomspace(learning_rate, final_learning_rate, -(-count // per_call))
        for i in range(count):
            if i % per_call == 0:
                points = tf.reshape(register.sample_points(sizes, samples * per_call, (seed, t), 1.0),
                                    (per_call, samples, 3))
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss, _ = register.sampled_dissimilarity(f, m, points[i % per_call], to_theta(params))
            gradient = tape.gradient(loss, params)
            t += 1
            first = 0.9 * first + 0.1 * gradient
            second = 0.999 * second + 0.001 * gradient**2
            update = (first / (1 - 0.9**t)) / (tf.sqrt(second / (1 - 0.999**t)) + 1e-8)
            params = params - np.float32(rates[i // per_call]) * update
            recorded.append((level, params.numpy()))
    return to_theta, recorded


@pytest.mark.parametrize("sigmas, iterations, averaged", [((1.0,), (10,), 5), ((1.0, 0.0), (10, 30), 15)])
def test_register_affine_runs_and_averages_exactly_what_it_reports(sigmas, iterations, averaged):
    """A level of 10 runs 10 (not 25); (10, 30) runs 40 (not 50) and averages the last 15 of 30."""
    fixed = smooth_volume((20, 22, 16), 2.0)
    theta_true = warp.random_transform_generator(1, 0.1, seed=7)
    moving = warp.resample(fixed, warp.warp_grid(warp.get_reference_grid(fixed.shape[1:4]), theta_true)).numpy()
    options = dict(samples=256, learning_rate=0.05, final_learning_rate=0.002, seed=3)
    result = register.register_affine(fixed=fixed, moving=moving, sigmas=sigmas, iterations=iterations,
                                      average_last=0.5, progress=False, optimiser="adam", **options)
    assert result.iterations == sum(iterations)
    expected_calls = [n for count in iterations for n in [25] * (count // 25) + [count % 25] if n]
    assert result.history["iterations"] == expected_calls
    assert result.history["level"] == [level for level, count in enumerate(iterations)
                                       for _ in range(-(-count // 25))]
    assert len(result.level_seconds) == len(iterations) and sum(result.level_seconds) <= result.seconds

    to_theta, recorded = reference_affine_run(fixed, moving, sigmas, iterations, **options)
    assert len(recorded) == sum(iterations)
    finest = [params for level, params in recorded if level == len(iterations) - 1]
    expected = to_theta(tf.constant(np.mean(finest[-averaged:], axis=0, dtype=np.float64), tf.float32)).numpy()
    wrong = to_theta(tf.constant(np.mean(finest[-averaged - 5:], axis=0, dtype=np.float64), tf.float32)).numpy()
    gap = np.abs(wrong - expected).max()
    assert gap > 1e-3  # the case tells which iterations were averaged
    np.testing.assert_allclose(result.theta, expected, atol=0.05 * gap)


def test_register_affine_seconds_cover_the_whole_call():
    import time

    volume = smooth_volume((12, 12, 10))
    start = time.perf_counter()
    result = register.register_affine(fixed=volume, moving=volume[:, ::-1].copy(), sigmas=(1.0, 0.0),
                                      iterations=(5, 5), samples=64, progress=False)
    elapsed = time.perf_counter() - start
    assert result.seconds <= elapsed < result.seconds + 0.05 + 0.02 * elapsed
    assert 0 < sum(result.level_seconds) <= result.seconds


def test_affine_schedule_blocks_and_averaging():
    rates, averaged = affine.affine_schedule(60, learning_rate=0.1, final_learning_rate=0.001, block=25,
                                             average_last=0.29)
    np.testing.assert_allclose(rates, np.repeat([0.1, 0.01, 0.001], [25, 25, 10]), rtol=1e-12)
    assert averaged.sum() == 17 and averaged[-17:].all()  # floor(0.29 * 60) = 17
    rates, averaged = affine.affine_schedule(100, learning_rate=0.1, final_learning_rate=0.001,
                                             average_last=0.29)
    assert averaged.sum() == 29  # not 28: 0.29 * 100 is 28.999... in floating point
    with pytest.raises(ValueError, match="`iterations` is 0"):
        affine.affine_schedule(0, learning_rate=0.1, final_learning_rate=0.01)


def test_stochastic_step_counts_the_iterations_of_each_call():
    volume = tf.constant(smooth_volume((10, 10, 8))[0])
    step, state = register.make_stochastic_affine_step((10, 10, 8), samples=32, iterations_per_call=25)
    step(volume, volume, [0.01] * 10, [False] * 10)
    assert state["iterations"]() == 10
    step(volume, volume, [0.01] * 25, [False] * 24 + [True])
    assert state["iterations"]() == 35
    with pytest.raises(ValueError, match="`learning_rates` has 26 entries"):
        step(volume, volume, [0.01] * 26, [False] * 26)


def test_sampled_loss_and_its_gradient_have_no_matrix_product():
    # the affine recipe's whole iteration: points through theta, both images
    # resampled, the loss and its gradient; a matrix product there would be rounded
    # to TensorFloat-32 on Ampere and later GPUs (tests/graph_ops.py)
    rng = np.random.default_rng(2)
    fixed, moving = (tf.constant(rng.random((8, 9, 10)), tf.float32) for _ in range(2))
    points = affine.sample_points((8, 9, 10), 64, seed=(0, 1))
    to_theta, _ = affine.affine_parameterisation((8, 9, 10))

    def loss(parameters):
        return affine.sampled_dissimilarity(fixed, moving, points, to_theta(parameters), "ncc")[0]

    assert matrix_products(with_gradient(loss), tf.constant(np.eye(4, 3), tf.float32)) == set()
