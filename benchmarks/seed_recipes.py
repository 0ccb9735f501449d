"""The chapters' seed recipes as functions: what the benchmarks time and the drift test compares.

Chapters 3 and 4 write their first ``train_step`` in the notebook (the
``GradientTape`` is the lesson); these are the same steps, kept beside the
benchmarks that time them (``bench_recipes.py``, ``bench_classical.py``) and
checked against the chapters' own cells by ``tests/test_notebook_steps.py``.
Not part of the package: no chapter imports them.

Import by path (``benchmarks`` is not a package), e.g. from the repository root
``python -c "import sys; sys.path.insert(0, 'benchmarks'); import seed_recipes"``.
"""
from __future__ import annotations

import time
from typing import Callable, Tuple

from tutorial_utils import register
from tutorial_utils._tf import tf
from tutorial_utils.losses import dissimilarity_fn
from tutorial_utils.register.loop import batched_pair
from tutorial_utils.results import RegistrationResult
from tutorial_utils.warp import get_reference_grid, identity_affine, resample, warp_grid


def make_affine_step(
    *, fixed, moving, learning_rate: float = 0.01, image_loss: str = "ssd", jit_compile: bool = True
) -> Tuple[Callable[[], tf.Tensor], tf.Variable]:
    """Chapter 3's step: an Adam step on a 12-parameter affine, the loss on the whole grid.

    Parameters
    ----------
    fixed, moving : tensor ``(1, d1, d2, d3)``
    learning_rate : float
    image_loss : {"ssd", "ncc", "lncc", "gmi"}
        Passed to :func:`~tutorial_utils.losses.dissimilarity_fn`.
    jit_compile : bool

    Returns
    -------
    step : callable
        ``step()`` does one forward pass, gradient and Adam update, and returns the loss.
    theta : tf.Variable ``(1, 4, 3)``
        The affine being optimised, starting at the identity.
    """
    fixed, moving = batched_pair(fixed, moving)
    grid = get_reference_grid(fixed.shape[1:4])
    theta = tf.Variable(identity_affine(1), name="affine")
    optimiser = tf.keras.optimizers.Adam(learning_rate)

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            warped = resample(moving, warp_grid(grid, theta))
            loss = dissimilarity_fn(fixed, warped, image_loss)
        gradients = tape.gradient(loss, [theta])
        optimiser.apply_gradients(zip(gradients, [theta]))
        return loss

    return step, theta


def register_seed_affine(*, fixed, moving, iterations: int, learning_rate: float = 0.01,
                         image_loss: str = "ssd", progress: bool = False) -> RegistrationResult:
    """Chapter 3's seed recipe: :func:`make_affine_step` for ``iterations`` steps.

    Returns a :class:`~tutorial_utils.results.RegistrationResult` with ``theta``
    ``(1, 4, 3)``, ``history["loss"]`` (one per step), ``iterations`` and
    ``seconds`` (the whole call, compilation included).
    """
    start = time.perf_counter()
    step, theta = make_affine_step(fixed=fixed, moving=moving, learning_rate=learning_rate,
                                   image_loss=image_loss)
    run = register.run_steps(step, iterations, names=("loss",), progress=progress,
                             description="seed affine")
    return RegistrationResult(method="seed recipe (affine)", theta=theta.numpy(), history=run["history"],
                              iterations=run["iterations"], seconds=time.perf_counter() - start)


def register_ddf(*, fixed, moving, iterations: int, progress: bool = False,
                 description: str = "registering", **step_options) -> RegistrationResult:
    """Chapter 4's seed recipe: :func:`~tutorial_utils.register.make_ddf_step` for ``iterations`` steps.

    Parameters
    ----------
    fixed, moving : tensor ``(1, d1, d2, d3)``
    iterations : int
    progress : bool
    **step_options
        Passed to :func:`~tutorial_utils.register.make_ddf_step` (learning rate,
        losses, weight, velocity, seed).

    Returns
    -------
    RegistrationResult
        ``ddf`` ``(1, d1, d2, d3, 3)`` in voxels; ``history``: ``total``,
        ``image``, ``deform``, one per step; ``iterations``; ``seconds``: the
        whole call, compilation included; ``details["step_seconds"]``: time
        per step after the first (compiled) one.
    """
    start = time.perf_counter()
    step, _, get_ddf = register.make_ddf_step(fixed=fixed, moving=moving, **step_options)
    run = register.run_steps(step, iterations, names=("total", "image", "deform"),
                             progress=progress, description=description)
    return RegistrationResult(method="seed recipe (ddf)", ddf=get_ddf().numpy(), history=run["history"],
                              iterations=run["iterations"], seconds=time.perf_counter() - start,
                              details={"step_seconds": run["step_seconds"]})
