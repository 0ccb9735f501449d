"""Classical (pairwise) registration by gradient descent: the optimisation steps.

The chapters write their first optimisation loop out in full, so a reader sees
the ``GradientTape``; these functions are the same steps packaged for reuse: by
the regularisation sweep of the nonrigid chapter, by the learned chapter's
timing comparison, and by the benchmark. Every step is compiled with XLA
(``jit_compile=True``), which is what makes the recipes quick on a CPU.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._tf import tf
from .losses import dissimilarity_fn, local_displacement_energy
from ._checks import as_float32 as _as_float32
from ._checks import check_rank, check_same_shape
from .warp import (
    Warping,
    get_reference_grid,
    identity_affine,
    integrate_velocity,
    resample,
    warp_grid,
)

__all__ = ["make_affine_step", "make_ddf_step", "run_steps", "register_ddf"]


def _batched_pair(fixed, moving):
    check_rank(fixed, "fixed", [4], "(1, d1, d2, d3)")
    check_rank(moving, "moving", [4], "(1, d1, d2, d3)")
    check_same_shape(fixed, moving, "fixed", "moving")
    return _as_float32(fixed, "fixed"), _as_float32(moving, "moving")


def make_affine_step(
    *, fixed, moving, learning_rate: float = 0.01, loss_name: str = "ssd", jit_compile: bool = True
) -> Tuple[Callable[[], tf.Tensor], tf.Variable]:
    """An Adam step that moves a 12-parameter affine to align ``moving`` to ``fixed``.

    Parameters
    ----------
    fixed, moving : tensor ``(1, d1, d2, d3)``
    learning_rate : float
    loss_name : {"ssd", "lncc", "gmi"}
        Passed to :func:`~tutorial_utils.losses.dissimilarity_fn`.

    Returns
    -------
    step : callable
        ``step()`` does one forward pass, gradient and Adam update, and returns the loss.
    theta : tf.Variable ``(1, 4, 3)``
        The affine being optimised, starting at the identity.
    """
    fixed, moving = _batched_pair(fixed, moving)
    grid = get_reference_grid(fixed.shape[1:4])
    theta = tf.Variable(identity_affine(1), name="affine")
    optimiser = tf.keras.optimizers.Adam(learning_rate)

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            warped = resample(moving, warp_grid(grid, theta))
            loss = dissimilarity_fn(fixed, warped, loss_name)
        gradients = tape.gradient(loss, [theta])
        optimiser.apply_gradients(zip(gradients, [theta]))
        return loss

    return step, theta


# --------------------------------------------------------------------------
# affine registration by stochastic sampling (the improved recipe)
# --------------------------------------------------------------------------
# Why: the seed recipe compares every fixed voxel (on the grid, unsmoothed) with
# the moving image interpolated at a sub-voxel offset that varies across the
# volume; trilinear interpolation smooths in proportion to that offset, so the
# loss has its minimum about 0.15 voxel away from the true transform. Sampling
# BOTH images at random off-grid points (as elastix's random-coordinate
# sampler), with a light final smoothing and fresh samples every iteration,
# removes most of that bias, and each step costs O(samples), not O(voxels).
__all__ += [
    "sample_points",
    "sampled_dissimilarity",
    "affine_parameterisation",
    "make_stochastic_affine_step",
    "smoothing_pyramid",
    "register_affine",
]

_SAMPLED_LOSSES = ("ssd", "ncc")


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
    if margin < 0 or any(size - 1 - 2 * margin < 0 for size in sizes):
        raise ValueError(
            f"`margin` is {margin} voxels, which leaves no room in a volume of size {tuple(sizes)}; "
            "it needs 0 <= margin <= (smallest size - 1) / 2."
        )
    low = tf.constant([margin] * 3, tf.float32)
    high = tf.constant([size - 1.0 - margin for size in sizes], tf.float32)
    uniform = tf.random.stateless_uniform((int(count), 3), seed=tf.cast(seed, tf.int32), alg="philox")
    return low + uniform * (high - low)


def _sample(volume, points):
    """Trilinear values of ``volume`` (d1, d2, d3) at ``points`` (n, 3); 0 outside.

    The same interpolation as :func:`~tutorial_utils.warp.resample` (tested
    against SciPy), written for a list of points: one gather of the eight
    corners from the flat volume, so its cost is O(points) and not O(voxels).
    """
    sizes = tf.shape(volume)
    upper = tf.cast(sizes, tf.float32) - 1.0
    inside = tf.reduce_all((points >= 0.0) & (points <= upper), axis=-1)
    clamped = tf.clip_by_value(points, 0.0, upper)
    floor = tf.floor(clamped)
    frac = (clamped - floor)[:, None, :]  # (n, 1, 3)
    offsets = tf.constant(_CORNER_OFFSETS)  # (8, 3) of 0/1
    corners = tf.minimum(tf.cast(floor, tf.int32)[:, None, :] + offsets, sizes - 1)  # (n, 8, 3)
    factors = tf.where(offsets > 0, frac, 1.0 - frac)  # (n, 8, 3)
    weights = factors[..., 0] * factors[..., 1] * factors[..., 2]  # (n, 8)
    index = (corners[..., 0] * sizes[1] + corners[..., 1]) * sizes[2] + corners[..., 2]
    values = tf.gather(tf.reshape(volume, [-1]), index)
    return tf.where(inside, tf.reduce_sum(weights * values, axis=-1), 0.0)


_CORNER_OFFSETS = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.int32)


def sampled_dissimilarity(fixed, moving, points, theta, loss_name: str = "ssd") -> Tuple[tf.Tensor, tf.Tensor]:
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
    loss_name : {"ssd", "ncc"}
        ``"ssd"``: mean squared difference over the overlap; ``"ncc"``: 1 minus
        the normalised cross-correlation over the overlap.

    Returns
    -------
    (loss, overlap) : scalar tensors; ``overlap`` is the fraction of points inside.
    """
    if loss_name not in _SAMPLED_LOSSES:
        raise ValueError(f"`loss_name` is {loss_name!r}; sampled losses are {_SAMPLED_LOSSES}.")
    fixed = tf.reshape(fixed, tf.shape(fixed)[-3:]) if len(fixed.shape) == 4 else fixed
    moving = tf.reshape(moving, tf.shape(moving)[-3:]) if len(moving.shape) == 4 else moving
    theta = tf.reshape(tf.cast(theta, tf.float32), (4, 3))
    mapped = points @ theta[:3] + theta[3]
    upper = tf.cast(tf.shape(moving), tf.float32) - 1.0
    inside = tf.cast(tf.reduce_all((mapped >= 0.0) & (mapped <= upper), axis=-1), tf.float32)
    count = tf.maximum(tf.reduce_sum(inside), 1.0)
    fixed_values = _sample(fixed, points)
    moving_values = _sample(moving, mapped)
    if loss_name == "ssd":
        loss = tf.reduce_sum(inside * (fixed_values - moving_values) ** 2) / count
    else:
        f_mean = tf.reduce_sum(inside * fixed_values) / count
        m_mean = tf.reduce_sum(inside * moving_values) / count
        f_c, m_c = inside * (fixed_values - f_mean), inside * (moving_values - m_mean)
        loss = 1.0 - tf.reduce_sum(f_c * m_c) / tf.sqrt(
            tf.reduce_sum(f_c**2) * tf.reduce_sum(m_c**2) + 1e-12
        )
    return loss, tf.reduce_sum(inside) / tf.cast(tf.shape(points)[0], tf.float32)


