"""warp.py against SciPy and analytic cases; gradients against finite differences."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from graph_ops import matrix_products
from tutorial_utils import warp

RNG = np.random.default_rng(1234)


def scipy_resample(volume, loc, mode="constant"):
    """Reference: scipy's trilinear interpolation for one volume (zero outside by default)."""
    return ndimage.map_coordinates(
        volume.astype(np.float64), np.moveaxis(loc, -1, 0).astype(np.float64), order=1, mode=mode, cval=0.0
    )


def compiled(fn):
    """The XLA-compiled path that the chapters and the benchmark use."""
    return tf.function(fn, jit_compile=True)


def test_reference_grid_values():
    grid = warp.get_reference_grid((3, 4, 5)).numpy()
    assert grid.shape == (3, 4, 5, 3)
    expected = np.stack(np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij"), -1)
    np.testing.assert_array_equal(grid, expected)


def test_warp_grid_identity_and_translation():
    grid = warp.get_reference_grid((4, 5, 6))
    np.testing.assert_allclose(warp.warp_grid(grid, warp.identity_affine())[0], grid, atol=1e-6)
    theta = warp.identity_affine().numpy()
    theta[0, 3] = [1.5, -2.0, 0.25]
    moved = warp.warp_grid(grid, theta)[0].numpy()
    np.testing.assert_allclose(moved - grid.numpy(), np.broadcast_to([1.5, -2.0, 0.25], moved.shape), atol=1e-6)


def test_warp_grid_matches_numpy_matrix_product():
    grid = warp.get_reference_grid((5, 6, 7))
    theta = warp.random_transform_generator(2, 0.3, seed=3)
    warped = warp.warp_grid(grid, theta).numpy()
    homogeneous = np.concatenate([grid.numpy(), np.ones((5, 6, 7, 1))], -1)
    for b in range(2):
        np.testing.assert_allclose(warped[b], homogeneous @ theta.numpy()[b], rtol=1e-5, atol=1e-4)


def test_random_transform_is_seeded_and_scales():
    first = warp.random_transform_generator(3, 0.2, seed=7).numpy()
    again = warp.random_transform_generator(3, 0.2, seed=7).numpy()
    other = warp.random_transform_generator(3, 0.2, seed=8).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    np.testing.assert_allclose(warp.random_transform_generator(1, 0.0, seed=1), warp.identity_affine(), atol=1e-6)
    identity = warp.identity_affine().numpy()
    small = np.abs(warp.random_transform_generator(20, 0.02, seed=1).numpy() - identity).mean()
    large = np.abs(warp.random_transform_generator(20, 0.2, seed=1).numpy() - identity).mean()
    assert large > 5 * small


@pytest.mark.parametrize("mode, scipy_mode", [("constant", "constant"), ("edge", "nearest"), ("nearest", "nearest")])
@pytest.mark.parametrize("channels", [None, 2])
@pytest.mark.parametrize("path", ["eager", "xla"])
def test_resample_matches_scipy_on_random_affines(channels, path, mode, scipy_mode):
    size = (9, 11, 7)
    batch = 2
    shape = (batch,) + size + ((channels,) if channels else ())
    volume = RNG.standard_normal(shape).astype(np.float32)
    theta = warp.random_transform_generator(batch, 0.3, seed=11).numpy()
    theta[:, 3] += RNG.uniform(-2, 2, (batch, 3))  # push part of the grid outside
    loc = warp.warp_grid(warp.get_reference_grid(size), theta)
    fn = warp.resample if path == "eager" else compiled(lambda v, l: warp.resample(v, l, mode=mode))
    out = (fn(tf.constant(volume), loc, mode=mode) if path == "eager" else fn(tf.constant(volume), loc)).numpy()
    assert out.shape == shape
    for b in range(batch):
        for c in range(channels or 1):
            vol = volume[b] if channels is None else volume[b, ..., c]
            got = out[b] if channels is None else out[b, ..., c]
            np.testing.assert_allclose(got, scipy_resample(vol, loc.numpy()[b], scipy_mode), atol=2e-6)
    outside = np.any((loc.numpy() < 0) | (loc.numpy() > np.array(size) - 1), -1)
    assert outside.mean() > 0.1, "the test should include locations outside the volume"
    assert (out[outside] == 0).all() == (mode == "constant")


def test_resample_boundaries_exactly_like_scipy():
    volume = RNG.random((1, 4, 5, 6)).astype(np.float32)
    points = np.array(
        [
            [0, 0, 0], [3, 4, 5], [3, 0, 5], [0, 4.0, 2.5],  # on faces and corners: inside
            [-0.5, 1, 1], [3.5, 1, 1], [1, -1e-3, 1], [1, 1, 5.001],  # just outside: zero
            [-3, -3, -3], [10, 10, 10],
        ],
        dtype=np.float32,
    ).reshape(1, 10, 1, 1, 3)
    got = warp.resample(volume, points).numpy().ravel()
    expected = scipy_resample(volume[0], points[0]).ravel()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0] == pytest.approx(volume[0, 0, 0, 0]) and got[1] == pytest.approx(volume[0, 3, 4, 5])
    np.testing.assert_array_equal(got[4:], 0.0)


