"""register.py: the compiled (timed) steps agree with the plain TensorFlow path and make progress."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import register, warp

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
