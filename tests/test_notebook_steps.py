"""The optimisation steps the chapters write out are the steps ``register`` packages.

Chapters 3 and 4 write their ``train_step`` in the notebook on purpose (the
``GradientTape`` is the lesson); ``register.make_affine_step`` and
``register.make_ddf_step`` are the same steps for reuse. These tests execute the
notebooks' own step cells on a small pair and check that, after a few
iterations, they hold the same parameters as ``register``'s steps, so the two
cannot drift apart.
"""
from pathlib import Path

import nbformat
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import losses, register, warp

CHAPTERS = Path(__file__).resolve().parents[1] / "book" / "chapters"
STEPS = 5


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


def test_chapter_3_step_matches_register_make_affine_step():
    fixed, moving = smooth_pair((16, 14, 12))
    namespace = {"tf": tf, "warp": warp, "losses": losses, "LEARNING_RATE": 0.01,
                 "fixed_image": fixed, "moving_image": moving,
                 "grid": warp.get_reference_grid((16, 14, 12))}
    exec(step_cell("03_affine_self_registration.ipynb"), namespace)
    step, theta = register.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01)
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
