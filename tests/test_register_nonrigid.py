"""register.nonrigid: the DDF step, the folding penalty and register_nonrigid."""
import contextlib
import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from graph_ops import matrix_products
from tutorial_utils import losses, register, warp
from tutorial_utils.register import nonrigid

RNG = np.random.default_rng(5)


def smooth_volume(shape, sigma=2.0, rng=RNG):
    volume = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)[None]


# The XLA-compiled step (register_nonrigid's default) equals the plain graph step: the
# seed recipe's DDF, its velocity field, and register_nonrigid's own recipe (a base
# field, border penalty, folding hinge). So the tests of register_nonrigid below that
# only concern what it computes (pyramid, base, bookkeeping) run with
# jit_compile=False, as its docstring advises for a few tens of steps: XLA's compile,
# seconds per level, was most of their time. XLA end to end: test_register_cli.py
# (the files-in, files-out command) and the chapters, which the book build executes.
RECIPE = dict(base=True, fold_weight=1.0, include_border=True)


@pytest.mark.parametrize("velocity, recipe", [(False, {}), (True, {}), (False, RECIPE)],
                         ids=["ddf", "velocity", "ddf-base-border-folding"])
def test_ddf_step_xla_matches_graph(velocity, recipe):
    # the added case draws from its own generator: the later tests get the volumes they always had
    fixed = tf.constant(smooth_volume((12, 16, 16), rng=np.random.default_rng(6) if recipe else RNG))
    moving = tf.constant(np.roll(fixed.numpy(), 1, axis=2))
    options = dict(learning_rate=0.1, velocity=velocity, seed=3)
    if recipe:  # a base that folds in places, so the folding hinge is active
        base = 1.5 * np.sin(np.indices((12, 16, 16)).transpose(1, 2, 3, 0) / 1.5)[None].astype(np.float32)
        assert float(losses.folding_penalty(base)[0]) > 0
        options.update(base_ddf=base, fold_weight=recipe["fold_weight"], include_border=recipe["include_border"])
    step_xla, field_xla, _ = register.make_ddf_step(fixed=fixed, moving=moving, jit_compile=True, **options)
    step_graph, field_graph, _ = register.make_ddf_step(fixed=fixed, moving=moving, jit_compile=False, **options)
    np.testing.assert_array_equal(field_xla.numpy(), field_graph.numpy())
    for _ in range(3):
        np.testing.assert_allclose(np.array(step_xla()), np.array(step_graph()), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(field_xla.numpy(), field_graph.numpy(), atol=1e-3)


# --------------------------------------------------------------------------
# nonrigid section (the folding penalty is tested in test_losses.py): affine base on pyramid levels, register_nonrigid
# --------------------------------------------------------------------------
def test_affine_on_a_level_upsamples_to_warps_affine_ddf():
    theta = warp.random_transform_generator(1, 0.1, seed=4).numpy()
    theta[0, 3] = [0.5, -2.0, 3.0]
    size, level = (8, 24, 20), (8, 6, 5)
    expected = warp.ddf_from_affine(theta, size).numpy()
    np.testing.assert_allclose(nonrigid._affine_ddf_on_level(theta, size, size), expected, atol=1e-4)
    coarse = nonrigid._affine_ddf_on_level(theta, size, level)
    np.testing.assert_allclose(register.upsample_field(coarse, size), expected, atol=1e-4)


@pytest.mark.slow  # deselected under the lowest TensorFlow (scripts/test_colab.sh)
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
                                        fold_weight=1.0, progress=False, seed=0, jit_compile=False)
    assert result.ddf.shape == (1,) + size + (3,)
    assert set(result.history["level"]) == {0, 1, 2} and len(result.history["total"]) == 120
    assert result.seconds >= sum(result.level_seconds) > 0
    inside = (slice(2, -2), slice(6, -6), slice(6, -6))
    before = np.mean((moving[0][inside] - fixed[0][inside]) ** 2)
    after = np.mean((warp.warp(moving, result.ddf).numpy()[0][inside] - fixed[0][inside]) ** 2)
    assert after < 0.25 * before
    error = np.abs(result.ddf[0][inside] - true_ddf[0][inside])
    assert np.median(error) < 0.5