def test_resample_edge_mode_extends_the_border_like_scipy_nearest():
    volume = RNG.random((1, 4, 5, 6, 3)).astype(np.float32)
    points = np.array(
        [[0, 0, 0], [3, 4, 5], [-0.5, 1, 1], [3.5, 1.2, 1], [1, -1e-3, 1], [1.5, 2.5, 5.001],
         [-3, -3, -3], [10, 10, 10], [-2, 2.5, 7.25]],
        dtype=np.float32,
    ).reshape(1, 9, 1, 1, 3)
    got = warp.resample(volume, points, mode="edge").numpy()[0, :, 0, 0]
    for c in range(3):
        np.testing.assert_allclose(got[:, c], scipy_resample(volume[0, ..., c], points[0], "nearest").ravel(), atol=1e-6)
    np.testing.assert_allclose(got[6], volume[0, 0, 0, 0], atol=1e-6)  # far corners: corner voxels
    np.testing.assert_allclose(got[7], volume[0, 3, 4, 5], atol=1e-6)
    # a constant field stays constant anywhere
    field = np.full((1, 4, 5, 6, 3), [1.5, -0.5, 0.75], np.float32)
    np.testing.assert_allclose(warp.resample(field, points, mode="edge")[0, :, 0, 0], np.broadcast_to([1.5, -0.5, 0.75], (9, 3)), atol=1e-6)


def test_warp_modes_and_layer_config():
    field = RNG.standard_normal((1, 6, 5, 4, 3)).astype(np.float32)
    ddf = np.zeros((1, 6, 5, 4, 3), np.float32)
    ddf[..., 0] = 2.5  # reads beyond the last voxel along d1 for i >= 3
    grid = warp.get_reference_grid((6, 5, 4)).numpy() + ddf[0]
    for mode, scipy_mode in (("constant", "constant"), ("edge", "nearest")):
        got = warp.warp(field, ddf, mode=mode).numpy()[0]
        for c in range(3):
            np.testing.assert_allclose(got[..., c], scipy_resample(field[0, ..., c], grid, scipy_mode), atol=1e-6)
    np.testing.assert_array_equal(warp.warp(field, ddf).numpy()[0, 4:], 0.0)  # default: images, zero outside
    layer = warp.Warping((6, 5, 4), mode="edge")
    rebuilt = warp.Warping.from_config(layer.get_config())
    assert rebuilt.mode == "edge"
    np.testing.assert_allclose(rebuilt(inputs=[ddf, field]), warp.warp(field, ddf, mode="edge"), atol=1e-6)
    assert warp.Warping((6, 5, 4)).mode == "constant"


def test_resample_shared_loc_broadcasts_over_batch():
    volume = RNG.random((3, 5, 5, 5)).astype(np.float32)
    loc = warp.get_reference_grid((5, 5, 5)) + 0.25
    out = warp.resample(volume, loc).numpy()
    for b in range(3):
        np.testing.assert_allclose(out[b], scipy_resample(volume[b], loc.numpy()), atol=1e-6)


