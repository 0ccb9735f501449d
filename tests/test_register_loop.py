"""register.loop: the loop driver run_steps and the coarse-to-fine driver."""
import numpy as np
import pytest

from tutorial_utils._tf import tf

from tutorial_utils import register


def test_run_steps_stops_with_a_message_when_the_loss_is_not_finite():
    values = iter([1.0, float("nan")])
    with pytest.raises(FloatingPointError, match="step 1 returned non-finite values"):
        register.run_steps(lambda: next(values), 5, progress=False)


def test_coarse_to_fine_hands_state_on_and_labels_history():
    seen = []

    def run_level(level, state):
        seen.append(state)
        return register.LevelRun(state + [level], {"loss": [float(level)] * (2 - level)}, 10 * (2 - level))

    out = register.coarse_to_fine(run_level, 3, [], names=("loss",))
    assert seen == [[], [0], [0, 1]] and out.state == [0, 1, 2]
    assert out.history == {"loss": [0.0, 0.0, 1.0], "level": [0, 0, 1]}
    assert out.iterations == 30 and len(out.level_seconds) == 3


def test_coarse_to_fine_refuses_a_level_with_other_history():
    with pytest.raises(ValueError, match="level 0 returned history"):
        register.coarse_to_fine(lambda level, s: register.LevelRun(s, {"other": [1.0]}, 1), 1, names=("loss",))
    with pytest.raises(ValueError, match="`levels` is 0"):
        register.coarse_to_fine(lambda level, s: None, 0, names=("loss",))


def test_registration_refuses_non_finite_images_naming_them():
    import numpy as np
    import pytest

    from tutorial_utils import register

    image = np.random.default_rng(0).random((1, 8, 8, 8)).astype(np.float32)
    broken = image.copy()
    broken[0, 2, 2, 2] = np.nan
    with pytest.raises(ValueError, match="`moving` has non-finite"):
        register.register_affine(fixed=image, moving=broken, progress=False)
    with pytest.raises(ValueError, match="`fixed` has non-finite"):
        register.register_nonrigid(fixed=broken, moving=image, levels=1, iterations=(2,), progress=False)


def test_adam_update_gives_keras_adams_numbers():
    rng = np.random.default_rng(3)
    start = rng.standard_normal((4, 5)).astype(np.float32)
    ours, theirs = tf.Variable(start), tf.Variable(start)
    state = register.AdamVariables.of(ours)
    keras_adam = tf.keras.optimizers.Adam(0.05)
    target = rng.standard_normal((4, 5)).astype(np.float32)
    for _ in range(30):  # a quadratic bowl: gradient 2 (x - target)
        register.adam_update(ours, 2.0 * (ours - target), *state, 0.05)
        keras_adam.apply_gradients([(2.0 * (theirs - target), theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
    assert float(state.t) == 30.0
    assert np.abs(ours.numpy() - start).max() > 0.5  # it moved
