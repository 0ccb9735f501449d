"""Nonrigid registration: the dense-field Adam step and the multi-resolution recipe.

:func:`make_ddf_step` is the chapters' nonrigid step packaged (a DDF or a
stationary velocity field, image loss plus deformation loss, optionally an
affine base and a folding penalty); :func:`register_nonrigid` runs it coarse
to fine over a :func:`~tutorial_utils.register.gaussian_pyramid` through
:func:`~tutorial_utils.register.coarse_to_fine`.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import time
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .._checks import as_float32 as _as_float32
from .._checks import check_rank, check_same_shape
from .._tf import tf
from ..losses import LOSS_NAMES, MIN_DEFORMATION_SIZE, dissimilarity_fn, folding_penalty, lncc, local_displacement_energy, window_moments
from ..results import RegistrationResult
from ..warp import integrate_velocity, warp
from .loop import AdamVariables, LevelRun, adam_update, batched_pair, coarse_to_fine, run_steps
from .pyramid import gaussian_pyramid, pyramid_sizes, upsample_field

__all__ = ["make_ddf_step", "register_nonrigid", "FOLD_THRESHOLD"]

_NAMES = ("total", "image", "deform")

#: The registration steps' folding-penalty margin ``tau`` (:func:`folding_penalty`'s
#: own default is 0.1). The penalty acts on each level's field, but the result is
#: judged at full resolution after upsampling, which moves the one-sided
#: determinants: on chapter 4's pair the margin 0.1 left the smallest one at
#: +0.02, and a change of rounding (the same field maths, another summation
#: order) turned it into -0.40 at 4 voxels; 0.3 kept it at +0.09 to +0.21 over
#: three roundings and two seeds, with Dice 0.818-0.824 (README, benchmarks).
FOLD_THRESHOLD = 0.3


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
    fold_threshold: float = FOLD_THRESHOLD,
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
    fold_threshold : float in [0, 1)
        The penalty's margin ``tau``: one-sided Jacobian determinants below it
        are pushed up (default :data:`FOLD_THRESHOLD`, 0.3).

    The update is Adam (:func:`~tutorial_utils.register.adam_update`, Keras'
    arithmetic) in one compiled function shared by every call with the same
    settings and shapes (see ``_step_function``): a second registration of the
    same size compiles nothing.

    Raises
    ------
    ValueError
        For an ``image_loss`` that is not an image loss (a label loss needs
        labels), an unknown ``deform_loss``, a learning rate <= 0, a negative
        or non-finite weight, or an initial or base field that is not finite
        on the fixed grid.

    Returns
    -------
    step : callable
        ``step()`` -> ``(total, image_term, deform_term)`` after one update.
    field : tf.Variable ``(1, d1, d2, d3, 3)``
        The DDF (or velocity field) being optimised, in voxels.
    get_ddf : callable
        ``get_ddf()`` -> the current DDF ``(1, d1, d2, d3, 3)`` (without ``base_ddf``).
    """
    _check_settings(image_loss, deform_loss, learning_rate, deform_weight, fold_weight, fold_threshold)
    fixed, moving = batched_pair(fixed, moving)
    size = tuple(fixed.shape[1:4])
    if initial_field is None:
        initial = tf.random.stateless_normal(
            (1,) + size + (3,), seed=(0, 0 if seed is None else int(seed)), stddev=init_std
        )
    else:
        initial = _field_on(initial_field, size, "initial_field")
    # no base: zeros, so that a registration without one and a refinement of a given
    # field (instance optimisation) share one compiled step per shape
    base = tf.zeros((1,) + size + (3,)) if base_ddf is None else _field_on(base_ddf, size, "base_ddf")
    field = tf.Variable(initial, name="velocity" if velocity else "ddf")
    adam = AdamVariables.of(field)
    update = _step_function(image_loss, deform_loss, bool(include_border), bool(velocity),
                            bool(fold_weight), bool(jit_compile))
    # LNCC's fixed-image window moments: computed once here, not at every step
    moments = window_moments(fixed) if image_loss == "lncc" else ()
    weights = tf.constant([deform_weight, fold_weight, learning_rate, fold_threshold], tf.float32)

    def step():
        return update(field, adam.m, adam.v, adam.t, fixed, moving, base, moments, weights)

    def to_ddf():
        return integrate_velocity(field) if velocity else tf.identity(field)

    return step, field, to_ddf