def test_resample_gradients_match_finite_differences():
    size = (4, 5, 3)
    volume = tf.constant(RNG.random((1,) + size), tf.float64)
    # keep every point well inside a voxel cell: trilinear interpolation has kinks
    # at integer coordinates, where a finite difference would straddle two pieces
    cell = RNG.integers(0, np.array(size) - 1, (1, 3, 2, 2, 3))
    loc = tf.constant(cell + RNG.uniform(0.2, 0.8, cell.shape), tf.float32)

    def of_volume(vol):
        return warp.resample(vol, loc)

    def of_loc(points):
        return warp.resample(tf.cast(volume, tf.float32), points)

    theoretical, numerical = tf.test.compute_gradient(of_volume, [tf.cast(volume, tf.float32)], delta=1e-2)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)
    theoretical, numerical = tf.test.compute_gradient(of_loc, [loc], delta=1e-3)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=5e-3)


def test_warping_layer_zero_ddf_is_identity_and_translation_shifts():
    image = RNG.random((1, 6, 7, 8)).astype(np.float32)
    layer = warp.Warping(fixed_image_size=(6, 7, 8))
    zero = np.zeros((1, 6, 7, 8, 3), np.float32)
    np.testing.assert_allclose(layer(inputs=[zero, image]), image, atol=1e-6)
    shift = zero.copy()
    shift[..., 1] = 1.0  # every fixed voxel reads the moving voxel one step along d2
    out = layer(inputs=[shift, image]).numpy()
    np.testing.assert_allclose(out[:, :, :-1], image[:, :, 1:], atol=1e-6)
    np.testing.assert_array_equal(out[:, :, -1], 0.0)


def test_warping_layer_matches_affine_resampling():
    image = RNG.random((1, 8, 9, 10, 2)).astype(np.float32)
    theta = warp.random_transform_generator(1, 0.1, seed=5)
    ddf = warp.ddf_from_affine(theta, (8, 9, 10))
    via_layer = warp.Warping((8, 9, 10))(inputs=[ddf, image])
    via_grid = warp.resample(image, warp.warp_grid(warp.get_reference_grid((8, 9, 10)), theta))
    np.testing.assert_allclose(via_layer, via_grid, atol=1e-5)


def homogeneous(theta):
    """(4, 3) row-vector affine -> (4, 4) matrix, so that composition is a product."""
    return np.concatenate([theta, [[0.0], [0.0], [0.0], [1.0]]], axis=1)


def affine_velocity_flow(A, b, grid, t=1.0):
    """Analytic flow of v(x) = A x + b (float64): phi_t(x) = expm(A t) x + (int_0^t expm(A s) ds) b.

    The integral is the top-right block of expm([[A, I], [0, 0]] t) (Van Loan 1978).
    """
    from scipy.linalg import expm

    block = expm(np.block([[A, np.eye(3)], [np.zeros((3, 6))]]) * t)
    return grid @ block[:3, :3].T + block[:3, 3:] @ b


@pytest.mark.parametrize("path", ["eager", "xla"])
def test_integrate_constant_velocity_is_exact_everywhere(path):
    # the reported case: zero-filled reads gave (0.866, -0.289, 0.433) at (13, 1, 8)
    velocity = np.zeros((1, 16, 8, 10, 3), np.float32)
    velocity[...] = [1.5, -0.5, 0.75]
    fn = warp.integrate_velocity if path == "eager" else compiled(warp.integrate_velocity)
    ddf = fn(tf.constant(velocity)).numpy()
    np.testing.assert_allclose(ddf[0, 13, 1, 8], [1.5, -0.5, 0.75], atol=1e-6)
    np.testing.assert_allclose(ddf, velocity, atol=1e-6)