def test_register_nonrigid_refuses_a_wrong_schedule():
    volume = np.zeros((1, 8, 16, 16), np.float32)
    with pytest.raises(ValueError, match="`iterations` is"):
        register.register_nonrigid(fixed=volume, moving=volume, levels=3, iterations=(10, 10))
    with pytest.raises(ValueError, match="`initial_theta` has shape"):
        register.register_nonrigid(fixed=volume, moving=volume, initial_theta=np.eye(3))
    with pytest.raises(ValueError, match="`moving` has shape"):
        register.register_nonrigid(fixed=volume, moving=volume[:, :4])


@pytest.mark.slow  # deselected under the lowest TensorFlow (scripts/test_colab.sh)
def test_register_nonrigid_reports_what_ran():
    """iterations = the steps run; history one entry per step, labelled by level; every level
    (a 0-iteration one upsamples) timed; seconds cover the whole call."""
    import time

    fixed = smooth_volume((8, 24, 24))
    moving = np.roll(fixed, 1, axis=2)
    start = time.perf_counter()
    result = register.register_nonrigid(fixed=fixed, moving=moving, iterations=(5, 0, 3), progress=False,
                                        jit_compile=False)
    elapsed = time.perf_counter() - start
    assert result.iterations == 8 == len(result.history["total"]) == len(result.history["image"])
    assert result.history["level"] == [0] * 5 + [2] * 3
    assert len(result.level_seconds) == 3 and min(result.level_seconds) > 0
    assert sum(result.level_seconds) <= result.seconds <= elapsed < result.seconds + 0.05 + 0.02 * elapsed


# --------------------------------------------------------------------------
# initial_ddf (#19): a given field (e.g. a network's prediction) as the fixed base of every level
# --------------------------------------------------------------------------
def test_ddf_on_a_level_of_an_affine_ddf_is_the_affine_on_that_level():
    """Independent reference: the affine DDF on the level computed in closed form (float64)."""
    theta = warp.random_transform_generator(1, 0.1, seed=7).numpy().astype(np.float64)[0]
    theta[3] = [0.5, -2.0, 3.0]
    size = (8, 24, 20)
    full = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in size], indexing="ij"), -1)
    ddf = (full @ theta[:3] + theta[3] - full)[None]
    for level in [(8, 12, 10), (8, 6, 5), (4, 8, 7), size]:
        ratio = np.array(size) / np.array(level)
        q = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in level], indexing="ij"), -1)
        p = (q + 0.5) * ratio - 0.5
        expected = ((p @ theta[:3] + theta[3] + 0.5) / ratio - 0.5 - q)[None]
        got = nonrigid._ddf_on_level(ddf, level)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(got, nonrigid._affine_ddf_on_level(theta, size, level), atol=1e-4)


@pytest.mark.slow  # deselected under the lowest TensorFlow (scripts/test_colab.sh)
def test_register_nonrigid_keeps_a_base_that_is_already_the_answer():
    size = (8, 32, 32)
    fixed = smooth_volume(size, 2.5)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in size], indexing="ij"), -1)
    bump = np.exp(-((grid[..., 1] - 16) ** 2 + (grid[..., 2] - 16) ** 2) / 60.0)
    true_ddf = np.zeros((1,) + size + (3,), np.float32)
    true_ddf[0, ..., 2] = 1.5 * bump
    # moving sampled (SciPy, cubic) so that warping it with true_ddf gives fixed back in the interior
    inverse = grid[None].astype(np.float64).copy()
    for _ in range(20):  # fixed-point inverse of x -> x + t(x)
        shifted = [ndimage.map_coordinates(true_ddf[0, ..., c], np.moveaxis(inverse[0], -1, 0), order=1,
                                           mode="nearest") for c in range(3)]
        inverse = grid[None] - np.stack(shifted, -1)[None]
    moving = ndimage.map_coordinates(fixed[0].astype(np.float64), np.moveaxis(inverse[0], -1, 0), order=3,
                                     mode="nearest")[None].astype(np.float32)
    result = register.register_nonrigid(fixed=fixed, moving=moving, initial_ddf=true_ddf, levels=2,
                                        iterations=(20, 20), progress=False, jit_compile=False)
    inside = (slice(2, -2), slice(4, -4), slice(4, -4))
    assert result.ddf.shape == true_ddf.shape
    error = np.abs(result.ddf[0][inside] - true_ddf[0][inside])
    assert np.mean(error) < 0.05 and np.max(error) < 0.3  # the bump itself is 1.5 voxels
    # and from nothing, the same run has to move: the base is what kept it there
    zero = register.register_nonrigid(fixed=fixed, moving=moving, initial_ddf=np.zeros_like(true_ddf),
                                      levels=2, iterations=(20, 20), progress=False, jit_compile=False)
    assert np.mean(np.abs(zero.ddf[0][inside] - true_ddf[0][inside])) > 2 * np.mean(
        np.abs(result.ddf[0][inside] - true_ddf[0][inside]))