@functools.lru_cache(maxsize=32)
def _step_function(image_loss, deform_loss, include_border, velocity, with_folding, jit_compile):
    """The compiled step of :func:`make_ddf_step` for these settings.

    Everything that changes between calls (the field and Adam's state, the
    images, the base, the weights and the learning rate) is an argument, so one
    compiled function serves every pyramid level, every call and every pair of
    the same shapes in a process (TensorFlow keeps one trace and one XLA
    executable per shape): chapter 5 registers its test pairs, and chapter 4 runs
    its sweep, at the cost of one compilation per shape. Cached by settings
    (a bounded memo of functions, no state a caller can see).
    """

    @tf.function(jit_compile=jit_compile, autograph=False)
    def update(field, m, v, t, fixed, moving, base, moments, weights):
        deform_weight, fold_weight, learning_rate, fold_threshold = (weights[i] for i in range(4))
        with tf.GradientTape() as tape:
            ddf = integrate_velocity(field) if velocity else tf.identity(field)
            whole = base + ddf
            warped = warp(moving, whole)
            if image_loss == "lncc":
                image_term = tf.reduce_mean(1.0 - lncc(fixed, warped, fixed_moments=moments))
            else:
                image_term = dissimilarity_fn(fixed, warped, image_loss)
            deform_term = local_displacement_energy(ddf, deform_loss, include_border=include_border)
            loss = image_term + deform_weight * deform_term
            if with_folding:
                loss += fold_weight * tf.reduce_mean(folding_penalty(whole, fold_threshold))
        adam_update(field, tape.gradient(loss, field), m, v, t, learning_rate)
        return loss, image_term, deform_term

    return update


def _field_on(field, size, name):
    """``field`` as a float32 ``(1, *size, 3)`` tensor of finite values, or a ValueError naming ``name``."""
    field = _as_float32(field, name)
    if tuple(field.shape) != (1,) + tuple(size) + (3,):
        raise ValueError(
            f"`{name}` has shape {tuple(field.shape)}; it needs (1, {', '.join(map(str, size))}, 3),"
            " the fixed image's grid."
        )
    if not bool(tf.reduce_all(tf.math.is_finite(field))):
        raise ValueError(f"`{name}` has NaN or infinite values; a displacement needs finite voxels.")
    return field


_DEFORM_LOSSES = tuple(name for name in LOSS_NAMES["deformation"] if name != "folding")


def _check_settings(image_loss, deform_loss, learning_rate, deform_weight, fold_weight, fold_threshold):
    """ValueErrors for a loss of the wrong kind or a step or weight that cannot be meant."""
    if image_loss not in LOSS_NAMES["image"]:
        raise ValueError(
            f"`image_loss` is {image_loss!r}; registering two images needs an image loss, one of "
            f"{LOSS_NAMES['image']} (label losses such as 'dice' need labels: chapter 5's training)."
        )
    if deform_loss not in _DEFORM_LOSSES:
        raise ValueError(
            f"`deform_loss` is {deform_loss!r}; it needs one of {_DEFORM_LOSSES} (the folding "
            "penalty has its own weight, `fold_weight`)."
        )
    for name, value in (("learning_rate", learning_rate), ("deform_weight", deform_weight),
                        ("fold_weight", fold_weight), ("fold_threshold", fold_threshold)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"`{name}` is {value!r} ({type(value).__name__}); it needs a number.")
    for name, value, least in (("learning_rate", learning_rate, "> 0"), ("deform_weight", deform_weight, ">= 0"),
                               ("fold_weight", fold_weight, ">= 0")):
        value = float(value)
        if not np.isfinite(value) or value < 0 or (least == "> 0" and value == 0):
            raise ValueError(f"`{name}` is {value}; it needs a finite value {least}.")
    if not 0 <= float(fold_threshold) < 1:
        raise ValueError(
            f"`fold_threshold` is {fold_threshold}; the folding penalty's margin needs 0 <= it < 1 "
            "(a Jacobian determinant of 1 is no local change of volume)."
        )




def _affine_ddf_on_level(theta, size, level_size) -> "np.ndarray":
    """The DDF of ``theta`` (an affine in full-resolution voxels, ``warp_grid``'s
    convention) expressed on a pyramid level's grid, in that level's voxels.

    A level voxel ``q`` sits at full-resolution ``p = (q + 0.5) r - 0.5`` (pixel
    centres aligned, ``r = size / level_size``); it is sent to ``[p, 1] theta``,
    which is level coordinate ``([p, 1] theta + 0.5) / r - 0.5``. Exact.
    """
    theta = np.asarray(theta, np.float64).reshape(4, 3)
    ratio = np.asarray(size, np.float64) / np.asarray(level_size, np.float64)
    axes = [np.arange(s, dtype=np.float64) for s in level_size]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    full = (grid + 0.5) * ratio - 0.5
    sent = full @ theta[:3] + theta[3]
    return ((sent + 0.5) / ratio - 0.5 - grid)[None].astype(np.float32)