def test_integrate_affine_velocity_that_keeps_the_box_is_exact_everywhere():
    # v(x) = A (x - c) with a diagonally dominant contracting A (with shears): every
    # trajectory, and every point scaling and squaring reads, stays inside the
    # volume, so all voxels must match the analytic flow
    size = (16, 8, 10)
    A = np.array([[-0.03, 0.01, -0.005], [-0.008, -0.05, 0.01], [0.004, -0.006, -0.04]])
    centre = (np.array(size) - 1) / 2.0
    b = -A @ centre
    grid = warp.get_reference_grid(size).numpy().astype(np.float64)
    velocity = (grid @ A.T + b)[None].astype(np.float32)
    expected = affine_velocity_flow(A, b, grid) - grid
    assert np.abs(expected).max() > 0.25
    # the Euler error of the first step, |A|^2 |x - c| / 2^(N+1), is ~5e-7 for N = 14
    ddf = warp.integrate_velocity(velocity, num_steps=14).numpy()[0]
    np.testing.assert_allclose(ddf, expected, atol=2e-6)
    # with the default N = 7, the result is exactly 2^7 Euler steps: (I + A/2^7)^(2^7)
    step = np.linalg.matrix_power(np.eye(3) + A / 2**7, 2**7)
    discrete = (grid - centre) @ step.T + centre - grid
    np.testing.assert_allclose(warp.integrate_velocity(velocity).numpy()[0], discrete, atol=5e-7)


def test_integrate_affine_velocity_leaving_the_volume():
    size = (16, 8, 10)
    rng = np.random.default_rng(0)
    A = rng.uniform(-0.02, 0.02, (3, 3))
    b = np.array([0.6, -0.3, 0.4]) - A @ ((np.array(size) - 1) / 2.0)
    grid = warp.get_reference_grid(size).numpy().astype(np.float64)
    velocity = (grid @ A.T + b)[None].astype(np.float32)
    ddf = warp.integrate_velocity(velocity, num_steps=12).numpy()[0]
    error = np.abs(ddf - (affine_velocity_flow(A, b, grid) - grid)).max(-1)
    # the trajectories that stay 2 voxels inside: their reads, and the grid points
    # interpolated around them, never needed a value from outside the volume
    margin = np.ones(size, bool)
    for t in np.linspace(0.0, 1.0, 65):
        points = affine_velocity_flow(A, b, grid, t)
        margin &= np.all((points >= 2) & (points <= np.array(size) - 3), -1)
    assert margin.sum() > 100
    np.testing.assert_array_less(error[margin], 1e-5)
    # elsewhere the clamped field differs from the affine one by |A| times the
    # distance read outside (< 1 voxel): far below the 0.7 voxel of zero filling
    np.testing.assert_array_less(error, 0.02)


def test_compose_affine_ddfs_matches_the_product_of_matrices():
    size, other = (9, 10, 8), (11, 7, 9)  # second lives on another grid
    first_theta = warp.random_transform_generator(2, 0.1, seed=21).numpy()
    second_theta = warp.random_transform_generator(2, 0.1, seed=22).numpy()
    first_theta[:, 3] += [1.0, -0.5, 0.5]
    first = warp.ddf_from_affine(first_theta, size)
    second = warp.ddf_from_affine(second_theta, other)
    composed = warp.compose_ddf(first, second).numpy()
    grid = warp.get_reference_grid(size).numpy().astype(np.float64)
    points = np.concatenate([grid, np.ones(size + (1,))], -1)
    for batch in range(2):
        # phi_second(phi_first(x)) = [x 1] H(first) H(second)
        product = homogeneous(first_theta[batch]) @ homogeneous(second_theta[batch])
        expected = (points @ product)[..., :3] - grid
        landing = points @ first_theta[batch]
        inside = np.all((landing >= 0) & (landing <= np.array(other) - 1), -1)
        assert 0.3 < inside.mean() < 1.0
        np.testing.assert_allclose(composed[batch][inside], expected[inside], atol=2e-5)