def affine_parameterisation(grid_size: Sequence[int]) -> Tuple[Callable, Callable]:
    """A well-conditioned affine: centred, scaled coordinates.

    The transform is ``x -> c + ((x - c) / s) @ L * s + t * s`` with ``c`` the
    volume's centre and ``s`` its root-mean-square half-size, so a unit change
    of any entry of the linear part ``L`` or of the translation ``t`` moves a
    typical voxel by about ``s`` voxels: the 12 parameters are commensurate,
    and pivoting about the centre decouples translation from rotation/scaling.

    Returns
    -------
    (to_theta, from_theta) : callables
        ``to_theta(parameters)`` maps a ``(4, 3)`` parameter tensor (identity:
        ``[I; 0]``) to the package's ``theta`` ``(1, 4, 3)``; ``from_theta`` is its inverse.

    Examples
    --------
    >>> to_theta, from_theta = affine_parameterisation((9, 9, 5))
    >>> parameters = from_theta(identity_affine(1))
    >>> bool(tf.reduce_all(tf.abs(to_theta(parameters) - identity_affine(1)) < 1e-6))
    True
    """
    sizes = np.asarray([float(size) for size in grid_size], np.float32)
    centre = tf.constant((sizes - 1.0) / 2.0)
    scale = float(max(np.sqrt(np.mean(((sizes - 1.0) / 2.0) ** 2)), 1.0))

    def to_theta(parameters):
        linear = parameters[:3]
        shift = centre - tf.linalg.matvec(linear, centre, transpose_a=True) + parameters[3] * scale
        return tf.concat([linear, shift[None]], axis=0)[None]

    def from_theta(theta):
        theta = tf.reshape(tf.cast(theta, tf.float32), (4, 3))
        linear = theta[:3]
        translation = (theta[3] - centre + tf.linalg.matvec(linear, centre, transpose_a=True)) / scale
        return tf.concat([linear, translation[None]], axis=0)

    return to_theta, from_theta


