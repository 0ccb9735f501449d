"""The loop drivers: :func:`run_steps` (one optimisation loop) and :func:`coarse_to_fine` (the levels).

:func:`run_steps` calls a step repeatedly and keeps its history; the chapters
use it around the steps they write out. :func:`coarse_to_fine` runs one level
after another, coarsest first, hands the state from level to level, times each
level and labels the history with the level: :func:`~tutorial_utils.register.register_affine`
and :func:`~tutorial_utils.register.register_nonrigid` share it.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

from .._checks import as_float32 as _as_float32
from .._checks import check_rank, check_same_shape
from .._tf import tf

__all__ = ["run_steps", "coarse_to_fine", "LevelRun", "CoarseToFine", "AdamVariables", "adam_update"]


#: Adam's constants, Keras' defaults (``tf.keras.optimizers.Adam()``).
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7


class AdamVariables(NamedTuple):
    """Adam's state for one variable: first and second moments ``m``, ``v`` (shaped
    like it) and the step count ``t`` (float32 scalar), all ``tf.Variable`` at 0."""

    m: tf.Variable
    v: tf.Variable
    t: tf.Variable

    @classmethod
    def of(cls, variable) -> "AdamVariables":
        zeros = tf.zeros_like(variable)
        return cls(tf.Variable(zeros), tf.Variable(zeros), tf.Variable(0.0))


def adam_update(variable, gradient, m, v, t, learning_rate) -> None:
    """One Adam update of ``variable`` in place (Kingma & Ba, ICLR 2015, Algorithm 1).

    Keras' arithmetic, so that it gives ``tf.keras.optimizers.Adam``'s numbers:
    ``t += 1``; ``m += (g - m)(1 - beta1)``; ``v += (g^2 - v)(1 - beta2)``;
    ``variable -= lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)``
    (:data:`ADAM_BETA_1`, :data:`ADAM_BETA_2`, :data:`ADAM_EPSILON`). Written
    out, rather than a Keras optimiser object, so that a compiled step can take
    the state as arguments and serve every level and call of one shape.
    (:func:`~tutorial_utils.register.make_stochastic_affine_step` keeps its own
    Adam, the paper's form with ``epsilon = 1e-8``, inside its XLA loop.)

    Parameters
    ----------
    variable : tf.Variable
    gradient : tensor shaped like ``variable``
    m, v, t : tf.Variable
        :class:`AdamVariables` of ``variable``.
    learning_rate : float or scalar tensor
    """
    t.assign_add(1.0)
    alpha = learning_rate * tf.sqrt(1.0 - tf.pow(ADAM_BETA_2, t)) / (1.0 - tf.pow(ADAM_BETA_1, t))
    m.assign_add((gradient - m) * (1.0 - ADAM_BETA_1))
    v.assign_add((tf.square(gradient) - v) * (1.0 - ADAM_BETA_2))
    variable.assign_sub(m * alpha / (tf.sqrt(v) + ADAM_EPSILON))


def batched_pair(fixed, moving):
    """``fixed`` and ``moving`` as float32 tensors ``(1, d1, d2, d3)`` of one shape, or a ValueError."""
    check_rank(fixed, "fixed", [4], "(1, d1, d2, d3)")
    check_rank(moving, "moving", [4], "(1, d1, d2, d3)")
    check_same_shape(fixed, moving, "fixed", "moving")
    fixed, moving = _as_float32(fixed, "fixed"), _as_float32(moving, "moving")
    for name, image in (("fixed", fixed), ("moving", moving)):
        if not bool(tf.reduce_all(tf.math.is_finite(image))):
            raise ValueError(f"`{name}` has non-finite values (NaN or inf); an image to register "
                             "needs finite intensities (e.g. replace NaN outside the scan by 0).")
    return fixed, moving


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
    notebooks and by the registration functions of this package.

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
    dict (a plain dict, not a :class:`~tutorial_utils.results.RegistrationResult`:
    a loop has no transform of its own) with
        ``history``: dict name -> list of floats, one per call of ``step``;
        ``iterations``: calls of ``step`` made;
        ``seconds``: wall time of all calls, compilation (the first call) included;
        ``step_seconds``: mean time per call after the first, in seconds (NaN
        after fewer than two calls).

    Raises
    ------
    ValueError
        If ``iterations`` is not positive or ``step`` returns a different
        number of values than ``names``.
    FloatingPointError
        If ``step`` returns a non-finite value.

    Examples
    --------
    >>> values = iter(range(10, 0, -1))
    >>> result = run_steps(lambda: next(values), 10, progress=False,
    ...                    callback=lambda i, v: v["total"] <= 7)
    >>> result["iterations"], result["history"]["total"]
    (4, [10.0, 9.0, 8.0, 7.0])
    """
    from ..progress import progress_bar

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
            values = _step_values(step(), names, index)
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


def _step_values(out, names, index) -> Dict[str, float]:
    """What one step returned, as ``{name: float}``, checked (count, finiteness)."""
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
    return values


class LevelRun(NamedTuple):
    """What one level of :func:`coarse_to_fine` returns.

    ``state``: handed to the next level (e.g. the field so far); ``history``:
    dict name -> list, one entry per recorded step of the level (all lists of
    one length); ``iterations``: optimisation iterations the level ran.
    """

    state: object
    history: Dict[str, List[float]]
    iterations: int


class CoarseToFine(NamedTuple):
    """What :func:`coarse_to_fine` returns.

    ``state``: the finest level's state; ``history``: the levels' histories
    concatenated, with ``"level"`` (0 = coarsest) for each entry;
    ``iterations``: all levels together; ``level_seconds``: wall time of each
    level's ``run_level`` call, coarsest first, in seconds.
    """

    state: object
    history: Dict[str, List[float]]
    iterations: int
    level_seconds: List[float]


def coarse_to_fine(
    run_level: Callable[[int, object], LevelRun],
    levels: int,
    state=None,
    *,
    names: Sequence[str],
) -> CoarseToFine:
    """The one coarse-to-fine driver: run the levels in order, hand the state on, time each.

    Parameters
    ----------
    run_level : callable
        ``run_level(level, state) -> LevelRun`` for ``level`` 0 (coarsest) to
        ``levels - 1``; it receives the previous level's state (``state`` for
        level 0) and runs everything the level needs (resampling the state onto
        the level's grid, compilation, the loop), so the level's time is all of it.
    levels : int
        Number of levels (>= 1).
    state : optional
        The state given to the coarsest level.
    names : sequence of str
        The history entries each level returns (``"level"`` is added).

    Returns
    -------
    CoarseToFine

    Raises
    ------
    ValueError
        If ``levels`` < 1, or a level returns other history names or lists of
        unequal length.

    Examples
    --------
    >>> def run_level(level, total):
    ...     return LevelRun(total + level + 1, {"loss": [1.0 / (level + 1)] * (level + 1)}, level + 1)
    >>> out = coarse_to_fine(run_level, 2, 0, names=("loss",))
    >>> out.state, out.iterations, out.history["level"], len(out.level_seconds)
    (3, 3, [0, 1, 1], 2)
    """
    if int(levels) < 1:
        raise ValueError(f"`levels` is {levels}; it needs to be at least 1.")
    names = tuple(names)
    history: Dict[str, List[float]] = {name: [] for name in names + ("level",)}
    level_seconds: List[float] = []
    iterations = 0
    for level in range(int(levels)):
        start = time.perf_counter()
        state, level_history, taken = run_level(level, state)
        level_seconds.append(time.perf_counter() - start)
        lengths = {len(level_history.get(name, ())) for name in names}
        if set(level_history) != set(names) or len(lengths) != 1:
            raise ValueError(
                f"level {level} returned history {sorted(level_history)} of lengths {sorted(lengths)}; "
                f"it needs {list(names)}, all of one length."
            )
        for name in names:
            history[name].extend(level_history[name])
        history["level"].extend([level] * lengths.pop())
        iterations += int(taken)
    return CoarseToFine(state, history, iterations, level_seconds)

