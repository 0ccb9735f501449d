"""network.py: shapes, identity at initialisation, gradients reach every layer."""
import numpy as np
import pytest
import tensorflow as tf

from tutorial_utils.network import build_registration_network

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("velocity", [False, True])
def test_output_shape_and_identity_at_initialisation(velocity):
    model = build_registration_network((16, 16, 8), initial_channels=4, levels=2, velocity=velocity)
    moving = RNG.random((2, 16, 16, 8, 1)).astype(np.float32)
    fixed = RNG.random((2, 16, 16, 8, 1)).astype(np.float32)
    ddf = model([moving, fixed]).numpy()
    assert ddf.shape == (2, 16, 16, 8, 3)
    np.testing.assert_array_equal(ddf, 0.0)


def test_gradients_reach_every_layer_after_first_update():
    model = build_registration_network((8, 8, 8), initial_channels=4, levels=1)
    moving = tf.constant(RNG.random((1, 8, 8, 8, 1)), tf.float32)
    fixed = tf.constant(RNG.random((1, 8, 8, 8, 1)), tf.float32)
    optimiser = tf.keras.optimizers.SGD(0.1)

    def gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model([moving, fixed]) - 1.0))
        return tape.gradient(loss, model.trainable_variables)

    first = gradients()  # the zero output layer blocks gradients to earlier layers at first
    optimiser.apply_gradients(zip(first, model.trainable_variables))
    second = gradients()
    for variable, gradient in zip(model.trainable_variables, second):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0, variable.name


def test_size_not_divisible_is_refused():
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*levels = 8"):
        build_registration_network((48, 48, 52), levels=3)


def test_velocity_output_is_integrated_exactly_up_to_the_border():
    # zero kernel and a bias v: the network outputs the constant velocity v, whose
    # flow is the translation v at every voxel, border included (the integration
    # extrapolates the field there instead of reading zeros)
    model = build_registration_network((16, 8, 8), initial_channels=4, levels=2, velocity=True)
    head = model.get_layer("velocity")
    head.bias.assign([1.5, -0.5, 0.75])
    images = [RNG.random((1, 16, 8, 8, 1)).astype(np.float32) for _ in range(2)]
    ddf = model(images).numpy()
    np.testing.assert_allclose(ddf, np.broadcast_to([1.5, -0.5, 0.75], ddf.shape), atol=1e-6)
    integrate = model.get_layer("ddf")
    assert type(integrate).from_config(integrate.get_config()).num_steps == integrate.num_steps


def test_initial_weights_are_a_function_of_the_seed_alone():
    """Same seed, same weights (whatever global RNG state); another seed, other weights."""
    import random

    random.seed(1)
    first = build_registration_network((8, 8, 8), initial_channels=2, levels=1, seed=3)
    random.seed(2)
    np.random.seed(2)
    second = build_registration_network((8, 8, 8), initial_channels=2, levels=1, seed=3)
    other = build_registration_network((8, 8, 8), initial_channels=2, levels=1, seed=4)
    for a, b, c in zip(first.get_weights(), second.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != c) for a, c in zip(first.get_weights(), other.get_weights()) if a.std() > 0)