def make_stochastic_affine_step(
    grid_size: Sequence[int],
    *,
    samples: int = 2048,
    iterations_per_call: int = 25,
    loss_name: str = "ssd",
    margin: float = 1.0,
    seed: int = 0,
    initial_theta=None,
    jit_compile: bool = True,
):
    """Adam on the centred affine with fresh random samples at every iteration.

    One call of ``step(fixed, moving, learning_rate, accumulate)`` runs
    ``iterations_per_call`` iterations inside one compiled loop (so Python's
    per-call overhead is paid once per chunk). Iteration ``t`` draws its
    ``samples`` points from the stateless seed ``(seed, t)``: reruns give the
    same points, and each iteration new ones. The images are arguments, so the
    levels of a smoothing pyramid (same shape) reuse one compiled program.

    Parameters
    ----------
    grid_size : sequence of 3 int
        The fixed (and moving) volume's ``(d1, d2, d3)``.
    samples : int
        Points per iteration; a step costs O(samples), whatever the volume size.
    iterations_per_call : int
    loss_name : {"ssd", "ncc"}
    margin : float
        Points keep this distance (voxels) from the fixed volume's faces.
    seed : int
    initial_theta : array ``(1, 4, 3)``, optional
        Starting transform (default: the identity).

    Returns
    -------
    step : callable
        ``step(fixed, moving, learning_rate, accumulate)`` with ``fixed``/``moving``
        ``(d1, d2, d3)`` tensors; returns ``(mean loss, max corner movement in
        voxels during the call, overlap fraction)``. With ``accumulate`` true the
        parameters after each iteration are added to a running (Polyak) average.
    state : dict
        ``"parameters"`` (tf.Variable (4, 3)), ``"theta"`` (callable -> current
        theta (1, 4, 3)), ``"average_theta"`` (callable -> averaged theta, or the
        current one before any accumulation).
    """
    if int(samples) < 16 or int(iterations_per_call) < 1:
        raise ValueError(
            f"`samples` is {samples} and `iterations_per_call` is {iterations_per_call}; "
            "they need to be >= 16 and >= 1."
        )
    if loss_name not in _SAMPLED_LOSSES:
        raise ValueError(f"`loss_name` is {loss_name!r}; sampled losses are {_SAMPLED_LOSSES}.")
    sizes = tuple(int(size) for size in grid_size)
    to_theta, from_theta = affine_parameterisation(sizes)
    start = identity_affine(1) if initial_theta is None else _as_float32(initial_theta, "initial_theta")
    parameters = tf.Variable(from_theta(start), name="affine_parameters")
    moments = tf.Variable(tf.zeros((4, 3))), tf.Variable(tf.zeros((4, 3)))
    counter = tf.Variable(0, dtype=tf.int32)
    total, count = tf.Variable(tf.zeros((4, 3))), tf.Variable(0.0)
    corners = tf.constant(
        [[x, y, z, 1.0] for x in (0, sizes[0] - 1) for y in (0, sizes[1] - 1) for z in (0, sizes[2] - 1)],
        tf.float32,
    )
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-8

    def one_iteration(fixed, moving, learning_rate, accumulate, all_points, start_count, state):
        params, first, second, t, total, count, loss_sum, _ = state
        points = tf.gather(all_points, t - start_count)
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, overlap = sampled_dissimilarity(fixed, moving, points, to_theta(params), loss_name)
        gradient = tape.gradient(loss, params)
        t = t + 1
        t_float = tf.cast(t, tf.float32)
        first = beta_1 * first + (1 - beta_1) * gradient
        second = beta_2 * second + (1 - beta_2) * gradient**2
        update = (first / (1 - beta_1**t_float)) / (tf.sqrt(second / (1 - beta_2**t_float)) + epsilon)
        params = params - learning_rate * update
        total = total + tf.where(accumulate, params, tf.zeros_like(params))
        count = count + tf.where(accumulate, 1.0, 0.0)
        return params, first, second, t, total, count, loss_sum + loss, overlap

    def chunk(fixed, moving, learning_rate, accumulate, all_points):
        before = corners @ to_theta(parameters)[0]
        state = (parameters.read_value(), moments[0].read_value(), moments[1].read_value(),
                 counter.read_value(), total.read_value(), count.read_value(), 0.0, 0.0)
        start_count = state[3]
        state = tf.while_loop(
            lambda *_: True,
            lambda *s: one_iteration(fixed, moving, learning_rate, accumulate, all_points, start_count, s),
            state,
            maximum_iterations=int(iterations_per_call),
        )
        for variable, value in zip((parameters, moments[0], moments[1], counter, total, count), state):
            variable.assign(value)
        moved = tf.reduce_max(tf.norm(corners @ to_theta(state[0])[0] - before, axis=-1))
        return state[6] / float(iterations_per_call), moved, state[7]

    compiled = tf.function(chunk, jit_compile=jit_compile, autograph=False)

    def step(fixed, moving, learning_rate, accumulate):
        # The points are drawn outside the compiled loop (XLA compiles TensorFlow's
        # random generator slowly), one stateless seed (seed, first iteration) per call.
        first_iteration = int(counter.numpy())
        points = sample_points(sizes, samples * int(iterations_per_call), (int(seed), first_iteration), margin)
        points = tf.reshape(points, (int(iterations_per_call), samples, 3))
        return compiled(fixed, moving, learning_rate, accumulate, points)

    def average_theta():
        if float(count.numpy()) == 0.0:
            return to_theta(parameters)
        return to_theta(total / count)

    return step, {"parameters": parameters, "theta": lambda: to_theta(parameters), "average_theta": average_theta}


def smoothing_pyramid(volume, sigmas: Sequence[float]) -> List[np.ndarray]:
    """Gaussian-smoothed copies of ``volume`` at full resolution, coarse to fine.

    As elastix's default ``FixedSmoothingImagePyramid``: the levels are smoothed
    but not downsampled, so with sampled losses (cost O(samples)) every level
    has the same shape and reuses one compiled step.

    Parameters
    ----------
    volume : array ``(d1, d2, d3)`` or ``(1, d1, d2, d3)``
    sigmas : sequence of float
        Standard deviations in voxels (0 = unsmoothed), e.g. ``(4, 2, 1, 0.5)``.
        Borders are extended by the nearest value (``scipy.ndimage.gaussian_filter``,
        ``mode="nearest"``), so smoothing does not darken the faces.

    Returns
    -------
    list of float32 arrays ``(d1, d2, d3)``.
    """
    from scipy import ndimage

    array = np.asarray(volume, dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"`volume` has shape {np.shape(volume)}; it needs (d1, d2, d3) or (1, d1, d2, d3).")
    if any(sigma < 0 for sigma in sigmas):
        raise ValueError(f"`sigmas` is {tuple(sigmas)}; standard deviations need to be >= 0 voxels.")
    return [ndimage.gaussian_filter(array, float(s), mode="nearest") if s > 0 else array.copy() for s in sigmas]