def test_register_nonrigid_refuses_an_initial_ddf_of_another_shape():
    volume = np.zeros((1, 8, 16, 16), np.float32)
    for bad in [np.zeros((8, 16, 16, 3)), np.zeros((1, 8, 16, 8, 3)), np.zeros((1, 8, 16, 16, 2))]:
        with pytest.raises(ValueError, match="`initial_ddf` has shape"):
            register.register_nonrigid(fixed=volume, moving=volume, initial_ddf=bad, progress=False)


def test_ddf_steps_of_one_shape_share_one_compiled_function():
    fixed = smooth_volume((10, 12, 12))
    moving = np.roll(fixed, 1, axis=2)
    options = dict(learning_rate=0.1, deform_weight=2.0, fold_weight=5.0, seed=1)
    first, _, _ = register.make_ddf_step(fixed=fixed, moving=moving, **options)
    first()
    shared = nonrigid._step_function("lncc", "bending", False, False, True, True)
    traces = shared.experimental_get_tracing_count()
    # another pair of the same shape, other weights and learning rate: no new trace
    second, field, _ = register.make_ddf_step(fixed=moving, moving=fixed, **{**options, "deform_weight": 7.0,
                                                                              "learning_rate": 0.05})
    before = field.numpy().copy()
    second()
    assert shared.experimental_get_tracing_count() == traces
    assert np.abs(field.numpy() - before).max() > 0  # it did update its own field


def test_register_nonrigid_compiling_ahead_does_not_change_the_result(monkeypatch):
    fixed = smooth_volume((8, 24, 24))
    moving = np.roll(fixed, 2, axis=2)
    options = dict(fixed=fixed, moving=moving, levels=2, iterations=(20, 10), progress=False, seed=2)
    ahead = register.register_nonrigid(**options)
    phases = ahead.details["phase_seconds"]
    assert set(phases) >= {"pyramid", "the base added at full resolution"}
    assert sum(phases.values()) <= ahead.seconds + 1e-6
    monkeypatch.setattr(nonrigid, "_compiling_ahead", lambda *args: contextlib.nullcontext(lambda: None))
    plain = register.register_nonrigid(**options)
    np.testing.assert_array_equal(ahead.ddf, plain.ddf)


@pytest.mark.parametrize("change, words", [
    (dict(iterations=5), "whole numbers"),
    (dict(iterations=(5.7, 3)), "whole numbers"),
    (dict(iterations=(True, 3)), "whole numbers"),
    (dict(iterations=(0, 3)), "coarsest positive"),
    (dict(levels=0, iterations=()), "`levels` is 0; it needs to be at least 1"),
    (dict(levels=0, iterations=(5,)), "`levels` is 0; it needs to be at least 1"),
    (dict(levels=3, iterations=(5, 5, 5)), "level 1 of 3 has (8, 4, 4) voxels"),
    (dict(image_loss="dice"), "needs an image loss"),
    (dict(deform_loss="folding"), "fold_weight"),
    (dict(deform_weight=-1.0), "`deform_weight` is -1.0"),
    (dict(fold_weight=float("nan")), "`fold_weight` is nan"),
    (dict(learning_rate=0.0), "`learning_rate` is 0.0"),
    (dict(fold_threshold=1.0), "`fold_threshold` is 1.0"),
    (dict(fold_threshold=-0.1), "`fold_threshold` is -0.1"),
    (dict(fold_threshold=float("nan")), "`fold_threshold` is nan"),
    (dict(fold_threshold="0.3"), "`fold_threshold` is '0.3' (str); it needs a number"),
    (dict(fold_weight=None), "`fold_weight` is None (NoneType); it needs a number"),
    (dict(learning_rate=True), "`learning_rate` is True (bool); it needs a number"),
    (dict(initial_theta=np.full((1, 4, 3), np.nan)), "NaN or infinite"),
    (dict(initial_ddf=np.full((1, 8, 16, 16, 3), np.inf, np.float32)), "NaN or infinite"),
])
def test_register_nonrigid_refuses_a_setting_it_cannot_use_before_any_work(change, words):
    fixed = np.zeros((1, 8, 16, 16), np.float32)
    options = dict(fixed=fixed, moving=fixed, levels=2, iterations=(5, 5), progress=False, jit_compile=False)
    with pytest.raises(ValueError) as error:
        register.register_nonrigid(**{**options, **change})
    assert words in str(error.value)


