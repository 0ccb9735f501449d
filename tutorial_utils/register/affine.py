"""Affine registration by stochastic sampling: sampled losses, centred parameters, the recipe.

Why: the seed recipe (chapter 3's first loop) compares every fixed voxel (on
the grid, unsmoothed) with the moving image interpolated at a sub-voxel offset
that varies across the volume; trilinear interpolation smooths in proportion to
that offset, so the loss has its minimum a fraction of a voxel away from the
true transform. Sampling BOTH images at random off-grid points (as elastix's
random-coordinate sampler), with a light final smoothing and fresh samples
every iteration, removes most of that bias, and each step costs O(samples),
not O(voxels).
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple, Sequence, Tuple

import numpy as np

from .._checks import as_float32 as _as_float32
from .._tf import tf
from ..results import RegistrationResult
from ..affine import affine_parameterisation, identity, parameterisation_matrices, transform_points
from ..losses import get_loss
from ..warp import identity_affine, resample_points, sample_with_gradient
from .loop import LevelRun, batched_pair, coarse_to_fine, run_steps
from .pyramid import smoothing_pyramid

__all__ = [
    "sample_points",
    "sampled_dissimilarity",
    "affine_parameterisation",
    "AdamState",
    "make_stochastic_affine_step",
    "affine_schedule",
    "gauss_newton_step",
    "register_affine",
]

_SAMPLED_LOSSES = ("ssd", "ncc")


def _check_margin(sizes, margin) -> None:
    """A ValueError unless points can keep ``margin`` voxels from every face of a volume of ``sizes``."""
    if not margin >= 0 or any(size - 1 - 2 * margin <= 0 for size in sizes):
        raise ValueError(
            f"`margin` is {margin} voxels, which leaves no room in a volume of size {tuple(sizes)}; "
            "it needs 0 <= margin < (smallest size - 1) / 2 (at the bound every point lies on one plane)."
        )


def sample_points(grid_size: Sequence[int], count: int, seed: Tuple[int, int], margin: float = 1.0) -> tf.Tensor:
    """Uniform random (off-grid) voxel coordinates inside a volume.

    Stateless: the same ``seed`` gives the same points, and no global random
    state is read or changed (``tf.random.stateless_uniform``).

    Parameters
    ----------
    grid_size : sequence of 3 int
        ``(d1, d2, d3)``.
    count : int
        Number of points.
    seed : pair of int (or an int32 tensor of shape (2,))
        E.g. ``(seed, iteration)`` for new points at every iteration.
    margin : float
        Distance in voxels kept from the faces of the volume (>= 0): points lie
        in ``[margin, size - 1 - margin]`` along each axis.

    Returns
    -------
    tf.Tensor ``(count, 3)`` float32, voxels in index order.

    Examples
    --------
    >>> points = sample_points((10, 10, 4), 1000, seed=(0, 1), margin=1.0)
    >>> tuple(points.shape), float(tf.reduce_min(points)) >= 1.0
    ((1000, 3), True)
    >>> bool(tf.reduce_max(points[:, 2]) <= 2.0)
    True
    """
    sizes = [int(size) for size in grid_size]
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"`grid_size` is {grid_size}, but it needs three positive sizes (d1, d2, d3).")
    _check_margin(sizes, margin)
    low = tf.constant([margin] * 3, tf.float32)
    high = tf.constant([size - 1.0 - margin for size in sizes], tf.float32)
    uniform = tf.random.stateless_uniform((int(count), 3), seed=tf.cast(seed, tf.int32), alg="philox")
    return low + uniform * (high - low)


def sampled_dissimilarity(fixed, moving, points, theta, image_loss: str = "ssd") -> Tuple[tf.Tensor, tf.Tensor]:
    """The dissimilarity of ``fixed`` and ``moving`` compared at off-grid points only.

    Both images are interpolated (trilinearly): the fixed one at ``points``,
    the moving one at ``[points, 1] @ theta``. Only points whose moving
    position lies inside the moving volume count (the overlap mask), so a
    transform cannot lower the loss by pushing anatomy out of view.

    Parameters
    ----------
    fixed, moving : tensor ``(d1, d2, d3)`` (or ``(1, d1, d2, d3)``)
    points : tensor ``(n, 3)``, fixed-image voxel coordinates.
    theta : tensor ``(1, 4, 3)`` or ``(4, 3)``, the package's affine convention.
    image_loss : {"ssd", "ncc"}
        ``"ssd"``: mean squared difference over the overlap; ``"ncc"``: 1 minus
        the normalised cross-correlation over the overlap.

    Returns
    -------
    (loss, overlap) : scalar tensors; ``overlap`` is the fraction of points inside.
    """
    if image_loss not in _SAMPLED_LOSSES:
        raise ValueError(f"`image_loss` is {image_loss!r}; sampled losses are {_SAMPLED_LOSSES}.")
    fixed = tf.reshape(fixed, tf.shape(fixed)[-3:]) if len(fixed.shape) == 4 else fixed
    moving = tf.reshape(moving, tf.shape(moving)[-3:]) if len(moving.shape) == 4 else moving
    theta = tf.reshape(tf.cast(theta, tf.float32), (4, 3))
    mapped = transform_points(theta, points)  # no matrix product: float32 on every GPU
    upper = tf.cast(tf.shape(moving), tf.float32) - 1.0
    inside = tf.cast(tf.reduce_all((mapped >= 0.0) & (mapped <= upper), axis=-1), tf.float32)
    fixed_values = resample_points(fixed[None], points)  # (1, n): one home for interpolation
    moving_values = resample_points(moving[None], mapped)
    as_volume = lambda values: tf.reshape(values, (1, -1, 1, 1))  # noqa: E731 (n points, one batch)
    loss = get_loss(image_loss)(as_volume(fixed_values), as_volume(moving_values), mask=as_volume(inside))
    return loss[0], tf.reduce_sum(inside) / tf.cast(tf.shape(points)[0], tf.float32)






class AdamState(NamedTuple):
    """The state of :func:`make_stochastic_affine_step`'s hand-written Adam, by name.

    Adam as Kingma & Ba (ICLR 2015), Algorithm 1 (``beta_1 = 0.9``,
    ``beta_2 = 0.999``, ``epsilon = 1e-8``), plus the Polyak-Ruppert sums and
    the current call's bookkeeping. Shapes: ``(4, 3)`` for the parameter-shaped
    fields, scalars otherwise.
    """

    parameters: tf.Tensor  # (4, 3) centred affine parameters (see affine_parameterisation)
    first_moment: tf.Tensor  # (4, 3) Adam's m
    second_moment: tf.Tensor  # (4, 3) Adam's v
    step: tf.Tensor  # int32 Adam's t: iterations run so far, all calls together
    average_sum: tf.Tensor  # (4, 3) sum of the averaged iterates
    average_count: tf.Tensor  # float32 number of averaged iterates
    loss_sum: tf.Tensor  # float32 sum of this call's losses
    overlap: tf.Tensor  # float32 overlap fraction of this call's last iteration


_KEPT = ("parameters", "first_moment", "second_moment", "step", "average_sum", "average_count")
_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-8


def _adam_iteration(state: AdamState, gradient, learning_rate, accumulate, loss, overlap) -> AdamState:
    """One Adam update of ``state`` (Kingma & Ba 2015, Algorithm 1), then the Polyak sums."""
    t = state.step + 1
    t_float = tf.cast(t, tf.float32)
    first = _BETA_1 * state.first_moment + (1 - _BETA_1) * gradient
    second = _BETA_2 * state.second_moment + (1 - _BETA_2) * gradient**2
    update = (first / (1 - _BETA_1**t_float)) / (tf.sqrt(second / (1 - _BETA_2**t_float)) + _EPSILON)
    params = state.parameters - learning_rate * update
    return AdamState(
        parameters=params, first_moment=first, second_moment=second, step=t,
        average_sum=state.average_sum + tf.where(accumulate, params, tf.zeros_like(params)),
        average_count=state.average_count + tf.where(accumulate, 1.0, 0.0),
        loss_sum=state.loss_sum + loss, overlap=overlap,
    )


def make_stochastic_affine_step(
    grid_size: Sequence[int],
    *,
    samples: int = 2048,
    iterations_per_call: int = 25,
    image_loss: str = "ssd",
    margin: float = 1.0,
    seed: int = 0,
    initial_theta=None,
    jit_compile: bool = True,
):
    """Adam on the centred affine with fresh random samples at every iteration.

    One call of ``step(fixed, moving, learning_rates, accumulate)`` runs
    exactly ``len(learning_rates)`` iterations (1 to ``iterations_per_call``)
    inside one compiled loop, so Python's per-call overhead is paid once per
    call; the count is a tensor argument, so calls of any length share one
    compiled program, as do the levels of a smoothing pyramid (the images are
    arguments too). A call whose Adam counter starts at ``t0`` draws
    ``samples * iterations_per_call`` points from the stateless seed
    ``(seed, t0)`` and gives its ``i``-th iteration the ``i``-th block of
    ``samples``: reruns give the same points, and each iteration new ones.

    Parameters
    ----------
    grid_size : sequence of 3 int
        The fixed (and moving) volume's ``(d1, d2, d3)``.
    samples : int
        Points per iteration (>= 16); a step costs O(samples), whatever the volume size.
    iterations_per_call : int
        The most iterations one call runs (>= 1).
    image_loss : {"ssd", "ncc"}
        See :func:`sampled_dissimilarity`.
    margin : float
        Points keep this distance (voxels) from the fixed volume's faces.
    seed : int
    initial_theta : array ``(1, 4, 3)``, optional
        Starting transform (default: the identity).
    jit_compile : bool
        Compile the loop with XLA.

    Returns
    -------
    step : callable
        ``step(fixed, moving, learning_rates, accumulate)`` with ``fixed``/``moving``
        ``(d1, d2, d3)`` tensors and two sequences of one length ``n``
        (1 <= n <= ``iterations_per_call``): iteration ``i`` of the call uses
        ``learning_rates[i]`` and, if ``accumulate[i]``, adds its parameters to a
        running (Polyak) average. Returns ``(mean loss of the n iterations, max
        corner movement in voxels during the call, overlap fraction of the last
        iteration)``.
    state : dict
        ``"parameters"`` (tf.Variable (4, 3)), ``"theta"`` (callable -> current
        theta (1, 4, 3)), ``"average_theta"`` (callable -> averaged theta, or the
        current one before any accumulation), ``"iterations"`` (callable ->
        Adam's counter: the iterations run so far).

    Raises
    ------
    ValueError
        For ``samples`` < 16, ``iterations_per_call`` < 1, an unknown
        ``image_loss``; and (from ``step``) schedules of a wrong length.
    """
    if int(samples) < 16 or int(iterations_per_call) < 1:
        raise ValueError(
            f"`samples` is {samples} and `iterations_per_call` is {iterations_per_call}; "
            "they need to be >= 16 and >= 1."
        )
    if image_loss not in _SAMPLED_LOSSES:
        raise ValueError(f"`image_loss` is {image_loss!r}; sampled losses are {_SAMPLED_LOSSES}.")
    sizes = tuple(int(size) for size in grid_size)
    per_call = int(iterations_per_call)
    to_theta, from_theta = affine_parameterisation(sizes)
    start = identity_affine(1) if initial_theta is None else _as_float32(initial_theta, "initial_theta")
    variables = {
        "parameters": tf.Variable(from_theta(start), name="affine_parameters"),
        "first_moment": tf.Variable(tf.zeros((4, 3))), "second_moment": tf.Variable(tf.zeros((4, 3))),
        "step": tf.Variable(0, dtype=tf.int32),
        "average_sum": tf.Variable(tf.zeros((4, 3))), "average_count": tf.Variable(0.0),
    }
    corners = tf.constant(_volume_corners(sizes), tf.float32)

    def one_iteration(fixed, moving, learning_rates, accumulate, all_points, start_count, state):
        index = state.step - start_count
        with tf.GradientTape() as tape:
            tape.watch(state.parameters)
            loss, overlap = sampled_dissimilarity(
                fixed, moving, tf.gather(all_points, index), to_theta(state.parameters), image_loss)
        gradient = tape.gradient(loss, state.parameters)
        return _adam_iteration(state, gradient, tf.gather(learning_rates, index),
                               tf.gather(accumulate, index), loss, overlap)

    def chunk(fixed, moving, learning_rates, accumulate, all_points, count):
        before = transform_points(to_theta(variables["parameters"])[0], corners)
        state = AdamState(**{name: variables[name].read_value() for name in _KEPT},
                          loss_sum=tf.constant(0.0), overlap=tf.constant(0.0))
        start_count = state.step
        (state,) = tf.while_loop(
            lambda s: True,
            lambda s: (one_iteration(fixed, moving, learning_rates, accumulate, all_points, start_count, s),),
            (state,),
            maximum_iterations=count,
        )
        for name in _KEPT:
            variables[name].assign(getattr(state, name))
        moved = tf.reduce_max(tf.norm(transform_points(to_theta(state.parameters)[0], corners) - before, axis=-1))
        return state.loss_sum / tf.cast(count, tf.float32), moved, state.overlap

    compiled = tf.function(chunk, jit_compile=jit_compile, autograph=False)

    def step(fixed, moving, learning_rates, accumulate):
        rates = np.asarray(learning_rates, np.float32).reshape(-1)
        flags = np.asarray(accumulate, bool).reshape(-1)
        if not 1 <= rates.size <= per_call or flags.shape != rates.shape:
            raise ValueError(
                f"`learning_rates` has {rates.size} entries and `accumulate` {flags.size}; they need "
                f"one entry per iteration of the call, between 1 and iterations_per_call={per_call}."
            )
        # The points are drawn outside the compiled loop (XLA compiles TensorFlow's
        # random generator slowly), one stateless seed (seed, first iteration) per call.
        first_iteration = int(variables["step"].numpy())
        points = sample_points(sizes, samples * per_call, (int(seed), first_iteration), margin)
        points = tf.reshape(points, (per_call, samples, 3))
        padded_rates, padded_flags = np.zeros(per_call, np.float32), np.zeros(per_call, bool)
        padded_rates[: rates.size], padded_flags[: flags.size] = rates, flags
        return compiled(fixed, moving, tf.constant(padded_rates), tf.constant(padded_flags), points,
                        tf.constant(rates.size, tf.int32))

    def average_theta():
        if float(variables["average_count"].numpy()) == 0.0:
            return to_theta(variables["parameters"])
        return to_theta(variables["average_sum"] / variables["average_count"])

    return step, {"parameters": variables["parameters"], "theta": lambda: to_theta(variables["parameters"]),
                  "average_theta": average_theta, "iterations": lambda: int(variables["step"].numpy())}


def affine_schedule(
    iterations: int,
    *,
    learning_rate: float,
    final_learning_rate: float,
    block: int = 25,
    average_last: float = 0.0,
) -> Tuple[np.ndarray, np.ndarray]:
    """The per-iteration learning rates and averaging flags of one level of :func:`register_affine`.

    The learning rate is held for blocks of ``block`` iterations (the last
    block may be shorter) and decays geometrically across the level's
    ``ceil(iterations / block)`` blocks, from ``learning_rate`` (first block)
    to ``final_learning_rate`` (last block; one block: ``learning_rate`` only).
    Exactly the last ``floor(average_last * iterations)`` iterations are
    averaged (Polyak-Ruppert).

    Parameters
    ----------
    iterations : int
        The level's iteration count (>= 1).
    learning_rate, final_learning_rate : float
    block : int
        Iterations per learning-rate block (>= 1).
    average_last : float in [0, 1)

    Returns
    -------
    (learning_rates, averaged) : ndarrays ``(iterations,)``, float64 and bool.

    Examples
    --------
    >>> rates, averaged = affine_schedule(30, learning_rate=0.1, final_learning_rate=0.01,
    ...                                   block=25, average_last=0.5)
    >>> float(rates[24]), float(rates[25]), int(averaged.sum()), int(averaged.argmax())
    (0.1, 0.01, 15, 15)
    """
    n, block = int(iterations), int(block)
    if n < 1 or block < 1 or not 0 <= average_last < 1:
        raise ValueError(
            f"`iterations` is {iterations}, `block` {block}, `average_last` {average_last}; they need "
            "iterations >= 1, block >= 1 and 0 <= average_last < 1."
        )
    blocks = -(-n // block)
    rates = np.geomspace(learning_rate, final_learning_rate, blocks)[np.arange(n) // block]
    return rates, _averaged(n, average_last)


def _averaged(iterations: int, average_last: float) -> np.ndarray:
    """``(iterations,)`` bool: exactly the last ``floor(average_last * iterations)`` are True."""
    count = int(math.floor(average_last * iterations + 1e-9))  # 1e-9: 0.29 * 100 is 28.999...
    return np.arange(iterations) >= iterations - count


# --------------------------------------------------------------------------
# Gauss-Newton: the second-order step of least squares (NumPy, nothing compiled)
# --------------------------------------------------------------------------
#: Levenberg-Marquardt damping of :func:`gauss_newton_step`, relative to the normal matrix's diagonal.
GN_DAMPING = 1e-3
#: The most a :func:`gauss_newton_step` moves any corner of the volume, in voxels (a trust region).
GN_MAX_STEP = 5.0


def _volume_corners(size) -> np.ndarray:
    """The 8 corner voxels of a volume of ``size`` ``(d1, d2, d3)``, float64 ``(8, 3)``."""
    return np.array([[x, y, z] for x in (0, size[0] - 1) for y in (0, size[1] - 1) for z in (0, size[2] - 1)],
                    np.float64)


def _corner_design(size, matrix) -> np.ndarray:
    """``[corner, 1] M`` for the 8 corners of a volume: how each corner moves per parameter, ``(8, 4)``."""
    return np.concatenate([_volume_corners(size), np.ones((8, 1))], axis=1) @ matrix


def gauss_newton_step(fixed, moving, parameters, points, damping: float = GN_DAMPING,
                      max_step: float = GN_MAX_STEP):
    r"""One Gauss-Newton step on the sampled SSD, in the centred parameters.

    With :math:`r_k = M(T_\theta(p_k)) - F(p_k)` at the sampled points whose
    mapped position lies inside the moving volume, and :math:`J` the
    derivative of :math:`r` with respect to the 12 parameters (the moving
    image's trilinear gradient at the mapped point times the parameterisation's
    design row ``[p, 1] M``, :func:`tutorial_utils.affine.parameterisation_matrices`),
    the step solves the normal equations of the linearised least squares,

    .. math:: (J^\top J + \lambda\, \mathrm{diag}(J^\top J))\, \delta = J^\top r,
              \qquad \text{parameters} \leftarrow \text{parameters} - \delta,

    (Gauss-Newton with Levenberg-Marquardt damping :math:`\lambda`, the step
    shortened if it would move a corner of the volume by more than
    ``max_step`` voxels: a trust region against the wild first steps of a
    poorly determined fit; Nocedal &
    Wright, *Numerical Optimization*, 2nd ed., section 10.3; for
    images, Lucas & Kanade 1981 and Baker & Matthews, IJCV 56:221-255, 2004).
    SSD is a sum of squares, so :math:`J^\top J` approximates its Hessian
    from first derivatives alone: near the optimum one step does what hundreds
    of Adam steps do. NumPy, float64; the 12 x 12 system is solved by
    ``numpy.linalg.solve``.

    Parameters
    ----------
    fixed, moving : arrays ``(d1, d2, d3)``, the (smoothed) images of one shape.
    parameters : array ``(4, 3)``, centred parameters (:func:`affine_parameterisation`).
    points : array ``(n, 3)``, fixed-image voxel coordinates inside the volume.
    damping : float
        :math:`\lambda` (>= 0).
    max_step : float
        Voxels (> 0).

    Returns
    -------
    (parameters, loss, overlap) : the updated ``(4, 3)`` float64 parameters;
    the mean squared difference at the points inside, before the step; the
    fraction of points inside.

    Raises
    ------
    ValueError
        For images that are not 3-D of one shape, parameters that are not
        ``(4, 3)``, points that are not ``(n, 3)`` finite values with
        ``n >= 12``; a negative ``damping`` or a ``max_step`` <= 0; non-finite
        image values at the points; fewer than 12 points inside the moving volume (no overlap to fit),
        or a moving image without gradient at the points (a constant region:
        the 12 parameters are then undetermined).
    """
    fixed, moving = np.asarray(fixed), np.asarray(moving)
    points = np.asarray(points, np.float64)
    if fixed.ndim != 3 or fixed.shape != moving.shape or np.shape(parameters) != (4, 3):
        raise ValueError(
            f"`fixed` {fixed.shape}, `moving` {moving.shape} and `parameters` {np.shape(parameters)}: the step "
            "needs two (d1, d2, d3) images of one shape and the (4, 3) centred parameters."
        )
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 12 or not np.all(np.isfinite(points)):
        raise ValueError(
            f"`points` has shape {points.shape} (finite: {bool(np.all(np.isfinite(points)))}); the step needs "
            "(n, 3) finite voxel coordinates, n >= 12 (an affine has 12 parameters)."
        )
    if not (np.isfinite(damping) and damping >= 0 and np.isfinite(max_step) and max_step > 0):
        raise ValueError(f"`damping` is {damping} and `max_step` {max_step}; they need to be >= 0 and > 0.")
    matrix, offset, _ = parameterisation_matrices(fixed.shape)
    theta = matrix @ np.asarray(parameters, np.float64) + offset
    mapped = points @ theta[:3] + theta[3]
    inside = np.all((mapped >= 0.0) & (mapped <= np.asarray(moving.shape) - 1.0), axis=1)
    count = int(inside.sum())
    if count < 12:
        raise ValueError(
            f"only {count} of {len(points)} sampled points map inside the moving image; an affine needs "
            "at least 12. The images do not overlap under this transform: start closer (`initial_theta`)."
        )
    if count < len(points):
        points, mapped = points[inside], mapped[inside]
    # the fixed image's values (its gradient is not needed: still faster than SciPy's map_coordinates)
    fixed_values, _ = sample_with_gradient(fixed, points)
    moving_values, gradient = sample_with_gradient(moving, mapped)
    residual = moving_values - fixed_values
    if not np.all(np.isfinite(residual)):
        raise ValueError("the images have NaN or infinite values at the sampled points; they need finite intensities.")
    design = np.concatenate([points, np.ones((count, 1))], axis=1) @ matrix  # d mapped / d parameters
    jacobian = (design[:, :, None] * gradient[:, None, :]).reshape(count, 12)
    normal = jacobian.T @ jacobian
    if not np.all(np.diag(normal) > 1e-12 * max(float(np.max(np.diag(normal))), 1e-300)):
        raise ValueError(
            "the moving image has no gradient along some direction at the sampled points (is it constant, "
            "or blank where the fixed image maps?), so no affine is determined: check the images passed."
        )
    step = np.linalg.solve(normal + damping * np.diag(np.diag(normal)), jacobian.T @ residual).reshape(4, 3)
    longest = float(np.max(np.linalg.norm(_corner_design(fixed.shape, matrix) @ step, axis=1)))
    if longest > max_step:
        step = step * (max_step / longest)
    return np.asarray(parameters, np.float64) - step, float(np.mean(residual**2)), count / len(inside)


def _gauss_newton_levels(fixed, moving, *, sigmas, iterations, samples, margin, seed, average_last,
                         tolerance, initial_theta, progress):
    """The coarse-to-fine Gauss-Newton loop of :func:`register_affine`: ``(theta, levels_run)``."""
    size = fixed.shape[1:4]
    matrix, offset, inverse = parameterisation_matrices(size)
    start = identity() if initial_theta is None else _as_float32(initial_theta, "initial_theta").numpy()
    state = {"parameters": inverse @ (np.reshape(start, (4, 3)).astype(np.float64) - offset),
             "sum": np.zeros((4, 3)), "count": 0, "draws": 0}
    low, high = np.full(3, float(margin)), np.asarray(size, np.float64) - 1.0 - margin
    corner_design = _corner_design(size, matrix)
    names, levels = ("loss", "movement", "overlap", "iterations"), len(sigmas)

    def run_level(level, _):
        count = int(iterations[level])
        averaged = _averaged(count, average_last if level == levels - 1 else 0.0)
        # float64 once per level: the interpolation works in float64 (no cast per iteration)
        fixed_level, moving_level = (smoothing_pyramid(image, [sigmas[level]])[0].astype(np.float64)
                                     for image in (fixed, moving))
        index = iter(range(count))

        def step():
            i = next(index)
            # stateless: (seed, iteration); NumPy's seeds are non-negative, TensorFlow's (Adam's) any
            # integer, so a negative seed is taken modulo 2**64 (documented in register_affine)
            rng = np.random.default_rng([int(seed) % 2**64, state["draws"]])
            state["draws"] += 1
            points = low + rng.random((int(samples), 3)) * (high - low)
            before = state["parameters"]
            state["parameters"], loss, overlap = gauss_newton_step(fixed_level, moving_level, before, points)
            if averaged[i]:
                state["sum"], state["count"] = state["sum"] + state["parameters"], state["count"] + 1
            movement = np.max(np.linalg.norm(corner_design @ (state["parameters"] - before), axis=1))
            return loss, float(movement), overlap, 1

        def settled(i, values):
            return tolerance > 0 and not averaged[i] and values["movement"] < tolerance

        run = run_steps(step, count, names=names, callback=settled, progress=progress,
                        description=f"affine level {level + 1}/{levels} (Gauss-Newton)")
        history = {**run["history"], "iterations": [int(n) for n in run["history"]["iterations"]]}
        return LevelRun(None, history, run["iterations"])

    levels_run = coarse_to_fine(run_level, levels, None, names=names)
    final = state["sum"] / state["count"] if state["count"] else state["parameters"]
    return (matrix @ final + offset)[None].astype(np.float32), levels_run


def _affine_pair(fixed, moving) -> Tuple[np.ndarray, np.ndarray]:
    """``fixed``, ``moving`` as float32 arrays ``(1, d1, d2, d3)`` of one shape, or a ValueError."""
    fixed = np.asarray(fixed, np.float32)
    moving = np.asarray(moving, np.float32)
    fixed, moving = (array[None] if array.ndim == 3 else array for array in (fixed, moving))
    fixed, moving = (t.numpy() for t in batched_pair(fixed, moving))
    if fixed.shape[0] != 1:
        raise ValueError(f"`fixed` has shape {fixed.shape}; register_affine takes one pair (batch 1).")
    return fixed, moving


#: Each optimiser's defaults for :func:`register_affine` (``None`` there means these).
AFFINE_DEFAULTS = {
    "gauss-newton": dict(iterations=(5, 5, 5, 30), samples=20000),
    "adam": dict(iterations=(200, 200, 200, 400), samples=2048, learning_rate=0.05, final_learning_rate=0.002,
                 iterations_per_call=25),
}


def register_affine(
    *,
    fixed,
    moving,
    optimiser: str = "gauss-newton",
    sigmas: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
    iterations: Sequence[int] = None,
    samples: int = None,
    learning_rate: float = None,
    final_learning_rate: float = None,
    image_loss: str = "ssd",
    margin: float = 1.0,
    average_last: float = 0.5,
    tolerance: float = 0.0,
    iterations_per_call: int = None,
    seed: int = 0,
    initial_theta=None,
    progress: bool = True,
) -> RegistrationResult:
    """Affine registration: stochastic sampling, centred parameters, smoothing pyramid.

    Coarse to fine (:func:`~tutorial_utils.register.coarse_to_fine`): at each
    level both images are smoothed with ``sigmas[level]``
    (:func:`~tutorial_utils.register.smoothing_pyramid`), compared at random
    off-grid points drawn anew at every iteration, and the centred affine
    parameters (:func:`affine_parameterisation`) are updated exactly
    ``iterations[level]`` times by one of two optimisers:

    - ``"gauss-newton"`` (default): :func:`gauss_newton_step` on the sampled
      SSD, in NumPy. SSD is a sum of squares, so its Hessian is approximated
      from first derivatives and a step goes most of the way to the minimum:
      tens of iterations, nothing traced or compiled. Points are drawn with
      ``numpy.random.default_rng([seed % 2**64, i])`` for the ``i``-th
      iteration of the call (all levels counted).
    - ``"adam"``: Adam on :func:`sampled_dissimilarity` (SSD or NCC), compiled
      with XLA, in calls of at most ``iterations_per_call``
      (:func:`make_stochastic_affine_step`; a level of 30 runs 25 + 5). The
      learning rate follows :func:`affine_schedule` with
      ``block=iterations_per_call``: held per block, decaying geometrically from
      ``learning_rate`` to ``final_learning_rate`` across the level's blocks.

    With either, exactly the last ``floor(average_last * iterations[-1])``
    iterations of the finest level are averaged (Polyak-Ruppert), which
    cancels most of the sampling noise. A level stops early when an update
    (Adam: a call) moves no corner of the volume by more than ``tolerance``
    voxels, as long as none of its iterations was averaged yet (a
    :func:`~tutorial_utils.register.run_steps` callback; 0 disables it); the
    averaged theta is then the last iterate if nothing was averaged.

    Parameters
    ----------
    fixed, moving : array ``(1, d1, d2, d3)`` (or ``(d1, d2, d3)``), same shape.
    optimiser : {"gauss-newton", "adam"}
    sigmas, iterations : sequences of equal length, coarse to fine
        Smoothing in voxels; iterations per level (each >= 1). ``None``: the
        optimiser's default (:data:`AFFINE_DEFAULTS`: ``(5, 5, 5, 30)`` for
        Gauss-Newton, ``(200, 200, 200, 400)`` for Adam).
    samples : int
        Random off-grid points per iteration (``None``: 20000 for Gauss-Newton,
        whose step is O(samples) NumPy work; 2048 for Adam).
    learning_rate, final_learning_rate : float
        Adam only: its step at the start and end of each level, in parameter
        units (see :func:`affine_parameterisation`; 0.05, the default, moves a
        typical voxel by about 0.05 times the volume's half-size; 0.002 at the end).
    image_loss : {"ssd", "ncc"}
        ``"ncc"`` with Adam only (Gauss-Newton minimises a sum of squares).
    margin : float
        Voxels the sampled points keep from the fixed volume's faces (>= 0,
        less than half the smallest size minus one).
    seed : int
        Seed of the random points (any whole number): the same seed, the same
        result.
    iterations_per_call : int
        Adam only (``None``: 25).
    average_last : float in [0, 1)
    tolerance : float
        Voxels (0: run every iteration).
    initial_theta : array ``(1, 4, 3)``, optional
    progress : bool

    Returns
    -------
    RegistrationResult
        ``theta``: ``(1, 4, 3)``, the package's convention
        (``warp_grid(grid, theta)`` maps fixed voxels into the moving image);
        ``method``: ``"register_affine (gauss-newton)"`` or ``"register_affine (adam)"``;
        ``history``: lists ``loss`` (Gauss-Newton: the iteration's SSD before
        its step; Adam: the mean over the call), ``movement`` (voxels),
        ``overlap``, ``iterations`` (1 per Gauss-Newton iteration; Adam: the
        call's iteration count) and ``level``, one entry per iteration or call;
        ``iterations``: the iterations run, all levels (``sum(iterations)``
        unless a level stopped early); ``seconds``: wall time of the whole call
        (smoothing and compilation included); ``level_seconds``: per level,
        smoothing included.

    Raises
    ------
    ValueError
        For images of different or wrong shapes, with non-finite values or
        constant (nothing to align), an unknown ``optimiser`` or ``image_loss``,
        a ``margin`` that leaves no room, a ``seed`` that is not a whole number,
        mismatched ``sigmas``/``iterations``, ``average_last`` outside [0, 1),
        fewer than 16 ``samples``, an ``initial_theta`` that is not ``(1, 4, 3)``
        (or ``(4, 3)``) finite values, an Adam setting (``learning_rate``, ``final_learning_rate``,
        ``iterations_per_call``) or ``image_loss="ncc"`` given to Gauss-Newton;
        from :func:`gauss_newton_step`, images that do not overlap or have no
        gradient.
    """
    begin = time.perf_counter()
    if optimiser not in AFFINE_DEFAULTS:
        raise ValueError(f"`optimiser` is {optimiser!r}; it needs one of {tuple(AFFINE_DEFAULTS)}.")
    given = dict(iterations=iterations, samples=samples, learning_rate=learning_rate,
                 final_learning_rate=final_learning_rate, iterations_per_call=iterations_per_call)
    if image_loss not in _SAMPLED_LOSSES:
        raise ValueError(f"`image_loss` is {image_loss!r}; sampled losses are {_SAMPLED_LOSSES}.")
    if optimiser == "gauss-newton":
        adam_only = [f"`{name}`" for name in ("learning_rate", "final_learning_rate", "iterations_per_call")
                     if given[name] is not None] + ([f"`image_loss`={image_loss!r}"] if image_loss != "ssd" else [])
        if adam_only:
            raise ValueError(
                f"{', '.join(adam_only)} {'applies' if len(adam_only) == 1 else 'apply'} to optimiser='adam' "
                "only; Gauss-Newton minimises the sampled SSD with steps of its own. Pass optimiser='adam' "
                "to use Adam."
            )
    settings = {name: AFFINE_DEFAULTS[optimiser][name] if given[name] is None else given[name]
                for name in AFFINE_DEFAULTS[optimiser]}
    fixed, moving = _affine_pair(fixed, moving)
    iterations = settings["iterations"]
    if len(sigmas) != len(iterations) or not len(sigmas) or min(iterations) < 1:
        default = f" (the default for optimiser={optimiser!r})" if given["iterations"] is None else ""
        raise ValueError(
            f"`sigmas` {tuple(sigmas)} and `iterations` {tuple(iterations)}{default} need the same, non-zero "
            "length and at least one iteration per level."
        )
    if not 0 <= average_last < 1:
        raise ValueError(f"`average_last` is {average_last}; it needs to lie in [0, 1).")
    _check_margin(fixed.shape[1:4], margin)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` is {seed!r}; it needs a whole number.")
    for name, image in (("fixed", fixed), ("moving", moving)):
        if float(image.max()) == float(image.min()):
            raise ValueError(
                f"`{name}` is constant ({float(image.min())} everywhere): there is nothing to align it by. "
                "Check that the image was read and rescaled as meant."
            )
    if int(settings["samples"]) < 16:
        raise ValueError(f"`samples` is {settings['samples']}; it needs to be >= 16 random points per iteration.")
    if initial_theta is not None:
        start = np.asarray(initial_theta, np.float64)
        if start.shape not in ((1, 4, 3), (4, 3)) or not np.all(np.isfinite(start)):
            raise ValueError(
                f"`initial_theta` has shape {start.shape} (finite: {bool(np.all(np.isfinite(start)))}); it needs "
                "(1, 4, 3) or (4, 3) finite values, an affine in the package's convention."
            )
    common = dict(sigmas=sigmas, margin=margin, seed=seed, average_last=average_last, tolerance=tolerance,
                  initial_theta=initial_theta, progress=progress)
    if optimiser == "gauss-newton":
        theta, levels_run = _gauss_newton_levels(fixed, moving, **settings, **common)
    else:
        theta, levels_run = _adam_levels(fixed, moving, image_loss=image_loss, **settings, **common)
    return RegistrationResult(
        method=f"register_affine ({optimiser})", theta=theta, history=levels_run.history,
        iterations=levels_run.iterations, level_seconds=levels_run.level_seconds,
        seconds=time.perf_counter() - begin,
    )


def _adam_levels(fixed, moving, *, sigmas, iterations, samples, learning_rate, final_learning_rate, image_loss,
                 margin, seed, average_last, tolerance, iterations_per_call, initial_theta, progress):
    """The coarse-to-fine Adam loop of :func:`register_affine`: ``(theta, levels_run)``."""
    step, state = make_stochastic_affine_step(
        fixed.shape[1:4], samples=samples, iterations_per_call=iterations_per_call,
        image_loss=image_loss, margin=margin, seed=seed, initial_theta=initial_theta,
    )
    names = ("loss", "movement", "overlap", "iterations")
    per_call, levels = int(iterations_per_call), len(sigmas)

    def run_level(level, _):
        count = int(iterations[level])
        rates, averaged = affine_schedule(
            count, learning_rate=learning_rate, final_learning_rate=final_learning_rate,
            block=per_call, average_last=average_last if level == levels - 1 else 0.0)
        fixed_level, moving_level = (tf.constant(smoothing_pyramid(image, [sigmas[level]])[0])
                                     for image in (fixed, moving))
        starts = iter(range(0, count, per_call))

        def level_step():
            first = next(starts)
            last = min(count, first + per_call)
            return (*step(fixed_level, moving_level, rates[first:last], averaged[first:last]), last - first)

        def settled(index, values):
            end = min(count, (index + 1) * per_call)
            return tolerance > 0 and not averaged[end - 1] and values["movement"] < tolerance

        run = run_steps(level_step, -(-count // per_call), names=names, callback=settled,
                        progress=progress, description=f"affine level {level + 1}/{levels}")
        history = {**run["history"], "iterations": [int(n) for n in run["history"]["iterations"]]}
        return LevelRun(None, history, sum(history["iterations"]))

    levels_run = coarse_to_fine(run_level, levels, None, names=names)
    return state["average_theta"]().numpy().astype(np.float32), levels_run