def register_affine(
    *,
    fixed,
    moving,
    sigmas: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
    iterations: Sequence[int] = (200, 200, 200, 400),
    samples: int = 2048,
    learning_rate: float = 0.05,
    final_learning_rate: float = 0.002,
    loss_name: str = "ssd",
    margin: float = 1.0,
    average_last: float = 0.5,
    tolerance: float = 0.0,
    iterations_per_call: int = 25,
    seed: int = 0,
    initial_theta=None,
    progress: bool = True,
) -> Dict[str, object]:
    """Affine registration: stochastic sampling, centred parameters, smoothing pyramid.

    For each pyramid level (both images smoothed with ``sigmas[level]``) Adam
    runs ``iterations[level]`` iterations on :func:`sampled_dissimilarity`, with
    the learning rate decaying geometrically from ``learning_rate`` to
    ``final_learning_rate`` within the level. Over the last ``average_last``
    fraction of the finest level the iterates are averaged (Polyak-Ruppert),
    which cancels most of the sampling noise. A level stops early when a chunk
    of ``iterations_per_call`` iterations moves no corner of the volume by more
    than ``tolerance`` voxels (a :func:`run_steps` callback; 0 disables it).

    Parameters
    ----------
    fixed, moving : array ``(1, d1, d2, d3)`` (or ``(d1, d2, d3)``), same shape.
    sigmas, iterations : sequences of equal length, coarse to fine.
    samples : int
        Random off-grid points per iteration.
    learning_rate, final_learning_rate : float
        Adam's step at the start and end of each level, in parameter units (see
        :func:`affine_parameterisation`; 0.05 moves a typical voxel by about
        0.05 times the volume's half-size).
    loss_name : {"ssd", "ncc"}
    margin, seed, iterations_per_call : see :func:`make_stochastic_affine_step`.
    average_last : float in [0, 1)
    tolerance : float
    initial_theta : array ``(1, 4, 3)``, optional
    progress : bool

    Returns
    -------
    dict with
        ``theta``: ndarray ``(1, 4, 3)`` float32, the package's convention
        (``warp_grid(grid, theta)`` maps fixed voxels into the moving image);
        ``history``: dict of lists ``loss``, ``movement``, ``overlap`` (one per
        chunk) and ``level`` (the level of each chunk);
        ``iterations``: iterations taken in all;
        ``seconds``: wall time including smoothing and compilation.

    Raises
    ------
    ValueError
        For images of different or wrong shapes, or mismatched ``sigmas``/``iterations``.
    """
    import time

    begin = time.perf_counter()
    fixed = np.asarray(fixed, np.float32)
    moving = np.asarray(moving, np.float32)
    fixed, moving = (array[None] if array.ndim == 3 else array for array in (fixed, moving))
    fixed, moving = (t.numpy() for t in _batched_pair(fixed, moving))
    if fixed.shape[0] != 1:
        raise ValueError(f"`fixed` has shape {fixed.shape}; register_affine takes one pair (batch 1).")
    if len(sigmas) != len(iterations) or not len(sigmas) or min(iterations) < 1:
        raise ValueError(
            f"`sigmas` {tuple(sigmas)} and `iterations` {tuple(iterations)} need the same, non-zero "
            "length and at least one iteration per level."
        )
    if not 0 <= average_last < 1:
        raise ValueError(f"`average_last` is {average_last}; it needs to lie in [0, 1).")
    step, state = make_stochastic_affine_step(
        fixed.shape[1:4], samples=samples, iterations_per_call=iterations_per_call,
        loss_name=loss_name, margin=margin, seed=seed, initial_theta=initial_theta,
    )
    history: Dict[str, List[float]] = {"loss": [], "movement": [], "overlap": [], "level": []}
    pyramids = [smoothing_pyramid(image, sigmas) for image in (fixed, moving)]
    taken = 0
    for level, (fixed_level, moving_level) in enumerate(zip(*pyramids)):
        chunks = max(1, int(round(iterations[level] / iterations_per_call)))
        finest = level == len(sigmas) - 1
        schedule = np.geomspace(learning_rate, final_learning_rate, chunks)
        averaging_from = int(np.floor(chunks * (1 - average_last))) if finest and average_last > 0 else chunks
        fixed_tensor, moving_tensor = tf.constant(fixed_level), tf.constant(moving_level)
        chunk = iter(range(chunks))

        def level_step():
            index = next(chunk)
            return step(fixed_tensor, moving_tensor, tf.constant(schedule[index], tf.float32),
                        tf.constant(index >= averaging_from))

        def settled(index, values):
            return tolerance > 0 and index < averaging_from - 1 and values["movement"] < tolerance

        result = run_steps(level_step, chunks, names=("loss", "movement", "overlap"), callback=settled,
                           progress=progress, description=f"affine level {level + 1}/{len(sigmas)}")
        for name in ("loss", "movement", "overlap"):
            history[name].extend(result["history"][name])
        history["level"].extend([level] * result["iterations"])
        taken += result["iterations"] * int(iterations_per_call)
    theta = state["average_theta"]().numpy().astype(np.float32)
    return {"theta": theta, "history": history, "iterations": taken, "seconds": time.perf_counter() - begin}