def _ddf_on_level(ddf, level_size) -> "np.ndarray":
    """A full-resolution DDF ``(1, d1, d2, d3, 3)`` (voxels) expressed on a pyramid
    level's grid, in that level's voxels: the analogue of :func:`_affine_ddf_on_level`.

    A level voxel ``q`` sits at full-resolution ``p = (q + 0.5) r - 0.5`` (pixel
    centres aligned, ``r = size / level_size``); the field is sampled there
    (trilinear, float64; ``p`` lies inside the grid for ``r >= 1``) and each
    component divided by its axis's ratio ``r``. Exact for an affine field.
    """
    from scipy import ndimage

    ddf = np.asarray(ddf, np.float64)
    size = np.asarray(ddf.shape[1:4], np.float64)
    ratio = size / np.asarray(level_size, np.float64)
    if np.all(ratio == 1):
        return ddf.astype(np.float32)
    axes = [(np.arange(s, dtype=np.float64) + 0.5) * r - 0.5 for s, r in zip(level_size, ratio)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"))
    out = np.stack([ndimage.map_coordinates(ddf[0, ..., c], points, order=1, mode="nearest") / ratio[c]
                    for c in range(3)], axis=-1)
    return out[None].astype(np.float32)


def _check_schedule(fixed, moving, initial_theta, levels, downscale, iterations, initial_ddf=None):
    """The checked ``iterations`` (a tuple of int), or a ValueError saying what to change."""
    check_rank(fixed, "fixed", [4], "(1, d1, d2, d3)")
    check_same_shape(fixed, moving, "fixed", "moving")
    if fixed.shape[0] != 1:
        raise ValueError(f"`fixed` has shape {tuple(fixed.shape)}; one pair at a time (batch 1).")
    sizes = pyramid_sizes(fixed.shape[1:4], levels, downscale)  # checks `levels` and `downscale` first
    counts = np.asarray(iterations, dtype=object)
    if (counts.ndim != 1 or counts.size != int(levels)
            or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in counts)
            or min(counts) < 0 or counts[0] < 1):
        raise ValueError(
            f"`iterations` is {iterations!r}; it needs a sequence of whole numbers, one count per "
            f"level ({levels}), coarsest first, the coarsest positive (0 at a finer level: the field "
            "is only upsampled), e.g. (300, 300, 0)."
        )
    iterations = tuple(int(i) for i in counts)
    if initial_theta is not None:
        theta = np.asarray(initial_theta, dtype=np.float64)
        if theta.size != 12 or not np.all(np.isfinite(theta)):
            raise ValueError(
                f"`initial_theta` has shape {np.shape(initial_theta)}"
                f"{'' if theta.size != 12 else ' and NaN or infinite values'}; it needs (1, 4, 3) finite "
                "values (warp_grid's convention, full-resolution voxels)."
            )
    if initial_ddf is not None:
        _field_on(initial_ddf, tuple(fixed.shape[1:4]), "initial_ddf")
    for level, (size, count) in enumerate(zip(sizes, iterations)):
        if count and min(size) < MIN_DEFORMATION_SIZE:
            raise ValueError(
                f"level {level + 1} of {levels} has {size} voxels (`levels`={levels}, `downscale`="
                f"{downscale!r} on an image of {tuple(fixed.shape[1:4])}), but the deformation loss "
                f"needs at least {MIN_DEFORMATION_SIZE} per axis: use fewer levels or a smaller "
                "downscale along that axis (e.g. 1 along thick slices)."
            )
    return iterations


