"""Exercise checks and hints: light, offline, and never a silent pass.

In a chapter, an exercise is a stub cell (``...`` placeholders that raise
``NotImplementedError``) followed, in the instructor edition, by the reference
solution, and then a check cell::

    from tutorial_utils.exercises import check, hint
    check("2.1", my_ssd)     # prints what passed, or raises ExerciseFailed saying what is wrong
    hint("2.1")              # the next hint, one more each call

Checks test the answer on hidden cases computed here, independently of the
notebook. Every check either prints a line starting with "Correct" or raises
:class:`ExerciseFailed` with a plain-words explanation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List

import numpy as np

__all__ = ["check", "hint", "ExerciseFailed", "EXERCISES", "exercise_ids"]


class ExerciseFailed(AssertionError):
    """The answer is not right yet; the message says what is wrong."""


@dataclass
class Exercise:
    title: str
    kind: str  # "coding", "numeric" or "choice"
    level: str  # "warm-up", "core" or "stretch"
    checker: Callable
    hints: List[str] = field(default_factory=list)


EXERCISES: Dict[str, Exercise] = {}
_hints_given: Dict[str, int] = {}


def _exercise(exercise_id, title, kind, level, hints):
    def register(checker):
        EXERCISES[exercise_id] = Exercise(title, kind, level, checker, hints)
        return checker

    return register


def exercise_ids() -> List[str]:
    """All exercise ids, in chapter order."""
    return sorted(EXERCISES, key=lambda key: [int(part) for part in key.split(".")])


def check(exercise_id: str, answer, **context) -> bool:
    """Check an answer; print "Correct ..." or raise :class:`ExerciseFailed`.

    Parameters
    ----------
    exercise_id : str
        E.g. ``"2.1"``; see the exercise's title in the chapter.
    answer
        A function, a number or a letter, as the exercise asks.
    **context
        Values from the notebook that some checks need (named in the exercise).
    """
    if exercise_id not in EXERCISES:
        raise ValueError(f"Unknown exercise {exercise_id!r}; known: {', '.join(exercise_ids())}.")
    exercise = EXERCISES[exercise_id]
    if answer is None or answer is Ellipsis:
        raise ExerciseFailed(f"Exercise {exercise_id}: there is no answer yet; replace the `...` placeholders.")
    try:
        message = exercise.checker(answer, **context)
    except NotImplementedError as error:
        raise ExerciseFailed(f"Exercise {exercise_id}: your code still raises NotImplementedError ({error}). "
                             "Fill in the `...` parts first.") from None
    except ExerciseFailed as error:
        raise ExerciseFailed(f"Exercise {exercise_id} ({exercise.title}): {error}") from None
    except Exception as error:  # the student's code crashed on a hidden case
        raise ExerciseFailed(f"Exercise {exercise_id}: your answer raised {type(error).__name__}: {error}") from None
    print(f"Correct: exercise {exercise_id} ({exercise.title}). {message}")
    return True


def hint(exercise_id: str) -> str:
    """Print (and return) the next hint for an exercise; repeats the last one at the end."""
    if exercise_id not in EXERCISES:
        raise ValueError(f"Unknown exercise {exercise_id!r}; known: {', '.join(exercise_ids())}.")
    hints = EXERCISES[exercise_id].hints
    given = _hints_given.get(exercise_id, 0)
    text = hints[min(given, len(hints) - 1)]
    _hints_given[exercise_id] = given + 1
    print(f"Hint {min(given, len(hints) - 1) + 1}/{len(hints)} for exercise {exercise_id}: {text}")
    return text


# ---------------------------------------------------------------- helpers
def _rng(seed=0):
    return np.random.default_rng(seed)


def _close(got, expected, what, rtol=1e-4, atol=1e-6):
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise ExerciseFailed(f"{what} has shape {got.shape}, but it should have shape {expected.shape}.")
    if not np.allclose(got, expected, rtol=rtol, atol=atol):
        worst = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
        raise ExerciseFailed(f"{what} is wrong: at index {tuple(int(i) for i in worst)} you give "
                             f"{got[worst]:.6g}, the right value is {expected[worst]:.6g}.")


def _choice(answer, correct, explanations):
    letter = str(answer).strip().lower()
    if letter not in explanations:
        raise ExerciseFailed(f"answer with one of the letters {', '.join(sorted(explanations))}, not {answer!r}.")
    if letter != correct:
        raise ExerciseFailed(f"not ({letter}). {explanations[letter]}")
    return explanations[letter]


# ---------------------------------------------------------------- chapter 1
@_exercise("1.1", "a translation as a DDF", "coding", "warm-up", [
    "A translation moves every voxel by the same vector, so every voxel of the DDF holds the same 3 numbers.",
    "Start from np.zeros(shape + (3,)) and set the last axis to the shift.",
    "np.broadcast_to(np.asarray(shift, np.float32), tuple(shape) + (3,)).copy() does it in one line.",
])
def _check_translation(translation_ddf):
    for shape, shift in [((4, 5, 6), (1.0, 0.0, -2.0)), ((3, 3, 3), (0.5, 0.25, 0.0))]:
        ddf = np.asarray(translation_ddf(shape, shift))
        expected = np.broadcast_to(np.asarray(shift, np.float64), tuple(shape) + (3,))
        _close(ddf, expected, f"translation_ddf({shape}, {shift})")
    return "Every voxel moves by the same vector."


@_exercise("1.2", "counting a DDF's parameters", "numeric", "warm-up", [
    "A DDF has one displacement vector per voxel of the fixed image.",
    "Each displacement vector has 3 numbers; the CT has 128 x 128 x 37 voxels.",
])
def _check_parameter_count(answer):
    expected = 128 * 128 * 37 * 3
    if float(answer) == 128 * 128 * 37:
        raise ExerciseFailed("that is the number of voxels; each voxel's displacement has 3 components.")
    if float(answer) == 12:
        raise ExerciseFailed("12 is the affine's count; a DDF has a vector at every voxel.")
    if float(answer) != expected:
        raise ExerciseFailed(f"{answer} is not it. Count the voxels of the fixed image, then the numbers per voxel.")
    return f"{expected:,} numbers, against 12 for an affine."


@_exercise("1.3", "which way does a DDF point?", "choice", "core", [
    "Warping computes warped(x) = moving(x + u(x)) for every voxel x of the fixed grid.",
    "Ask: on which image's grid does x live, and into which image does x + u(x) look?",
])
def _check_direction(answer):
    return _choice(answer, "b", {
        "a": "The DDF is not defined on the moving image's grid: warping loops over fixed voxels.",
        "b": "It lives on the fixed grid and points into the moving image, so every output voxel gets one value.",
        "c": "A DDF is one vector per voxel, not one vector for the image.",
    })


# ---------------------------------------------------------------- chapter 2
@_exercise("2.1", "SSD from its formula", "coding", "warm-up", [
    "SSD is the mean of the squared differences, one number per batch element.",
    "Average over every axis except axis 0 (the batch).",
    "np.mean((fixed - warped) ** 2, axis=tuple(range(1, fixed.ndim)))",
])
def _check_ssd(my_ssd):
    rng = _rng(21)
    for shape in [(1, 4, 5, 6), (3, 4, 4, 4), (2, 3, 4, 5, 2)]:
        true, pred = rng.random(shape), rng.random(shape)
        expected = np.mean((true - pred) ** 2, axis=tuple(range(1, len(shape))))
        _close(my_ssd(true, pred), expected, f"my_ssd on inputs of shape {shape}")
    same = rng.random((2, 3, 3, 3))
    _close(my_ssd(same, same), np.zeros(2), "my_ssd of an image with itself")
    return "One value per batch element, 0 for identical images."


@_exercise("2.2", "binary Dice from its formula", "coding", "core", [
    "Threshold both labels at 0.5 first, then Dice = 2 |A and B| / (|A| + |B|).",
    "np.logical_and gives A and B; .sum() counts voxels.",
    "Two empty labels agree perfectly: return 1.0 when |A| + |B| is 0.",
])
def _check_dice(my_dice):
    rng = _rng(22)
    for _ in range(3):
        a, b = rng.random((6, 7, 8)), rng.random((6, 7, 8))
        overlap = np.logical_and(a > 0.5, b > 0.5).sum()
        expected = 2 * overlap / ((a > 0.5).sum() + (b > 0.5).sum())
        _close(my_dice(a, b), expected, "my_dice on random labels")
    label = (rng.random((5, 5, 5)) > 0.5).astype(float)
    _close(my_dice(label, label), 1.0, "my_dice of a label with itself")
    _close(my_dice(label, 1 - label), 0.0, "my_dice of disjoint labels")
    _close(my_dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 3))), 1.0, "my_dice of two empty labels")
    return "It matches tutorial_utils.metrics.binary_dice on the hidden cases."


@_exercise("2.3", "LNCC's window and its capture range", "choice", "core", [
    "LNCC compares images only inside each window.",
    "If a structure has moved further than the window is wide, can the window 'see' where it went?",
])
def _check_window(answer):
    return _choice(answer, "a", {
        "a": "A wider window sees structures further away, so the loss keeps a slope for larger misalignment "
             "(at the cost of being less local). The cell below the exercise shows it.",
        "b": "Try it: a small window saturates sooner, because it stops seeing where the structure went.",
        "c": "The window size changes how far LNCC can see, so it does change the capture range.",
    })


# ---------------------------------------------------------------- chapter 3
def _apply(theta, points):
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
    return homogeneous @ theta


@_exercise("3.1", "composing two affines", "coding", "core", [
    "In the row-vector convention a point p moves to [p, 1] @ theta, theta being 4 x 3.",
    "Make each theta a 4 x 4 matrix by adding the column (0, 0, 0, 1); then applying a then b is one product.",
    "M = lambda t: np.concatenate([t, [[0], [0], [0], [1]]], axis=1); return (M(a) @ M(b))[:, :3]",
])
def _check_compose(compose):
    from .warp import random_transform_generator

    points = _rng(31).uniform(0, 20, (50, 3))
    for seed in range(3):
        a = random_transform_generator(1, 0.3, seed=seed).numpy()[0]
        b = random_transform_generator(1, 0.3, seed=seed + 10).numpy()[0]
        a[3] += [1.0, -2.0, 0.5]
        got = np.asarray(compose(a, b))
        if got.shape != (4, 3):
            raise ExerciseFailed(f"compose should return a (4, 3) affine, got shape {got.shape}.")
        _close(_apply(got, points), _apply(b, _apply(a, points)), "points moved by compose(a, b)", rtol=1e-4, atol=1e-3)
    return "Applying compose(a, b) equals applying a, then b."


@_exercise("3.2", "inverting an affine", "coding", "stretch", [
    "The inverse undoes the transform: compose(theta, inverse) should be the identity.",
    "Make theta 4 x 4 with the column (0, 0, 0, 1), invert with np.linalg.inv, and keep the first 3 columns.",
])
def _check_invert(invert_affine):
    from .metrics import affine_residual
    from .warp import random_transform_generator

    for seed in range(3):
        theta = random_transform_generator(1, 0.2, seed=seed).numpy()[0]
        theta[3] += [2.0, -1.5, 0.5]  # a translation that the linear part must act on when inverted
        inverse = np.asarray(invert_affine(theta), dtype=np.float32)
        if inverse.shape != (4, 3):
            raise ExerciseFailed(f"invert_affine should return a (4, 3) affine, got shape {inverse.shape}.")
        mean, worst = affine_residual(inverse, theta, (16, 16, 8))
        if worst > 1e-3:
            raise ExerciseFailed(f"applying your inverse and then the transform leaves voxels {worst:.3f} voxels "
                                 "from where they started; it should bring them back exactly.")
    return "The residual of (inverse, then transform) is zero: this is what the optimiser approximates."


@_exercise("3.3", "why SSD does not reach zero", "choice", "core", [
    "Look at the corners of the moving image: what is there that is not in the fixed image?",
])
def _check_floor(answer):
    return _choice(answer, "c", {
        "a": "Adam does converge here: the residual is a fraction of a voxel.",
        "b": "The moving image was made from the fixed one, so the contrast is the same.",
        "c": "Part of the CT was pushed outside the moving image's field of view and replaced by zeros; "
             "no affine can bring it back.",
    })


def _landmark_cases():
    """Hidden cases of exercise 3.4: (theta, fixed landmarks, moving landmarks), all float64.

    ``theta`` is a registration's answer (fixed voxel -> moving voxel); the moving
    landmarks are where the truth puts the fixed ones, so a perfect theta has TRE 0.
    """
    rng = _rng(34)
    cases = []
    for case in range(3):
        truth = np.vstack([np.eye(3) + rng.uniform(-0.2, 0.2, (3, 3)), rng.uniform(-4.0, 4.0, 3)])
        fixed = rng.uniform(0.0, [60.0, 60.0, 30.0], (10, 3))
        moving = _apply(truth, fixed)
        # case 0: a perfect registration; then two that stop short of the truth
        theta = truth if case == 0 else truth + np.vstack([rng.normal(0, 0.02, (3, 3)), rng.normal(0, 1.0, 3)])
        cases.append((theta, fixed, moving))
    return cases


def _landmark_slips(theta, fixed, moving):
    """What the right answers and the common slips give on one case: name -> (n,) distances."""
    inverse = np.linalg.inv(np.concatenate([theta, [[0.0], [0.0], [0.0], [1.0]]], axis=1))[:, :3]
    transposed = np.vstack([theta[:3].T, theta[3]])

    def distance(a, b):
        return np.linalg.norm(a - b, axis=1)

    return {
        "right, forward": distance(_apply(theta, fixed), moving),
        "right, inverse": distance(_apply(inverse, moving), fixed),
        "mistake": distance(_apply(theta, moving), fixed),
        "inverse of fixed": distance(_apply(inverse, fixed), moving),
        "transposed": distance(_apply(transposed, fixed), moving),
        "no transform": distance(fixed, moving),
    }


_LANDMARK_SLIPS = {
    "mistake": "you mapped the MOVING landmarks with theta, the classic mistake. theta maps a fixed point "
               "to the moving image (that is how warp_grid pulls moving intensities onto the fixed grid), "
               "so it can only be applied to fixed points: map the fixed landmarks with theta and compare "
               "with the moving ones, or map the moving landmarks with theta's INVERSE.",
    "inverse of fixed": "you mapped the FIXED landmarks with the inverse of theta; the inverse carries moving "
                        "points to the fixed image, so apply theta itself to the fixed landmarks.",
    "transposed": "your linear part is transposed: in the row-vector convention a point p moves to "
                  "[p, 1] @ theta (p @ theta[:3] + theta[3]), not theta[:3] @ p.",
    "no transform": "these are the distances before registration: theta is never applied.",
}


@_exercise("3.4", "the classic mistake: which landmarks a transform moves", "coding", "core", [
    "theta maps a FIXED voxel to where it lies in the MOVING image (warp_grid reads the moving image "
    "there). Which set of landmarks can you feed it?",
    "Either map the fixed landmarks with theta and compare with the moving landmarks, or map the moving "
    "landmarks with the inverse of theta (affine.invert) and compare with the fixed ones.",
    "np.linalg.norm(affine.transform_points(theta, fixed_points) - moving_points, axis=1)",
])
def _check_landmark_tre(tre):
    for number, (theta, fixed, moving) in enumerate(_landmark_cases()):
        got = np.asarray(tre(fixed.copy(), moving.copy(), theta.copy()), dtype=np.float64)
        expected = _landmark_slips(theta, fixed, moving)
        if got.shape != (len(fixed),):
            raise ExerciseFailed(f"tre should return one distance per landmark, shape ({len(fixed)},); got shape "
                                 f"{got.shape}. Keep the per-landmark distances (the chapter takes their mean).")
        if any(np.allclose(got, expected[right], rtol=1e-4, atol=1e-4)
               for right in ("right, forward", "right, inverse")):
            continue
        for slip, explanation in _LANDMARK_SLIPS.items():
            if np.allclose(got, expected[slip], rtol=1e-4, atol=1e-4):
                raise ExerciseFailed(f"on hidden case {number}, {explanation}")
        _close(got, expected["right, forward"], f"tre(...) on hidden case {number}", atol=1e-4)
    return ("Mapping the fixed landmarks with theta (or the moving ones with its inverse) gives the TRE; "
            "the perfect registration of the first hidden case scores 0.")


# ---------------------------------------------------------------- chapter 4
@_exercise("4.1", "the Jacobian determinant at one voxel", "coding", "warm-up", [
    "The transform is x + u(x); its Jacobian is the identity plus the gradient of u.",
    "np.linalg.det(np.eye(3) + gradient)",
])
def _check_jacobian(jacobian_at):
    rng = _rng(41)
    for _ in range(4):
        gradient = rng.normal(0, 0.5, (3, 3))
        _close(jacobian_at(gradient), np.linalg.det(np.eye(3) + gradient), "jacobian_at(gradient)")
    _close(jacobian_at(np.zeros((3, 3))), 1.0, "jacobian_at of a zero gradient (no deformation)")
    folding = np.diag([-2.0, 0.0, 0.0])
    _close(jacobian_at(folding), -1.0, "jacobian_at of a gradient that flips d1")
    return "det(I + grad u): 1 means no volume change, <= 0 folding."


@_exercise("4.2", "choosing the regularisation weight", "numeric", "stretch", [
    "Use the `sweep` dictionary: weight -> {'dice', 'folding', ...}.",
    "Keep the weights whose folding is below 0.001 (0.1 %) and whose Dice beats `dice_before`; take the smallest.",
])
def _check_weight(answer, sweep, dice_before):
    allowed = [w for w, r in sweep.items() if r["folding"] < 0.001 and r["dice"] > dice_before]
    if not allowed:
        raise ExerciseFailed("no weight in this sweep keeps folding under 0.1 % and improves Dice; "
                             "add a larger weight to the sweep and run it again.")
    best = min(allowed)
    if float(answer) not in sweep:
        raise ExerciseFailed(f"{answer} is not one of the weights in the sweep: {list(sweep)}.")
    row = sweep[float(answer)]
    if row["folding"] >= 0.001:
        raise ExerciseFailed(f"weight {answer} folds {100 * row['folding']:.3f}% of voxels, above 0.1 %.")
    if row["dice"] <= dice_before:
        raise ExerciseFailed(f"weight {answer} does not improve Dice ({row['dice']:.3f} vs {dice_before:.3f}).")
    if float(answer) != best:
        raise ExerciseFailed(f"weight {answer} works, but a smaller one does too: smaller keeps more flexibility.")
    return f"Weight {best}: Dice {sweep[best]['dice']:.3f}, folding {100 * sweep[best]['folding']:.3f}%."


@_exercise("4.3", "why velocity fields fold less", "choice", "core", [
    "Scaling and squaring composes many small displacements.",
])
def _check_velocity(answer):
    return _choice(answer, "b", {
        "a": "The loss is the same LNCC plus bending energy in both runs.",
        "b": "Each of the small steps is too small to fold, and composing non-folding maps cannot fold.",
        "c": "The velocity run uses the same number of iterations.",
    })


# ---------------------------------------------------------------- chapter 5
@_exercise("5.1", "a weakly supervised loss", "coding", "warm-up", [
    "Weak supervision drives the registration by labels only.",
    "training.LossConfig(image_weight=0.0, label_weight=1.0, deform_weight=...)",
])
def _check_weak(config):
    from .training import LossConfig

    if not isinstance(config, LossConfig):
        raise ExerciseFailed(f"return a training.LossConfig, not {type(config).__name__}.")
    if config.image_weight != 0:
        raise ExerciseFailed("weakly supervised training uses no image term: set image_weight to 0.")
    if config.label_weight <= 0:
        raise ExerciseFailed("the label term is what drives weak supervision: give it a positive weight.")
    if config.deform_weight <= 0:
        raise ExerciseFailed("without a deformation term the field may fold freely: keep deform_weight positive.")
    return "Labels drive it, the deformation term keeps it plausible."


@_exercise("5.2", "when training pays off", "numeric", "core", [
    "Each pair registered by the network instead of by optimisation saves (optimisation time - forward time).",
    "Divide the training time by that saving.",
    "With instance optimisation, each pair costs its instance time (forward pass included), so it saves "
    "(optimisation time - instance time).",
])
def _check_payoff(answer, training_seconds, optimisation_seconds, forward_seconds, instance_seconds):
    """``answer``: (pairs for the learned method, pairs for learned + instance optimisation)."""
    training_seconds, optimisation = float(training_seconds), float(optimisation_seconds)
    forward, instance = float(forward_seconds), float(instance_seconds)
    if not (training_seconds > 0 and optimisation > instance >= forward >= 0):
        raise ExerciseFailed(f"with training {training_seconds} s, optimisation {optimisation} s, a forward pass of "
                             f"{forward} s and instance optimisation of {instance} s per pair (forward pass "
                             "included), the network never saves time; check the times.")
    try:
        learned, refined = (float(value) for value in answer)
    except (TypeError, ValueError):
        raise ExerciseFailed(f"give two numbers, (learned, learned + instance optimisation), not {answer!r}.")
    _check_saving(learned, training_seconds, optimisation, forward, instance, "learned")
    _check_saving(refined, training_seconds, optimisation, instance, forward, "learned + instance optimisation")
    return (f"After about {training_seconds / (optimisation - forward):.1f} pairs the network has paid for its "
            f"training; with instance optimisation after {training_seconds / (optimisation - instance):.1f}.")


def _check_saving(value, training_seconds, optimisation, spent, other, name):
    """``value`` must be ``training_seconds / (optimisation - spent)``; name the slip otherwise.

    ``spent`` is what the method spends per pair, ``other`` the other method's per-pair time
    (the forward pass for instance optimisation, whose time includes it; and the reverse).
    """
    expected = training_seconds / (optimisation - spent)  # each pair saves (optimisation - spent) s
    # the 1e-6 tolerance only absorbs floating-point rounding: the common slips below differ by
    # spent / optimisation relative, which is 3e-3 for 15 s against 0.05 s
    if np.isclose(value, expected, rtol=1e-6, atol=0.0):
        return
    slips = [  # (value, explanation): the first that matches is shown
        (training_seconds / optimisation, "you divided by the optimisation time alone; each pair saves "
                                          "the optimisation time MINUS what the method spends per pair."),
        (training_seconds / (optimisation + spent), "you added the method's time per pair; it is still "
                                                     "spent, so subtract it from the time saved per pair."),
        ((optimisation - spent) / training_seconds, "that is the inverse: divide the training time by the "
                                                    "time saved per pair."),
        (training_seconds / spent, "each pair saves the optimisation time minus the method's time per pair, "
                                   "not the method's time itself."),
        (training_seconds / (optimisation - other), "that is the other method's break-even: this one spends "
                                                    f"{spent:.3g} s per pair."),
        (float(np.ceil(expected)), "give the number unrounded, as the exercise asks."),
        (float(np.floor(expected)), "give the number unrounded, as the exercise asks."),
    ]
    if spent > other:  # instance optimisation: its time already includes the forward pass
        slips += [
            (training_seconds / (optimisation - spent - other), "the instance-optimisation time already "
                                                                "includes the forward pass: do not add it again."),
            (training_seconds / (optimisation - (spent - other)), "the forward pass is part of the "
                                                                  "instance-optimisation time: it is spent too."),
        ]
    for slip, explanation in slips:
        if np.isclose(value, slip, rtol=1e-6, atol=0.0):
            raise ExerciseFailed(f"{name}: {value} is not it: {explanation}")
    raise ExerciseFailed(f"{name}: {value} is not it; divide the training time by the time saved per pair.")


@_exercise("5.3", "what a trained network needs at test time", "choice", "core", [
    "Look at the network's inputs.",
])
def _check_test_time(answer):
    return _choice(answer, "a", {
        "a": "Only the two images: labels were used by the loss in training, and the loss is not needed to predict.",
        "b": "The masks are inputs of the loss, not of the network; new pairs need no masks.",
        "c": "The network predicts the DDF; nothing is optimised at test time.",
    })