def make_ddf_step(
    *,
    fixed,
    moving,
    learning_rate: float = 0.1,
    image_loss: str = "lncc",
    deform_loss: str = "bending",
    deform_weight: float = 1.0,
    velocity: bool = False,
    init_std: float = 1e-3,
    seed: Optional[int] = None,
    jit_compile: bool = True,
    include_border: bool = False,
    initial_field=None,
    base_ddf=None,
    fold_weight: float = 0.0,
) -> Tuple[Callable[[], Tuple[tf.Tensor, tf.Tensor, tf.Tensor]], tf.Variable, Callable[[], tf.Tensor]]:
    """An Adam step that optimises a dense field to align ``moving`` to ``fixed``.

    The loss is ``image_loss(fixed, warped) + deform_weight * deform_loss(ddf)``.
    With ``velocity=True`` the variable is a stationary velocity field and the
    DDF is obtained from it by scaling and squaring.

    Parameters
    ----------
    fixed, moving : tensor ``(1, d1, d2, d3)``
    learning_rate : float
    image_loss : {"ssd", "lncc", "gmi"}
    deform_loss : {"bending", "gradient-l1", "gradient-l2"}
    deform_weight : float
    velocity : bool
    init_std : float
        The field starts as N(0, init_std^2) voxels, as in the original tutorial.
    seed : int, optional
        Seed of the initial field.
    include_border : bool
        Penalise the deformation at every voxel, border included (see
        :func:`~tutorial_utils.losses.bending_energy`); default: interior only.
    initial_field : array-like ``(1, d1, d2, d3, 3)``, optional
        Start from this field (voxels) instead of the random one, e.g. a field
        brought up from a coarser level by :func:`upsample_field`.
    base_ddf : array-like ``(1, d1, d2, d3, 3)``, optional
        A fixed displacement added before warping, e.g. an affine's
        (:func:`~tutorial_utils.warp.ddf_from_affine`): the image is warped with
        ``base_ddf + ddf`` and only ``ddf`` is penalised.
    fold_weight : float
        Weight of :func:`folding_penalty` of the whole DDF (``base_ddf`` included),
        added to the loss (0: none, the original recipe).

    Returns
    -------
    step : callable
        ``step()`` -> ``(total, image_term, deform_term)`` after one update.
    field : tf.Variable ``(1, d1, d2, d3, 3)``
        The DDF (or velocity field) being optimised, in voxels.
    get_ddf : callable
        ``get_ddf()`` -> the current DDF ``(1, d1, d2, d3, 3)`` (without ``base_ddf``).
    """
    fixed, moving = _batched_pair(fixed, moving)
    size = tuple(fixed.shape[1:4])
    if initial_field is None:
        initial = tf.random.stateless_normal(
            (1,) + size + (3,), seed=(0, 0 if seed is None else int(seed)), stddev=init_std
        )
    else:
        initial = _field_on(initial_field, size, "initial_field")
    base = None if base_ddf is None else _field_on(base_ddf, size, "base_ddf")
    field = tf.Variable(initial, name="velocity" if velocity else "ddf")
    warping = Warping(fixed_image_size=size)
    optimiser = tf.keras.optimizers.Adam(learning_rate)

    def to_ddf():
        return integrate_velocity(field) if velocity else tf.identity(field)

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            ddf = to_ddf()
            warped = warping(inputs=[ddf if base is None else base + ddf, moving])
            image_term = dissimilarity_fn(fixed, warped, image_loss)
            deform_term = local_displacement_energy(ddf, deform_loss, include_border=include_border)
            loss = image_term + deform_weight * deform_term
            if fold_weight:
                whole = ddf if base is None else base + ddf
                loss += fold_weight * tf.reduce_mean(folding_penalty(whole))
        gradients = tape.gradient(loss, [field])
        optimiser.apply_gradients(zip(gradients, [field]))
        return loss, image_term, deform_term

    return step, field, to_ddf


def _field_on(field, size, name):
    """``field`` as a float32 ``(1, *size, 3)`` tensor, or a ValueError naming ``name``."""
    field = _as_float32(field, name)
    if tuple(field.shape) != (1,) + tuple(size) + (3,):
        raise ValueError(
            f"`{name}` has shape {tuple(field.shape)}; it needs (1, {', '.join(map(str, size))}, 3),"
            " the fixed image's grid."
        )
    return field


def _numpy_gradient(field, axis: int):
    """``numpy.gradient(..., edge_order=2)`` along spatial ``axis`` (1, 2 or 3) of
    ``(batch, d1, d2, d3, c)``: central differences inside, second-order one-sided
    differences at the two ends; same shape."""
    size = field.shape[axis]

    def part(start, stop):
        index = [slice(None)] * 5
        index[axis] = slice(start, stop)
        return field[tuple(index)]

    first = (-3.0 * part(0, 1) + 4.0 * part(1, 2) - part(2, 3)) / 2.0
    inside = (part(2, size) - part(0, size - 2)) / 2.0
    last = (3.0 * part(size - 1, size) - 4.0 * part(size - 2, size - 1) + part(size - 3, size - 2)) / 2.0
    return tf.concat([first, inside, last], axis=axis)


def folding_penalty(ddf, threshold: float = 0.1) -> tf.Tensor:
    r"""Mean hinge on the Jacobian determinant: a penalty on (near-)folding voxels only.

    .. math:: P = \frac{1}{N}\sum_v \max(0,\ \tau - \det(I + \nabla u(v)))

    with derivatives at every voxel as ``numpy.gradient(..., edge_order=2)``
    computes them (the determinant of
    :func:`~tutorial_utils.metrics.jacobian_determinant`).
    Voxels whose determinant stays above ``tau`` cost nothing, so unlike the
    bending energy it does not stiffen the whole field; it pushes the few
    voxels about to fold back (the selective Jacobian loss of Mok & Chung,
    CVPR 2020, with a margin ``tau``).

    Parameters
    ----------
    ddf : tensor ``(batch, d1, d2, d3, 3)``, voxels; each axis >= 3.
    threshold : float
        The margin ``tau``; 0 penalises folding voxels only.

    Returns
    -------
    tf.Tensor ``(batch,)``; 0 for an identity or any field with ``det > tau`` everywhere.
    """
    shape = check_rank(ddf, "ddf", [5], "(batch, d1, d2, d3, 3)")
    if shape[-1] != 3 or any(size is not None and size < 3 for size in shape[1:4]):
        raise ValueError(f"`ddf` has shape {shape}; it needs (batch, d1, d2, d3, 3), each d >= 3.")
    ddf = _as_float32(ddf, "ddf")
    # grad[i][c] = d u_c / d x_i; jac[c][i] = d (x_c + u_c) / d x_i
    grad = [tf.unstack(_numpy_gradient(ddf, axis), axis=-1) for axis in (1, 2, 3)]
    jac = [[grad[i][c] + (1.0 if i == c else 0.0) for i in range(3)] for c in range(3)]
    det = (
        jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
        - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
        + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0])
    )
    return tf.reduce_mean(tf.nn.relu(threshold - det), axis=[1, 2, 3])