def test_compose_order_matches_warping_twice():
    # an image that is linear in x is interpolated exactly, so warping with
    # compose_ddf(first, second) equals warping with second, then with first
    size = (10, 9, 8)
    grid = warp.get_reference_grid(size).numpy()
    image = (grid @ [0.5, -1.0, 2.0] + 3.0)[None].astype(np.float32)
    first = warp.ddf_from_affine(warp.random_transform_generator(1, 0.05, seed=3), size)
    second = np.zeros((1,) + size + (3,), np.float32)
    second[..., 1] = 1.25
    once = warp.warp(image, warp.compose_ddf(first, second)).numpy()[0]
    twice = warp.warp(warp.warp(image, second), first).numpy()[0]
    # where both are defined: x + first(x) lands in the volume, and only on voxels
    # y of the intermediate image with y + second(y) inside too (y2 <= 6 of 0..8)
    landing = grid + first.numpy()[0]
    valid = np.all((landing >= 0) & (landing <= np.array(size) - 1), -1) & (landing[..., 1] <= 6)
    assert valid.mean() > 0.4
    np.testing.assert_allclose(once[valid], twice[valid], atol=1e-4)
    # and not the other order (the two do not commute here)
    swapped = warp.warp(image, warp.compose_ddf(second, first)).numpy()[0]
    assert np.abs(swapped - twice)[valid].max() > 100 * 1e-4


def test_compose_and_integrate_compile_with_xla():
    velocity = tf.constant(0.5 * RNG.standard_normal((2, 8, 6, 7, 3)), tf.float32)
    np.testing.assert_allclose(
        compiled(warp.integrate_velocity)(velocity), warp.integrate_velocity(velocity), atol=1e-5
    )
    np.testing.assert_allclose(
        compiled(warp.compose_ddf)(velocity, 2 * velocity), warp.compose_ddf(velocity, 2 * velocity), atol=1e-5
    )


def smooth_field(shape, seed, scale):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape)
    return (scale * ndimage.gaussian_filter(noise, sigma=(0, 1.5, 1.5, 1.5, 0))).astype(np.float32)


@pytest.mark.parametrize("which", ["integrate", "compose"])
def test_field_operations_gradients_are_finite_and_match_finite_differences(which):
    shape = (1, 6, 7, 5, 3)
    field = tf.constant(smooth_field(shape, 4, 4.0))
    other = tf.constant(smooth_field(shape, 5, 4.0))
    weights = tf.constant(RNG.standard_normal(shape), tf.float32)
    direction = tf.constant(smooth_field(shape, 6, 1.0))

    def loss(x):
        out = warp.integrate_velocity(x) if which == "integrate" else warp.compose_ddf(x, other)
        return tf.reduce_sum(weights * out)

    with tf.GradientTape() as tape:
        tape.watch(field)
        value = loss(field)
    gradient = tape.gradient(value, field).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).max() > 0
    h = 1e-2  # central difference of the directional derivative (float32 values)
    numerical = (loss(field + h * direction) - loss(field - h * direction)).numpy() / (2 * h)
    analytic = float(np.sum(gradient * direction.numpy()))
    assert analytic == pytest.approx(numerical, rel=2e-2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: warp.resample(np.zeros((4, 4, 4)), np.zeros((1, 4, 4, 4, 3))), "`vol` has shape (4, 4, 4)"),
        (lambda: warp.resample(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4, 2))), "`loc` has shape (1, 4, 4, 4, 2)"),
        (lambda: warp.resample(np.zeros((2, 4, 4, 4)), np.zeros((3, 4, 4, 4, 3))), "batch size 3"),
        (lambda: warp.warp_grid(warp.get_reference_grid((2, 2, 2)), np.zeros((1, 3, 3))), "`theta` has shape (1, 3, 3)"),
        (lambda: warp.Warping((4, 4, 4))(inputs=[np.zeros((1, 4, 4, 5, 3)), np.zeros((1, 4, 4, 4))]), "`ddf` has shape (1, 4, 4, 5, 3)"),
        (lambda: warp.random_transform_generator(1, 1.5), "`scale` is 1.5"),
        (lambda: warp.resample(np.array(["a"] * 8).reshape(1, 2, 2, 2), np.zeros((1, 2, 2, 2, 3))), "dtype"),
        (lambda: warp.resample(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2, 3)), mode="wrap"), "`mode` is 'wrap'"),
        (lambda: warp.Warping((4, 4, 4), mode="zero"), "`mode` is 'zero'"),
        (lambda: warp.compose_ddf(np.zeros((1, 4, 4, 4, 3)), np.zeros((1, 4, 4, 4, 2))), "`second` has shape (1, 4, 4, 4, 2)"),
        (lambda: warp.compose_ddf(np.zeros((3, 4, 4, 4, 3)), np.zeros((2, 4, 4, 4, 3))), "`first` has batch size 3"),
        (lambda: warp.integrate_velocity(np.zeros((4, 4, 4, 3))), "`dvf` has shape (4, 4, 4, 3)"),
        (lambda: warp.integrate_velocity(np.zeros((1, 4, 4, 4, 3)), num_steps=-1), "`num_steps` is -1"),
    ],
)
def test_wrong_input_names_argument_and_shape(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_non_finite_locations_get_a_clear_error():
    """A NaN displacement used to reach the gather as index -2**31 (a TensorFlow crash)."""
    velocity = np.zeros((1, 16, 8, 10, 3), np.float32)
    velocity[...] = [1.5, -0.5, 0.75]
    velocity[0, 3, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite values"):
        warp.integrate_velocity(velocity)
    with pytest.raises(ValueError, match="non-finite values"):
        warp.warp(np.ones((1, 16, 8, 10), np.float32), velocity)
    points = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [0.0, np.inf, 0.0]], np.float32)
    with pytest.raises(ValueError, match="`points` has non-finite values"):
        warp.resample_points(np.ones((1, 16, 8, 10), np.float32), points)


