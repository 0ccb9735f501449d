"""warp.py against SciPy and analytic cases; gradients against finite differences."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import warp

RNG = np.random.default_rng(1234)


def scipy_resample(volume, loc):
    """Reference: scipy's trilinear interpolation, zero outside, for one volume."""
    return ndimage.map_coordinates(
        volume.astype(np.float64), np.moveaxis(loc, -1, 0).astype(np.float64), order=1, mode="constant", cval=0.0
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


@pytest.mark.parametrize("channels", [None, 2])
@pytest.mark.parametrize("path", ["eager", "xla"])
def test_resample_matches_scipy_on_random_affines(channels, path):
    size = (9, 11, 7)
    batch = 2
    shape = (batch,) + size + ((channels,) if channels else ())
    volume = RNG.standard_normal(shape).astype(np.float32)
    theta = warp.random_transform_generator(batch, 0.3, seed=11).numpy()
    theta[:, 3] += RNG.uniform(-2, 2, (batch, 3))  # push part of the grid outside
    loc = warp.warp_grid(warp.get_reference_grid(size), theta)
    fn = warp.resample if path == "eager" else compiled(warp.resample)
    out = fn(tf.constant(volume), loc).numpy()
    assert out.shape == shape
    for b in range(batch):
        for c in range(channels or 1):
            vol = volume[b] if channels is None else volume[b, ..., c]
            got = out[b] if channels is None else out[b, ..., c]
            np.testing.assert_allclose(got, scipy_resample(vol, loc.numpy()[b]), atol=2e-6)
    assert (out == 0).any(), "the test should include locations outside the volume"


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


def test_integrate_velocity_constant_field_is_translation():
    velocity = np.zeros((1, 12, 12, 12, 3), np.float32)
    velocity[..., 0] = 0.8
    ddf = warp.integrate_velocity(velocity, num_steps=6).numpy()
    # away from the far border along d1 (where the zero-outside rule bites and
    # its effect creeps inwards as the steps double) the flow of a constant
    # velocity is the same translation
    np.testing.assert_allclose(ddf[0, :-5, :, :, 0], 0.8, atol=1e-5)
    np.testing.assert_allclose(ddf[0, ..., 1:], 0.0, atol=1e-6)


def test_integrate_velocity_linear_field_matches_matrix_exponential():
    from scipy.linalg import expm

    size = (15, 15, 15)
    generator = np.array([[0.0, 0.05, 0.0], [-0.05, 0.0, 0.0], [0.0, 0.0, 0.02]])
    centre = (np.array(size) - 1) / 2.0
    grid = warp.get_reference_grid(size).numpy()
    velocity = ((grid - centre) @ generator)[None].astype(np.float32)
    ddf = warp.integrate_velocity(velocity, num_steps=8).numpy()[0]
    expected = (grid - centre) @ expm(generator) + centre - grid
    inner = (slice(4, -4),) * 3
    np.testing.assert_allclose(ddf[inner], expected[inner], atol=2e-2)


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
    ],
)
def test_wrong_input_names_argument_and_shape(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