def run_steps(
    step: Callable[[], object],
    iterations: int,
    *,
    names: Sequence[str] = ("total",),
    callback: Optional[Callable[[int, Dict[str, float]], Optional[bool]]] = None,
    progress: bool = True,
    description: str = "optimising",
) -> Dict[str, object]:
    """The one optimisation-loop driver: call ``step()`` repeatedly and keep its history.

    The chapters write their ``step`` out (the lesson is the ``GradientTape``);
    this loop around it (history, timing, progress, early stop) is shared by the
    notebooks and by :func:`register_ddf`.

    Parameters
    ----------
    step : callable
        ``step()`` does one update and returns a scalar loss or a tuple of scalars
        (tensors or floats), one per entry of ``names``.
    iterations : int
        Maximum number of calls (> 0).
    names : sequence of str
        Names of the values ``step`` returns, e.g. ``("total", "image", "deform")``.
    callback : callable, optional
        ``callback(index, values)`` after each step, with ``values`` a dict of
        floats; returning ``True`` stops the loop (a convergence test).
    progress : bool
        Show a progress bar with the current loss (:mod:`tutorial_utils.progress`).
    description : str
        The progress bar's label.

    Returns
    -------
    dict with
        ``history``: dict name -> list of floats, one per step taken;
        ``iterations``: steps taken;
        ``seconds``: wall time of all steps, compilation (the first call) included;
        ``step_seconds``: mean time per step after the first, in seconds.

    Examples
    --------
    >>> values = iter(range(10, 0, -1))
    >>> result = run_steps(lambda: next(values), 10, progress=False,
    ...                    callback=lambda i, v: v["total"] <= 7)
    >>> result["iterations"], result["history"]["total"]
    (4, [10.0, 9.0, 8.0, 7.0])
    """
    import math
    import time

    from .progress import progress_bar

    if int(iterations) <= 0:
        raise ValueError(f"`iterations` is {iterations}; it needs to be a positive number of steps.")
    names = tuple(names)
    history: Dict[str, List[float]] = {name: [] for name in names}
    bar = progress_bar(total=int(iterations), description=description, disable=not progress)
    start = time.perf_counter()
    after_first = start
    taken = 0
    try:
        for index in range(int(iterations)):
            out = step()
            out = out if isinstance(out, (tuple, list)) else (out,)
            if len(out) != len(names):
                raise ValueError(f"`step` returned {len(out)} values but `names` has {len(names)}: {names}.")
            values = {name: float(value) for name, value in zip(names, out)}
            if not all(math.isfinite(value) for value in values.values()):
                raise FloatingPointError(
                    f"step {index} returned non-finite values {values}. Inside a compiled step "
                    "a loss whose inputs are outside its value range (MI's [0, 1] intensities, "
                    "[0, 1] labels) gives NaN instead of raising: call the loss once outside "
                    "the step to see the message, or rescale the images to [0, 1]; otherwise "
                    "lower the learning rate."
                )
            for name in names:
                history[name].append(values[name])
            taken = index + 1
            if index == 0:
                after_first = time.perf_counter()
            bar.update(1)
            if index % 10 == 0:
                bar.set_postfix(loss=values[names[0]])
            if callback is not None and callback(index, values):
                break
    finally:
        bar.set_postfix(loss=history[names[0]][-1]) if taken else None
        bar.close()
    end = time.perf_counter()
    step_seconds = (end - after_first) / (taken - 1) if taken > 1 else float("nan")
    return {"history": history, "iterations": taken, "seconds": end - start, "step_seconds": step_seconds}


def register_ddf(
    *,
    fixed,
    moving,
    iterations: int,
    progress: bool = True,
    description: str = "registering",
    **step_options,
) -> Dict[str, object]:
    """Run :func:`make_ddf_step` for ``iterations`` steps and collect the history.

    Parameters
    ----------
    fixed, moving : tensor ``(1, d1, d2, d3)``
    iterations : int
    progress : bool
        Show a progress bar with the current loss.
    **step_options
        Passed to :func:`make_ddf_step` (learning rate, losses, weight, velocity, seed).

    Returns
    -------
    dict with
        ``ddf``: ndarray ``(1, d1, d2, d3, 3)``, the final displacement in voxels;
        ``history``: dict of lists ``total``, ``image``, ``deform`` (one value per step);
        ``seconds``: wall time of the loop, compilation included;
        ``step_seconds``: time per step after the first (compiled) one.
    """
    step, _, get_ddf = make_ddf_step(fixed=fixed, moving=moving, **step_options)
    result = run_steps(step, iterations, names=("total", "image", "deform"),
                       progress=progress, description=description)
    return {"ddf": get_ddf().numpy(), **result}


# --------------------------------------------------------------------------
# multi-resolution: image pyramids and field upsampling (nonrigid section)
# --------------------------------------------------------------------------
__all__ += ["gaussian_pyramid", "upsample_field"]


def _level_factors(downscale, levels: int):
    """Per-axis downscale factor between consecutive levels, checked: a tuple of 3 floats."""
    factors = (downscale,) * 3 if isinstance(downscale, (int, float)) else tuple(downscale)
    if len(factors) != 3 or any(float(f) < 1 for f in factors):
        raise ValueError(
            f"`downscale` is {downscale!r}; it needs one factor >= 1, or three (d1, d2, d3)."
        )
    if int(levels) < 1:
        raise ValueError(f"`levels` is {levels}; it needs to be at least 1 (1 = no pyramid).")
    return tuple(float(f) for f in factors)