# ---------------------------------------------------------------- scattered points (#18)
@pytest.mark.parametrize("mode", ["constant", "nearest"])
def test_resample_points_matches_scipy_map_coordinates(mode):
    rng = np.random.default_rng(17)
    vol = rng.random((2, 6, 7, 5)).astype(np.float32)
    points = rng.uniform(-1.5, 8.0, (2, 300, 3)).astype(np.float32)  # some outside
    points[:, :4] = [[0, 0, 0], [5, 6, 4], [5, 0, 4], [2.5, 6.0, 0.0]]  # corners and faces exactly
    got = warp.resample_points(vol, points, mode=mode).numpy()
    for b in range(2):
        expected = ndimage.map_coordinates(vol[b].astype(np.float64), points[b].T.astype(np.float64),
                                           order=1, mode=mode, cval=0.0)
        np.testing.assert_allclose(got[b], expected, atol=1e-6)
    shared = warp.resample_points(vol[..., None], points[0], mode=mode).numpy()  # (n, 3) shared, channels
    assert shared.shape == (2, 300, 1)
    np.testing.assert_allclose(shared[0, :, 0], got[0], atol=1e-7)


def test_resample_points_equals_resample_on_the_same_locations_and_has_gradients():
    rng = np.random.default_rng(18)
    vol = tf.constant(rng.random((1, 5, 6, 7, 2)).astype(np.float32))
    points = tf.constant(rng.uniform(0, 4, (1, 50, 3)).astype(np.float32))
    on_grid = warp.resample(vol, tf.reshape(points, (1, 50, 1, 1, 3)))
    np.testing.assert_allclose(warp.resample_points(vol, points).numpy(), tf.reshape(on_grid, (1, 50, 2)).numpy(), atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(points)
        total = tf.reduce_sum(warp.resample_points(vol, points))
    assert np.all(np.isfinite(tape.gradient(total, points).numpy()))
    with pytest.raises(ValueError, match="`points` has batch size 3"):
        warp.resample_points(vol, np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="last axis must hold 3"):
        warp.resample_points(vol, np.zeros((4, 2)))


def test_warp_and_resample_points_have_no_matrix_product_forward_or_backward():
    # Matrix products run in TensorFloat-32 (10-bit mantissa) on Ampere and later GPUs
    # by default: interpolation weights would be rounded to about 1e-3. The warp's
    # corners are summed with a product and a reduction instead (tests/graph_ops.py).
    rng = np.random.default_rng(3)
    vol = tf.constant(rng.random((2, 6, 7, 8, 2)), tf.float32)
    ddf = tf.constant(rng.normal(0, 1.5, (2, 6, 7, 8, 3)), tf.float32)
    points = tf.constant(rng.uniform(0, 5, (50, 3)), tf.float32)

    def warp_and_gradients(vol, ddf):
        with tf.GradientTape() as tape:
            tape.watch([vol, ddf])
            value = tf.reduce_sum(warp.warp(vol, ddf) ** 2)
        return tape.gradient(value, [vol, ddf])

    def points_and_gradients(vol, points):
        with tf.GradientTape() as tape:
            tape.watch([vol, points])
            value = tf.reduce_sum(warp.resample_points(vol, points) ** 2)
        return tape.gradient(value, [vol, points])

    assert matrix_products(warp_and_gradients, vol, ddf) == set()
    assert matrix_products(tf.function(warp_and_gradients, jit_compile=True), vol, ddf) == set()
    assert matrix_products(points_and_gradients, vol[:1, ..., 0], points) == set()
    assert matrix_products(lambda theta: warp.warp_grid(warp.get_reference_grid((4, 5, 6)), theta),
                           warp.random_transform_generator(2, 0.3, seed=3)) == set()


# --------------------------------------------------------------------------
# sample_with_gradient: the NumPy interpolation the Gauss-Newton affine uses
# --------------------------------------------------------------------------
def test_sample_with_gradient_values_match_scipy_and_resample_points():
    rng = np.random.default_rng(11)
    volume = rng.random((7, 9, 5))
    points = rng.random((3000, 3)) * (np.array(volume.shape) - 1)
    points[:6] = np.floor(points[:6])  # on cell faces
    points[6] = np.array(volume.shape) - 1  # the far corner (the last cell, clamped)
    points[7] = 0.0
    values, gradient = warp.sample_with_gradient(volume, points)
    np.testing.assert_allclose(values, ndimage.map_coordinates(volume, points.T, order=1), atol=1e-13)
    np.testing.assert_allclose(values, warp.resample_points(volume[None].astype(np.float32), points).numpy()[0],
                               atol=1e-6)
    assert values.dtype == gradient.dtype == np.float64 and gradient.shape == (3000, 3)


def test_sample_with_gradient_is_the_interpolants_derivative():
    """Central differences of SciPy's trilinear interpolation (float64, h = 1e-6) away from
    cell faces, where the piecewise-trilinear function is smooth; exact on a linear volume."""
    rng = np.random.default_rng(12)
    volume = rng.random((6, 8, 7))
    points = 0.05 + rng.random((2000, 3)) * (np.array(volume.shape) - 1.1)
    frac = points - np.floor(points)
    points = points[np.all((frac > 1e-3) & (frac < 1 - 1e-3), axis=1)]
    _, gradient = warp.sample_with_gradient(volume, points)
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1e-6
        difference = (ndimage.map_coordinates(volume, (points + step).T, order=1)
                      - ndimage.map_coordinates(volume, (points - step).T, order=1)) / 2e-6
        np.testing.assert_allclose(gradient[:, axis], difference, atol=1e-7)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in (4, 5, 6)], indexing="ij"), -1)
    linear = grid @ np.array([0.5, -2.0, 3.0]) + 1.0
    inside = rng.random((50, 3)) * np.array([3, 4, 5])
    values, gradient = warp.sample_with_gradient(linear, inside)
    np.testing.assert_allclose(values, inside @ np.array([0.5, -2.0, 3.0]) + 1.0, atol=1e-12)
    np.testing.assert_allclose(gradient, np.broadcast_to([0.5, -2.0, 3.0], gradient.shape), atol=1e-12)


@pytest.mark.parametrize("volume, points, message", [
    (np.zeros((4, 4)), np.zeros((1, 3)), "`volume` has shape"),
    (np.zeros((4, 1, 4)), np.zeros((1, 3)), "`volume` has shape"),
    (np.zeros((4, 4, 4)), np.zeros((1, 2)), "`points` has shape"),
    (np.zeros((4, 4, 4)), np.array([[np.nan, 0.0, 0.0]]), "1 NaN or infinite coordinates"),
    (np.zeros((4, 4, 4)), np.array([[3.5, 0.0, 0.0]]), "`points` outside the volume: 1 of 1"),
    (np.zeros((4, 4, 4)), np.array([[0.0, -1e-9, 0.0]]), r"the first: \[0.0, -1e-09, 0.0\]"),
])
def test_sample_with_gradient_refuses_what_it_cannot_interpolate(volume, points, message):
    with pytest.raises(ValueError, match=message):
        warp.sample_with_gradient(volume, points)