def test_register_nonrigid_accepts_numpy_counts():
    fixed = smooth_volume((8, 16, 16))
    result = register.register_nonrigid(fixed=fixed, moving=np.roll(fixed, 1, axis=2), levels=2,
                                        iterations=np.array([3, 2]), downscale=(1, 2, 2),
                                        progress=False, jit_compile=False)
    assert result.iterations == 5 and result.ddf.shape == (1, 8, 16, 16, 3)


@pytest.mark.parametrize("threshold", [0.1, 0.3])
def test_ddf_step_uses_the_fold_threshold_it_is_given(threshold):
    # A field whose one-sided determinants lie around 0.2 to 1.8: the hinge with
    # margin tau is the mean of max(0, tau - det) over the 8 combinations, computed
    # here in float64 from np.linalg.det of forward/backward differences.
    fixed = smooth_volume((8, 8, 8), rng=np.random.default_rng(9))
    field = 0.6 * np.sin(np.indices((8, 8, 8)).transpose(1, 2, 3, 0) * 1.3)[None]
    step, _, _ = register.make_ddf_step(fixed=fixed, moving=fixed, initial_field=field.astype(np.float32),
                                        deform_weight=0.0, fold_weight=1.0, fold_threshold=threshold,
                                        learning_rate=1e-9, jit_compile=False)
    total, image_term, _ = (float(value) for value in step())
    hinges = []
    for combo in itertools.product((1, 0), repeat=3):  # 1: forward, 0: backward, as ONE_SIDED_COMBINATIONS
        columns = []
        for axis, forward in zip((1, 2, 3), combo):
            steps = np.diff(field[0], axis=axis - 1)
            first, last = np.take(steps, [0], axis=axis - 1), np.take(steps, [-1], axis=axis - 1)
            padded = np.concatenate([first, steps, last], axis=axis - 1)
            columns.append(np.take(padded, np.arange(1, 9) if forward else np.arange(0, 8), axis=axis - 1))
        jacobian = np.stack(columns, axis=-1) + np.eye(3)  # [..., component, axis]
        hinges.append(np.maximum(0.0, threshold - np.linalg.det(jacobian)).mean())
    assert min(hinges) >= 0 and max(hinges) > 0
    np.testing.assert_allclose(total - image_term, np.mean(hinges), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("velocity", [False, True])
def test_ddf_step_has_no_matrix_product(velocity):
    # the nonrigid step (warp, LNCC, bending, folding hinge, Adam), compiled as the
    # pipeline compiles it: no matrix product for TensorFloat-32 to round on Ampere
    # and later GPUs (tests/graph_ops.py)
    fixed = tf.constant(smooth_volume((8, 10, 12), rng=np.random.default_rng(1)))
    moving = tf.constant(np.roll(fixed.numpy(), 1, axis=2))
    update = nonrigid._step_function("lncc", "bending", True, velocity, True, True)
    field = tf.Variable(tf.zeros((1, 8, 10, 12, 3)))
    adam = register.AdamVariables.of(field)
    arguments = (field, adam.m, adam.v, adam.t, fixed, moving, tf.zeros((1, 8, 10, 12, 3)),
                 losses.window_moments(fixed), tf.constant([1.0, 1.0, 0.1, 0.3]))
    assert matrix_products(update, *arguments) == set()