def gaussian_pyramid(volume, levels: int, downscale=2.0) -> List["np.ndarray"]:
    """Gaussian image pyramid, coarsest level first.

    Each level is the previous one smoothed with a Gaussian of standard
    deviation ``2 f / 6`` voxels along each axis whose factor ``f`` is above 1,
    then resized (linear interpolation, pixel centres aligned) to
    ``ceil(size / f)`` voxels: the recipe of
    :func:`skimage.transform.pyramid_gaussian` (mode ``"reflect"``), with a
    factor per axis, so that thick-slice volumes can be downsampled in-plane
    only, e.g. ``downscale=(1, 2, 2)``.

    Parameters
    ----------
    volume : array-like ``(d1, d2, d3)`` or ``(batch, d1, d2, d3)``
        Smoothing and resizing act on the last three (spatial) axes.
    levels : int
        Number of levels, >= 1 (1 returns the volume itself).
    downscale : float or sequence of 3 floats
        Size ratio between consecutive levels along (d1, d2, d3), each >= 1.

    Returns
    -------
    list of ndarray, float32
        ``levels`` volumes, coarsest first; the last is ``volume`` unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> pyramid = gaussian_pyramid(np.zeros((1, 32, 128, 128)), 3, downscale=(1, 2, 2))
    >>> [p.shape for p in pyramid]
    [(1, 32, 32, 32), (1, 32, 64, 64), (1, 32, 128, 128)]
    """
    import numpy as np
    from scipy import ndimage
    from skimage.transform import resize

    factors = _level_factors(downscale, levels)
    array = np.asarray(volume, dtype=np.float32)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"`volume` has shape {array.shape}; it needs (d1, d2, d3) or (batch, d1, d2, d3)."
        )
    lead = array.ndim - 3
    pyramid = [array]
    for _ in range(int(levels) - 1):
        current = pyramid[0].astype(np.float64)
        sigma = [0.0] * lead + [2.0 * f / 6.0 if f > 1 else 0.0 for f in factors]
        smoothed = ndimage.gaussian_filter(current, sigma, mode="reflect", truncate=4.0)
        shape = current.shape[:lead] + tuple(
            int(np.ceil(size / f)) for size, f in zip(current.shape[lead:], factors)
        )
        coarse = resize(smoothed, shape, order=1, mode="reflect", anti_aliasing=False)
        pyramid.insert(0, coarse.astype(np.float32))
    return pyramid


def upsample_field(field, size: Sequence[int]) -> "np.ndarray":
    """Bring a displacement (or velocity) field from a coarse grid to a finer one.

    With pixel centres aligned (the convention of :func:`gaussian_pyramid` and
    :func:`skimage.transform.resize`), fine voxel ``p`` sits at coarse
    coordinate ``q = (p + 0.5) / r - 0.5`` with ``r = fine size / coarse size``
    per axis, and the same transform expressed in fine voxels has the
    displacement ``u_fine(p) = r * u_coarse(q)``: the field is interpolated
    linearly (extrapolated linearly beyond the outer voxel centres) and each
    component is scaled by its axis's size ratio. An affine field stays exactly
    the corresponding affine field.

    Parameters
    ----------
    field : array-like ``(batch, c1, c2, c3, 3)``
        Displacements (or velocities) in coarse voxels.
    size : sequence of 3 int
        ``(f1, f2, f3)``, the fine grid's size (each >= the coarse size).

    Returns
    -------
    ndarray ``(batch, f1, f2, f3, 3)`` float32, in fine voxels.
    """
    import numpy as np
    from scipy import ndimage

    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 5 or field.shape[-1] != 3:
        raise ValueError(f"`field` has shape {field.shape}; it needs (batch, c1, c2, c3, 3).")
    size = tuple(int(s) for s in size)
    if len(size) != 3 or any(f < c for f, c in zip(size, field.shape[1:4])):
        raise ValueError(
            f"`size` is {size}; it needs three sizes, each at least the field's {field.shape[1:4]}."
        )
    ratio = np.array(size, np.float64) / np.array(field.shape[1:4], np.float64)
    axes = [(np.arange(s) + 0.5) / r - 0.5 + 1.0 for s, r in zip(size, ratio)]  # +1: padding
    coordinates = np.stack(np.meshgrid(*axes, indexing="ij"))
    padding = ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0))
    padded = np.pad(field, padding, mode="reflect", reflect_type="odd")  # linear extrapolation
    out = np.empty((field.shape[0],) + size + (3,), np.float64)
    for b in range(field.shape[0]):
        for c in range(3):
            sampled = ndimage.map_coordinates(padded[b, ..., c], coordinates, order=1)
            out[b, ..., c] = ratio[c] * sampled
    return out.astype(np.float32)


# --------------------------------------------------------------------------
# multi-resolution nonrigid registration (nonrigid section)
# --------------------------------------------------------------------------
__all__ += ["register_nonrigid"]


def _affine_ddf_on_level(theta, size, level_size) -> "np.ndarray":
    """The DDF of ``theta`` (an affine in full-resolution voxels, ``warp_grid``'s
    convention) expressed on a pyramid level's grid, in that level's voxels.

    A level voxel ``q`` sits at full-resolution ``p = (q + 0.5) r - 0.5`` (pixel
    centres aligned, ``r = size / level_size``); it is sent to ``[p, 1] theta``,
    which is level coordinate ``([p, 1] theta + 0.5) / r - 0.5``. Exact.
    """
    import numpy as np

    theta = np.asarray(theta, np.float64).reshape(4, 3)
    ratio = np.asarray(size, np.float64) / np.asarray(level_size, np.float64)
    axes = [np.arange(s, dtype=np.float64) for s in level_size]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    full = (grid + 0.5) * ratio - 0.5
    sent = full @ theta[:3] + theta[3]
    return ((sent + 0.5) / ratio - 0.5 - grid)[None].astype(np.float32)