def register_nonrigid(
    *,
    fixed,
    moving,
    initial_theta=None,
    initial_ddf=None,
    levels: int = 3,
    downscale=(1, 2, 2),
    iterations: Sequence[int] = (300, 300, 0),
    learning_rate: float = 0.1,
    image_loss: str = "lncc",
    deform_loss: str = "bending",
    deform_weight: float = 2.5,
    include_border: bool = True,
    velocity: bool = False,
    fold_weight: float = 30.0,
    fold_threshold: float = FOLD_THRESHOLD,
    seed: int = 0,
    progress: bool = True,
    jit_compile: bool = True,
) -> RegistrationResult:
    """Multi-resolution nonrigid registration, optionally on top of an affine.

    Coarse to fine (:func:`~tutorial_utils.register.coarse_to_fine`) over a
    :func:`~tutorial_utils.register.gaussian_pyramid` of both images: at each
    level, a DDF (or velocity field) is optimised by :func:`make_ddf_step` for
    exactly that level's ``iterations`` (driven by
    :func:`~tutorial_utils.register.run_steps`), the moving image being warped
    by ``affine + field``; the result is brought to the next level by
    :func:`~tutorial_utils.register.upsample_field` and refined there. Coarse
    levels move the prostate-sized structures cheaply (16 times fewer voxels
    for ``downscale=(1, 2, 2)`` two levels down); the full level only adds detail.

    Parameters
    ----------
    fixed, moving : array-like ``(1, d1, d2, d3)``
        Images, ideally rescaled to [0, 1]. Keyword-only, fixed first.
    initial_theta : array-like ``(1, 4, 3)``, optional
        An affine (``warp_grid``'s convention, full-resolution voxels, fixed ->
        moving), e.g. from an affine registration; kept fixed and included in
        the returned DDF. ``None``: identity.
    initial_ddf : array-like ``(1, d1, d2, d3, 3)``, optional
        A DDF on the fixed grid (voxels, fixed -> moving), e.g. a network's
        prediction: refining it is *instance optimisation*. Kept fixed, like
        ``initial_theta``, and added to the optimised field on every level
        (expressed in the level's voxels: sampled at the level's voxel centres
        and divided by the axis's size ratio, exact for an affine field); the
        optimised field then starts at zero. With ``initial_theta`` too, the
        base is their sum. The folding penalty applies to the whole field, base
        included; the deformation loss to the optimised part only.
    levels : int
        Pyramid levels (1 = the full resolution only).
    downscale : float or sequence of 3 floats
        Size ratio between levels along (d1, d2, d3); ``(1, 2, 2)`` keeps the
        thick slices.
    iterations : sequence of int
        Adam steps per level, coarsest first; 0 at a finer level only upsamples
        the field there. The default skips the full resolution: on chapter 4's
        pair, the earlier ``(300, 200, 100)`` (bending 5, folding 10) spent half
        its time on the 100 full-resolution steps (each costs about 4 times a
        middle-level step) and folded 0.04 % of the voxels, for Dice 0.8156;
        the defaults reach 0.817 with no folding voxel (README, benchmarks).
    learning_rate, image_loss, deform_loss, deform_weight, velocity, fold_weight, fold_threshold
        As in :func:`make_ddf_step`, the same at every level (the penalty is in
        each level's voxels). The defaults (bending 2.5 at every voxel, folding
        hinge 30 with margin 0.3) are chapter 4's recipe.
    include_border : bool
        Penalise the deformation at the border too (default; see
        :func:`~tutorial_utils.losses.bending_energy`).
    seed : int
        Seed of the coarsest level's initial field.
    progress : bool
        Show a progress bar per level.
    jit_compile : bool
        Compile each level's step with XLA (default): faster per step, but the
        compilation costs seconds per shape, more than a few tens of steps save
        (e.g. a short instance optimisation on a CPU). The compiled step is
        shared by every call with the same shapes and settings in a process, and
        the finer levels are compiled in a background thread while the coarsest
        level runs (the result is the same as without).

    Returns
    -------
    RegistrationResult
        ``ddf``: ``(1, d1, d2, d3, 3)``, voxels on the fixed grid, the base
        (affine and ``initial_ddf``) included (warp the moving image with it); ``history``: lists ``total``,
        ``image``, ``deform`` and ``level`` (0 = coarsest), one entry per
        iteration run; ``iterations``: ``sum(iterations)``, the steps run;
        ``seconds``: wall time of the whole call (pyramid, compilation and
        upsampling included); ``level_seconds``: per level, everything the
        level did (upsampling, building and compiling its step, its loop);
        ``details["phase_seconds"]``: where the time went, by phase (the
        pyramid; per level, the upsampling, set-up and first step, i.e. tracing
        and XLA compilation unless compiled ahead, then the other steps, or the
        upsampling alone at a level of 0 steps; the base added at the end), so
        that a reader can see what to make faster.

    Raises
    ------
    ValueError
        Before any work, for images that are not ``(1, d1, d2, d3)`` pairs of
        one shape; an ``iterations`` that is not one whole count per level (the
        coarsest positive); a pyramid level with steps but fewer than 5 voxels
        along an axis (it names the level, ``levels`` and ``downscale``); a
        ``theta`` that is not ``(1, 4, 3)`` finite values; an ``initial_ddf``
        not ``(1, d1, d2, d3, 3)`` finite values on the fixed grid; an
        ``image_loss`` that is not an image loss, an unknown ``deform_loss``; a
        learning rate <= 0 or a negative or non-finite weight.
    """
    start = time.perf_counter()
    iterations = _check_schedule(fixed, moving, initial_theta, levels, downscale, iterations, initial_ddf)
    _check_settings(image_loss, deform_loss, learning_rate, deform_weight, fold_weight, fold_threshold)
    size = tuple(int(s) for s in fixed.shape[1:4])
    fixed_levels = gaussian_pyramid(fixed, levels, downscale)
    moving_levels = gaussian_pyramid(moving, levels, downscale)
    phases = {"pyramid": time.perf_counter() - start}

    def base_on(level_size):
        """The fixed base (affine + initial DDF) in the level's voxels, or None."""
        parts = []
        if initial_theta is not None:
            parts.append(_affine_ddf_on_level(initial_theta, size, level_size))
        if initial_ddf is not None:
            parts.append(_ddf_on_level(initial_ddf, level_size))
        return None if not parts else np.sum(parts, axis=0, dtype=np.float32)

    settings = dict(learning_rate=learning_rate, image_loss=image_loss, deform_loss=deform_loss,
                    deform_weight=deform_weight, velocity=velocity, seed=seed, include_border=include_border,
                    fold_weight=fold_weight, fold_threshold=fold_threshold, jit_compile=jit_compile)

    def make_step(level, field):
        return make_ddf_step(fixed=fixed_levels[level], moving=moving_levels[level], initial_field=field,
                             base_ddf=base_on(fixed_levels[level].shape[1:4]), **settings)

    def run_level(level, field):
        level_size = fixed_levels[level].shape[1:4]
        label = f"level {level + 1} {tuple(int(n) for n in level_size)}"
        begin = time.perf_counter()
        if field is not None:
            field = upsample_field(field, level_size)
        elif initial_ddf is not None:  # refine a given field: the optimised part starts at zero
            field = np.zeros((1,) + tuple(level_size) + (3,), np.float32)
        if iterations[level] == 0:
            phases[f"{label}: field upsampled, no steps"] = time.perf_counter() - begin
            return LevelRun(field, {name: [] for name in _NAMES}, 0)
        step, variable, _ = make_step(level, field)
        first = []

        def after_first_step(index, values):
            if index == 0:
                first.append(time.perf_counter())
                if level == 0:
                    compile_finer_levels()

        run = run_steps(step, iterations[level], names=_NAMES, progress=progress,
                        description=f"level {level + 1}/{levels} {level_size}", callback=after_first_step)
        phases[f"{label}: upsampling, set-up and first step (tracing, compilation)"] = first[0] - begin
        phases[f"{label}: {iterations[level] - 1} more steps"] = time.perf_counter() - first[0]
        return LevelRun(variable.numpy(), run["history"], run["iterations"])

    with _compiling_ahead(make_step, fixed_levels, iterations, jit_compile) as compile_finer_levels:
        levels_run = coarse_to_fine(run_level, len(iterations), None, names=_NAMES)
    final = time.perf_counter()
    field = levels_run.state
    ddf = integrate_velocity(field).numpy() if velocity else field
    base = base_on(size)
    if base is not None:
        ddf = ddf + base
    ddf = ddf.astype(np.float32)
    phases["the base added at full resolution"] = time.perf_counter() - final
    return RegistrationResult(
        method="register_nonrigid", ddf=ddf, history=levels_run.history,
        iterations=levels_run.iterations, level_seconds=levels_run.level_seconds,
        seconds=time.perf_counter() - start, details={"phase_seconds": phases},
    )


@contextlib.contextmanager
def _compiling_ahead(make_step, fixed_levels, iterations, jit_compile):
    """Compile the finer levels' steps in a background thread while the coarsest level steps.

    Yields ``compile_finer_levels()``, which the coarsest level calls after its
    own first step: from then on its steps run while a background thread
    compiles each finer level (one throw-away step on zeros of that level's
    shape; the step function is shared by shape, :func:`_step_function`).
    Started any earlier, it would delay the coarsest level: XLA compiles one
    program at a time, so both compilations ran one after the other before the
    first step (measured on chapter 4's pair: 57 s with the two at once, 51 s
    with none ahead). The throw-away step has its own field and Adam state;
    nothing it computes is used, so the result is the same as without. An error
    there is raised again by the level's own first step, in the caller's thread.
    """
    finer = [level for level in range(1, len(iterations)) if iterations[level] > 0]
    if not jit_compile or not finer:
        yield lambda: None
        return

    def warm(level):
        zeros = np.zeros((1,) + tuple(fixed_levels[level].shape[1:4]) + (3,), np.float32)
        make_step(level, zeros)[0]()

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="compile-ahead")

    def compile_finer_levels():
        for level in finer:
            executor.submit(warm, level)

    try:
        yield compile_finer_levels
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
