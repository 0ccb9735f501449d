"""The optimisation steps the chapters write out are the seed recipes the benchmarks time.

Chapters 3 and 4 write their ``train_step`` in the notebook on purpose (the
``GradientTape`` is the lesson); ``benchmarks/seed_recipes.py``'s
``make_affine_step`` and ``register.make_ddf_step`` are the same steps for
reuse. These tests execute the notebooks' own step cells on a small pair and
check that, after a few iterations, they hold the same parameters as those
steps, so the two cannot drift apart; and they test the seed recipes themselves.
"""
import importlib.util
from pathlib import Path

import nbformat
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import losses, register, warp

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "book" / "chapters"
STEPS = 5


def _load_seed_recipes():
    """``benchmarks/seed_recipes.py``, imported by path (``benchmarks`` is not a package)."""
    spec = importlib.util.spec_from_file_location("seed_recipes", ROOT / "benchmarks" / "seed_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seed_recipes = _load_seed_recipes()


def step_cell(notebook: str) -> str:
    """The notebook's code that defines ``train_step`` (up to its first use)."""
    cells = nbformat.read(CHAPTERS / notebook, as_version=4).cells
    sources = [c.source for c in cells if c.cell_type == "code" and "def train_step" in c.source]
    assert len(sources) == 1, f"{notebook}: expected one cell defining train_step"
    source = sources[0]
    return source.split("\nseed_run =")[0]  # chapter 4 runs the loop in the same cell


def smooth_pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    fixed = ndimage.gaussian_filter(rng.random(shape), 2)
    fixed = (fixed - fixed.min()) / (fixed.max() - fixed.min())
    moving = ndimage.shift(fixed, (0.8, -0.6, 0.4), order=1, mode="nearest")
    return tf.constant(fixed[None], tf.float32), tf.constant(moving[None], tf.float32)


def test_chapter_3_step_matches_seed_recipes_make_affine_step():
    fixed, moving = smooth_pair((16, 14, 12))
    namespace = {"tf": tf, "warp": warp, "losses": losses, "LEARNING_RATE": 0.01,
                 "fixed_image": fixed, "moving_image": moving,
                 "grid": warp.get_reference_grid((16, 14, 12))}
    exec(step_cell("03_affine_self_registration.ipynb"), namespace)
    step, theta = seed_recipes.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01)
    for _ in range(STEPS):
        notebook_loss = float(namespace["train_step"]())
        package_loss = float(step())
        assert notebook_loss == pytest.approx(package_loss, rel=1e-5)
    np.testing.assert_allclose(namespace["theta"].numpy(), theta.numpy(), atol=1e-6)
    assert np.abs(theta.numpy() - warp.identity_affine(1).numpy()).max() > 1e-3  # it moved


def test_chapter_4_step_matches_register_make_ddf_step():
    fixed, moving = smooth_pair((12, 16, 16), seed=1)
    seed = 42
    namespace = {"tf": tf, "warp": warp, "losses": losses, "register": register,
                 "pick": lambda full, quick: full, "SEED": seed, "image_size": (12, 16, 16),
                 "fixed_image": fixed, "moving_image": moving}
    exec(step_cell("04_nonrigid_prostate.ipynb"), namespace)
    step, field, _ = register.make_ddf_step(
        fixed=fixed, moving=moving, learning_rate=namespace["LEARNING_RATE"],
        image_loss=namespace["IMAGE_LOSS"], deform_loss=namespace["DEFORM_LOSS"],
        deform_weight=namespace["DEFORM_WEIGHT"], seed=seed,
    )
    np.testing.assert_array_equal(namespace["ddf"].numpy(), field.numpy())  # same start
    for _ in range(STEPS):
        notebook_terms = [float(v) for v in namespace["train_step"]()]
        package_terms = [float(v) for v in step()]
        np.testing.assert_allclose(notebook_terms, package_terms, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(namespace["ddf"].numpy(), field.numpy(), atol=1e-5)
    assert np.abs(field.numpy()).max() > 0.1  # it moved


# --------------------------------------------------------------------------
# the seed recipes themselves (benchmarks/seed_recipes.py)
# --------------------------------------------------------------------------
RNG = np.random.default_rng(5)


def smooth_volume(shape, sigma=2.0):
    volume = ndimage.gaussian_filter(RNG.standard_normal(shape), sigma)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)[None]


def test_affine_step_xla_matches_graph_and_recovers_transform():
    fixed = tf.constant(smooth_volume((24, 24, 12)))
    theta_true = warp.random_transform_generator(1, 0.1, seed=2)
    moving = warp.resample(fixed, warp.warp_grid(warp.get_reference_grid((24, 24, 12)), theta_true))
    step_xla, theta_xla = seed_recipes.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01, jit_compile=True)
    step_graph, theta_graph = seed_recipes.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01, jit_compile=False)
    for _ in range(3):
        np.testing.assert_allclose(step_xla().numpy(), step_graph().numpy(), rtol=1e-4)
    np.testing.assert_allclose(theta_xla.numpy(), theta_graph.numpy(), atol=1e-5)
    first = step_xla().numpy()
    for _ in range(100):
        last = step_xla().numpy()
    assert last < 0.5 * first


def volume_of_the_old_test_order():
    """The volume ``test_register_ddf_finds_a_known_shift`` got in the old tests/test_register.py,
    where it depended on the draws of the tests before it (alone, it got another volume and
    failed): those draws replayed, so the test is the same and no longer order-dependent."""
    rng = np.random.default_rng(5)
    for shape in [(24, 24, 12), (9, 11, 7)]:
        rng.standard_normal(shape)
    rng.uniform(0, [8, 10, 6], size=(300, 3))
    for shape in [(10, 12, 8), (32, 36, 24), (8, 8, 8), (8, 8, 9), (12, 16, 16), (12, 16, 16)]:
        rng.standard_normal(shape)
    volume = ndimage.gaussian_filter(rng.standard_normal((16, 32, 32)), 3.0)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)[None]


@pytest.mark.slow  # deselected under the lowest TensorFlow (scripts/test_colab.sh)
def test_register_ddf_finds_a_known_shift():
    fixed = tf.constant(volume_of_the_old_test_order())
    # moving(x) = fixed(x - e2), so the DDF that aligns it is +1 voxel along d2
    moving = tf.constant(np.roll(fixed.numpy(), 1, axis=2))
    result = seed_recipes.register_ddf(fixed=fixed, moving=moving, iterations=100, progress=False, seed=0)
    assert result.ddf.shape == (1, 16, 32, 32, 3)
    assert len(result.history["total"]) == 100 == result.iterations
    interior = result.ddf[0, 4:-4, 8:-8, 8:-8]
    assert interior[..., 1].mean() > 0.6
    assert np.abs(interior[..., [0, 2]]).mean() < 0.2


def test_wrong_pair_shapes_are_refused():
    with pytest.raises(ValueError, match="`moving` has shape"):
        seed_recipes.make_affine_step(fixed=np.zeros((1, 4, 4, 4)), moving=np.zeros((1, 4, 4, 5)))