def _check_schedule(fixed, moving, initial_theta, levels, iterations):
    import numpy as np

    check_rank(fixed, "fixed", [4], "(1, d1, d2, d3)")
    check_same_shape(fixed, moving, "fixed", "moving")
    if fixed.shape[0] != 1:
        raise ValueError(f"`fixed` has shape {tuple(fixed.shape)}; one pair at a time (batch 1).")
    iterations = tuple(int(i) for i in iterations)
    if len(iterations) != int(levels) or min(iterations) < 0 or iterations[0] < 1:
        raise ValueError(
            f"`iterations` is {iterations}; it needs one count per level ({levels}), coarsest "
            "first, the coarsest positive (0 at a finer level: the field is only upsampled)."
        )
    if initial_theta is not None and np.asarray(initial_theta).size != 12:
        raise ValueError(
            f"`initial_theta` has shape {np.shape(initial_theta)}; it needs (1, 4, 3) "
            "(warp_grid's convention, full-resolution voxels)."
        )
    return iterations


def register_nonrigid(
    *,
    fixed,
    moving,
    initial_theta=None,
    levels: int = 3,
    downscale=(1, 2, 2),
    iterations: Sequence[int] = (300, 200, 100),
    learning_rate: float = 0.1,
    image_loss: str = "lncc",
    deform_loss: str = "bending",
    deform_weight: float = 5.0,
    include_border: bool = True,
    velocity: bool = False,
    fold_weight: float = 10.0,
    seed: int = 0,
    progress: bool = True,
) -> Dict[str, object]:
    """Multi-resolution nonrigid registration, optionally on top of an affine.

    Coarse to fine over a :func:`gaussian_pyramid` of both images: at each
    level, a DDF (or velocity field) is optimised by :func:`make_ddf_step` for
    that level's iterations (driven by :func:`run_steps`), the moving image
    being warped by ``affine + field``; the result is brought to the next level
    by :func:`upsample_field` and refined there. Coarse levels move the
    prostate-sized structures cheaply (16 times fewer voxels for
    ``downscale=(1, 2, 2)`` two levels down); the full level only adds detail.

    Parameters
    ----------
    fixed, moving : array-like ``(1, d1, d2, d3)``
        Images, ideally rescaled to [0, 1]. Keyword-only, fixed first.
    initial_theta : array-like ``(1, 4, 3)``, optional
        An affine (``warp_grid``'s convention, full-resolution voxels, fixed ->
        moving), e.g. from an affine registration; kept fixed and included in
        the returned DDF. ``None``: identity.
    levels : int
        Pyramid levels (1 = the full resolution only).
    downscale : float or sequence of 3 floats
        Size ratio between levels along (d1, d2, d3); ``(1, 2, 2)`` keeps the
        thick slices.
    iterations : sequence of int
        Adam steps per level, coarsest first; 0 at a finer level only upsamples
        the field there (e.g. to skip the costly full resolution).
    learning_rate, image_loss, deform_loss, deform_weight, velocity, fold_weight
        As in :func:`make_ddf_step`, the same at every level (the penalty is in
        each level's voxels). The defaults (bending 5 at every voxel, folding
        hinge 10) are chapter 4's measured recipe: Dice 0.809, no folding.
    include_border : bool
        Penalise the deformation at the border too (default; see
        :func:`~tutorial_utils.losses.bending_energy`).
    seed : int
        Seed of the coarsest level's initial field.
    progress : bool
        Show a progress bar per level.

    Returns
    -------
    dict with
        ``ddf``: ndarray ``(1, d1, d2, d3, 3)``, voxels on the fixed grid,
        affine included (warp the moving image with it);
        ``history``: dict of lists ``total``, ``image``, ``deform`` and
        ``level`` (0 = coarsest), one entry per step;
        ``seconds``: wall time of the whole call, pyramid and XLA compilation
        included; ``level_seconds``: list, per level.

    Raises
    ------
    ValueError
        For images that are not ``(1, d1, d2, d3)`` pairs of one shape, an
        ``iterations`` without one positive count per level, or a wrong theta.
    """
    import time

    import numpy as np

    start = time.perf_counter()
    iterations = _check_schedule(fixed, moving, initial_theta, levels, iterations)
    size = tuple(int(s) for s in fixed.shape[1:4])
    fixed_levels = gaussian_pyramid(fixed, levels, downscale)
    moving_levels = gaussian_pyramid(moving, levels, downscale)
    history: Dict[str, List[float]] = {"total": [], "image": [], "deform": [], "level": []}
    level_seconds, field = [], None
    for level, steps in enumerate(iterations):
        level_size = fixed_levels[level].shape[1:4]
        if field is not None:
            field = upsample_field(field, level_size)
        if steps == 0:
            level_seconds.append(0.0)
            continue
        step, variable, _ = make_ddf_step(
            fixed=fixed_levels[level], moving=moving_levels[level],
            learning_rate=learning_rate, image_loss=image_loss, deform_loss=deform_loss,
            deform_weight=deform_weight, velocity=velocity, seed=seed, include_border=include_border,
            initial_field=field, fold_weight=fold_weight,
            base_ddf=None if initial_theta is None else _affine_ddf_on_level(
                initial_theta, size, level_size))
        result = run_steps(step, steps, names=("total", "image", "deform"), progress=progress,
                           description=f"level {level + 1}/{levels} {level_size}")
        for name in ("total", "image", "deform"):
            history[name] += result["history"][name]
        history["level"] += [level] * result["iterations"]
        level_seconds.append(result["seconds"])
        field = variable.numpy()
    ddf = integrate_velocity(field).numpy() if velocity else field
    if initial_theta is not None:
        ddf = ddf + _affine_ddf_on_level(initial_theta, size, size)
    return {"ddf": ddf.astype(np.float32), "history": history,
            "seconds": time.perf_counter() - start, "level_seconds": level_seconds}
