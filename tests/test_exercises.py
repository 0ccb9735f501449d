"""Every exercise in the chapters: the check fails on the stub and passes on the reference solution.

The stub and solution cells are read from the notebooks themselves (cells whose
metadata names an exercise), so what is tested is what students get.
"""
from pathlib import Path

import nbformat
import numpy as np
import pytest

from tutorial_utils import affine, exercises, points

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "book" / "chapters").glob("*.ipynb"))
APPENDICES = ("06_your_own_images.ipynb",)  # the book's appendix: no exercises (test_book_structure)


def exercise_cells():
    found = {}
    for path in CHAPTERS:
        for cell in nbformat.read(path, as_version=4).cells:
            ex_id = cell.metadata.get("exercise")
            if ex_id:
                found.setdefault(ex_id, {"chapter": path.name})[cell.metadata["exercise_role"]] = cell
    return found


CELLS = exercise_cells()

# Values from earlier in a chapter that some exercises use, standing in for the notebook's state.
CONTEXT = {
    "4.2": {"sweep": {0.0: {"dice": 0.80, "folding": 0.05}, 1.0: {"dice": 0.79, "folding": 0.0005},
                      10.0: {"dice": 0.76, "folding": 0.0}}, "dice_before": 0.74},
    "5.2": {"training_seconds": 300.0, "optimisation_seconds": 3001 * 0.05, "forward_seconds": 0.02,
            "instance_seconds": 40.0},
}
NOTEBOOK_NAMES = {"5.2": {"training_seconds": 300.0, "classical_seconds": 3001 * 0.05, "forward": 0.02,
                          "instance_seconds": 40.0}}


def namespace(ex_id):
    from tutorial_utils import training

    names = {"np": np, "training": training, "affine": affine, "points": points, "check": exercises.check,
             "hint": exercises.hint}
    names.update(CONTEXT.get(ex_id, {}))
    names.update(NOTEBOOK_NAMES.get(ex_id, {}))
    return names


def test_every_chapter_has_three_exercises_and_every_exercise_is_in_a_chapter():
    per_chapter = {}
    for ex_id, cells in CELLS.items():
        per_chapter.setdefault(cells["chapter"], []).append(ex_id)
    assert len(per_chapter) == len([p for p in CHAPTERS if p.name not in APPENDICES]) == 5
    for chapter, ids in per_chapter.items():
        assert len(ids) >= 3, f"{chapter} has only {ids}"
    assert sorted(CELLS) == sorted(exercises.EXERCISES)
    for ex_id, cells in CELLS.items():
        assert {"prompt", "stub", "solution", "check"} <= set(cells), f"{ex_id} lacks cells: {set(cells)}"
        assert "solution" in cells["solution"].metadata.get("tags", [])
        assert f'check("{ex_id}"' in cells["check"].source


@pytest.mark.parametrize("ex_id", sorted(CELLS))
def test_check_fails_on_stub_with_not_implemented(ex_id):
    cells = CELLS[ex_id]
    names = namespace(ex_id)
    answer_name = cells["stub"].metadata["exercise_answer"]
    try:
        exec(cells["stub"].source, names)
    except NotImplementedError:
        # value exercises: the stub cell itself says what to do
        assert "raises-exception" in cells["stub"].metadata.get("tags", [])
        answer = Ellipsis
    else:
        if answer_name.endswith("()"):  # the check cell calls the stub itself: that call must raise
            with pytest.raises(NotImplementedError):
                eval(answer_name, names)
            return
        answer = eval(answer_name, names)
    with pytest.raises(exercises.ExerciseFailed) as failure:
        exercises.check(ex_id, answer, **CONTEXT.get(ex_id, {}))
    assert "NotImplementedError" in str(failure.value) or "no answer yet" in str(failure.value)


@pytest.mark.parametrize("ex_id", sorted(CELLS))
def test_check_passes_on_reference_solution(ex_id, capsys):
    cells = CELLS[ex_id]
    names = namespace(ex_id)
    if ex_id == "2.3":  # its solution also re-plots the chapter's sweep; only the answer is checked here
        names["answer_2_3"] = cells["solution"].source.split('answer_2_3 = "')[1][0]
    else:
        exec(cells["solution"].source, names)
    answer = eval(cells["stub"].metadata["exercise_answer"], names)
    assert exercises.check(ex_id, answer, **CONTEXT.get(ex_id, {})) is True
    assert capsys.readouterr().out.splitlines()[-1].startswith("Correct: exercise " + ex_id)


def test_wrong_answers_are_explained():
    with pytest.raises(exercises.ExerciseFailed, match="number of voxels"):
        exercises.check("1.2", 128 * 128 * 37)
    with pytest.raises(exercises.ExerciseFailed, match="shape"):
        exercises.check("2.1", lambda t, p: np.mean((t - p) ** 2))
    with pytest.raises(exercises.ExerciseFailed, match="not \\(a\\)"):
        exercises.check("3.3", "a")
    with pytest.raises(exercises.ExerciseFailed, match="one of the letters"):
        exercises.check("1.3", "z")
    with pytest.raises(ValueError, match="Unknown exercise"):
        exercises.check("9.9", 1)


def test_hints_advance(capsys):
    first = exercises.hint("2.1")
    second = exercises.hint("2.1")
    assert first != second and "Hint 2/" in capsys.readouterr().out


# ---------------------------------------------------------------- right forms and common slips
# Each exercise: answers that must pass (every right form) and plausible wrong ones that must fail,
# written here from the exercise's text (independent of the checks' own references).
def _square(theta):
    return np.concatenate([np.asarray(theta, np.float64), [[0.0], [0.0], [0.0], [1.0]]], axis=1)


def _dice(a, b, threshold=0.5, factor=2.0, empty=1.0):
    a, b = np.asarray(a) > threshold, np.asarray(b) > threshold
    total = a.sum() + b.sum()
    return empty if total == 0 else factor * np.logical_and(a, b).sum() / total


PAYOFF = {"training_seconds": 600.0, "optimisation_seconds": 15.0, "forward_seconds": 0.05,
          "instance_seconds": 4.0}
LEARNED = 600 / 14.95  # the right first answer with PAYOFF
SWEEP = CONTEXT["4.2"]
ANSWERS = {
    "1.1": ([lambda s, v: np.broadcast_to(np.asarray(v, np.float32), tuple(s) + (3,)).copy(),
             lambda s, v: np.zeros(tuple(s) + (3,)) + np.asarray(v, np.float64)],
            [lambda s, v: -np.broadcast_to(np.asarray(v, np.float64), tuple(s) + (3,)),  # sign
             lambda s, v: np.broadcast_to(np.asarray(v, np.float64)[::-1], tuple(s) + (3,)),  # axis order
             lambda s, v: np.moveaxis(np.broadcast_to(np.asarray(v, np.float64), tuple(s) + (3,)), -1, 0)]),
    "1.2": ([128 * 128 * 37 * 3, 1818624.0],
            [128 * 128 * 37, 128 * 128 * 36 * 3, 127 * 127 * 36 * 3, 12, 128 * 128 * 37 * 2]),
    "1.3": (["b", " B "], ["a", "c"]),
    "2.1": ([lambda f, w: np.mean((np.asarray(f) - w) ** 2, axis=tuple(range(1, np.ndim(f)))),
             lambda f, w: np.mean((np.asarray(w) - f) ** 2, axis=tuple(range(1, np.ndim(f)))).astype(np.float32)],
            [lambda f, w: np.sum((np.asarray(f) - w) ** 2, axis=tuple(range(1, np.ndim(f)))),  # sum
             lambda f, w: np.sqrt(np.mean((np.asarray(f) - w) ** 2, axis=tuple(range(1, np.ndim(f))))),
             lambda f, w: np.mean((np.asarray(f) - w) ** 2),  # over the batch too
             lambda f, w: np.mean((np.asarray(f) - w) ** 2, axis=(1, 2, 3)),  # forgets the channel axis
             lambda f, w: np.mean(np.abs(np.asarray(f) - w), axis=tuple(range(1, np.ndim(f))))]),
    "2.2": ([_dice, lambda a, b: float(_dice(a, b))],
            [lambda a, b: _dice(a, b, factor=1.0),  # forgets the 2
             lambda a, b: _dice(a, b, empty=0.0),  # two empty labels
             lambda a, b: _dice(a, b, threshold=0.0),  # no threshold
             lambda a, b: 2 * np.sum(np.asarray(a) * b) / (np.sum(a) + np.sum(b) + 1e-9)]),  # soft Dice
    "2.3": (["a"], ["b", "c"]),
    "3.1": ([lambda a, b: (_square(a) @ _square(b))[:, :3],
             lambda a, b: np.vstack([a[:3] @ b[:3], a[3] @ b[:3] + b[3]])],
            [lambda a, b: (_square(b) @ _square(a))[:, :3],  # b first
             lambda a, b: np.vstack([a[:3] @ b[:3], a[3] + b[3]]),  # translation not carried through b
             lambda a, b: (_square(a).T @ _square(b).T).T[:, :3]]),  # column-vector habits
    "3.2": ([lambda t: np.linalg.inv(_square(t))[:, :3],
             lambda t: np.vstack([np.linalg.inv(t[:3]), -t[3] @ np.linalg.inv(t[:3])])],
            [lambda t: np.vstack([np.linalg.inv(t[:3]), -t[3]]),  # translation not through the inverse
             lambda t: np.vstack([t[:3].T, -t[3] @ t[:3].T]),  # transpose: only for rotations
             lambda t: np.vstack([np.linalg.inv(t[:3]).T, -t[3] @ np.linalg.inv(t[:3])]),  # transposed
             lambda t: t]),
    "3.3": (["c"], ["a", "b"]),
    "3.4": ([lambda f, m, t: np.linalg.norm(np.c_[f, np.ones(len(f))] @ t - m, axis=1),  # fixed, forward
             lambda f, m, t: np.linalg.norm(np.c_[m, np.ones(len(m))] @ np.linalg.inv(_square(t))[:, :3] - f,
                                            axis=1),  # moving, inverse
             lambda f, m, t: points.target_registration_error(f, m, t)["per_point"],
             lambda f, m, t: list(np.linalg.norm(points.map_points(m, t, direction="moving_to_fixed") - f,
                                                 axis=1))],
            [lambda f, m, t: np.linalg.norm(np.c_[m, np.ones(len(m))] @ t - f, axis=1),  # the classic mistake
             lambda f, m, t: np.linalg.norm(f @ t[:3].T + t[3] - m, axis=1),  # transposed linear part
             lambda f, m, t: np.linalg.norm(np.c_[f, np.ones(len(f))] @ np.linalg.inv(_square(t))[:, :3] - m,
                                            axis=1),  # inverse applied to the fixed landmarks
             lambda f, m, t: np.linalg.norm(f - m, axis=1),  # no transform
             lambda f, m, t: np.linalg.norm(np.c_[f, np.ones(len(f))] @ t - m, axis=1).mean(),  # a mean
             lambda f, m, t: np.linalg.norm(np.c_[f, np.ones(len(f))] @ t - m, axis=1) ** 2]),  # squared
    "4.1": ([lambda g: np.linalg.det(np.eye(3) + g), lambda g: np.linalg.det(np.eye(3) + np.asarray(g).T)],
            [lambda g: np.linalg.det(g),  # forgets the identity
             lambda g: np.linalg.det(np.eye(3) - g),  # sign
             lambda g: 1 + np.trace(g)]),  # linearised
    "4.2": ([1.0, 1], [0.0, 10.0, 5.0]),
    "4.3": (["b"], ["a", "c"]),
    "5.1": (["LossConfig(image_weight=0.0, label_weight=1.0, deform_weight=0.5)",
             "LossConfig(image_weight=0, label_weight=2.0, deform_weight=1.0, label_loss='dice')"],
            ["LossConfig()", "LossConfig(image_weight=1.0, label_weight=0.0)",
             "LossConfig(image_weight=0.0, label_weight=1.0, deform_weight=0.0)"]),
    "5.2": ([(600 / 14.95, 600 / 11), [600 / (15 - 0.05), 600 / (15 - 4.0)], np.array([LEARNED, 600 / 11.0])],
            [(600 / 15, 600 / 11), (600 / 15.05, 600 / 11), (14.95 / 600, 600 / 11), (600 / 0.05, 600 / 11),
             (41.0, 600 / 11), (40.0, 600 / 11), (40.1, 600 / 11),
             (LEARNED, 600 / 15),  # dividing by the classical time alone
             (LEARNED, 600 / 19),  # adding instead of subtracting
             (LEARNED, 11 / 600),  # the inverse
             (LEARNED, 600 / (15 - 4.0 - 0.05)),  # the forward pass added again to the instance time
             (LEARNED, 600 / (15 - 3.95)),  # the forward pass left out of the instance time
             (LEARNED, LEARNED),  # the learned break-even twice
             (600 / 11, LEARNED),  # swapped
             (LEARNED, 600 / 4.0),  # the instance time itself
             LEARNED]),  # only the first answer
    "5.3": (["a"], ["b", "c"]),
}
CHECK_CONTEXT = {"4.2": SWEEP, "5.2": PAYOFF}


def _materialise(ex_id, answer):
    if ex_id == "5.1":
        from tutorial_utils import training

        return eval("training." + answer, {"training": training})
    return answer


def test_every_check_has_right_and_wrong_answers_listed():
    assert sorted(ANSWERS) == sorted(exercises.EXERCISES)
    for ex_id, (right, wrong) in ANSWERS.items():
        assert right and len(wrong) >= 2, ex_id


@pytest.mark.parametrize("ex_id", sorted(ANSWERS))
def test_check_accepts_every_right_form(ex_id, capsys):
    for answer in ANSWERS[ex_id][0]:
        assert exercises.check(ex_id, _materialise(ex_id, answer), **CHECK_CONTEXT.get(ex_id, {})) is True


@pytest.mark.parametrize("ex_id", sorted(ANSWERS))
def test_check_rejects_the_common_slips(ex_id, capsys):
    for answer in ANSWERS[ex_id][1]:
        with pytest.raises(exercises.ExerciseFailed):
            exercises.check(ex_id, _materialise(ex_id, answer), **CHECK_CONTEXT.get(ex_id, {}))
        assert "Correct" not in capsys.readouterr().out, (ex_id, answer)


def test_payoff_reported_case_and_its_slips_are_named():
    # the reported input: 600 / 15 forgets the forward pass (right: 600 / 14.95 = 40.13)
    refined = 600 / 11  # learned + instance optimisation: 4 s per pair, forward pass included
    with pytest.raises(exercises.ExerciseFailed, match="MINUS what the method spends"):
        exercises.check("5.2", (600 / 15, refined), **PAYOFF)
    with pytest.raises(exercises.ExerciseFailed, match="added the method's time"):
        exercises.check("5.2", (600 / (15 + 0.05), refined), **PAYOFF)
    with pytest.raises(exercises.ExerciseFailed, match="inverse"):
        exercises.check("5.2", (14.95 / 600, refined), **PAYOFF)
    with pytest.raises(exercises.ExerciseFailed, match="instance optimisation: .*already includes the forward"):
        exercises.check("5.2", (LEARNED, 600 / (15 - 4 - 0.05)), **PAYOFF)
    with pytest.raises(exercises.ExerciseFailed, match="instance optimisation: .*is spent too"):
        exercises.check("5.2", (LEARNED, 600 / (15 - 3.95)), **PAYOFF)
    with pytest.raises(exercises.ExerciseFailed, match="other method's break-even"):
        exercises.check("5.2", (LEARNED, LEARNED), **PAYOFF)
    with pytest.raises(exercises.ExerciseFailed, match="two numbers"):
        exercises.check("5.2", LEARNED, **PAYOFF)
    # the chapter's own small ratio (forward / optimisation = 1.3e-4) still separates them
    context = CONTEXT["5.2"]
    right = context["training_seconds"] / (context["optimisation_seconds"] - context["forward_seconds"])
    right_refined = context["training_seconds"] / (context["optimisation_seconds"] - context["instance_seconds"])
    assert exercises.check("5.2", (right, right_refined), **context)
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check("5.2", (context["training_seconds"] / context["optimisation_seconds"], right_refined),
                        **context)
    with pytest.raises(exercises.ExerciseFailed, match="never saves time"):
        exercises.check("5.2", (1.0, 1.0), training_seconds=10.0, optimisation_seconds=0.01,
                        forward_seconds=0.05, instance_seconds=0.1)
    with pytest.raises(exercises.ExerciseFailed, match="never saves time"):  # refinement slower than classical
        exercises.check("5.2", (1.0, 1.0), training_seconds=10.0, optimisation_seconds=1.0,
                        forward_seconds=0.05, instance_seconds=2.0)


def test_landmark_check_names_the_classic_mistake_and_the_transpose():
    """Exercise 3.4: the mistake of voxelmorph issues #84/#86 (moving landmarks through the forward
    transform) and a transposed matrix are each explained, on hidden cases the check makes itself."""
    def mistake(f, m, t):
        return np.linalg.norm(np.c_[m, np.ones(len(m))] @ t - f, axis=1)

    def transposed(f, m, t):
        return np.linalg.norm(f @ t[:3].T + t[3] - m, axis=1)

    with pytest.raises(exercises.ExerciseFailed, match="MOVING landmarks with theta"):
        exercises.check("3.4", mistake)
    with pytest.raises(exercises.ExerciseFailed, match="transposed"):
        exercises.check("3.4", transposed)


def test_landmark_check_cases_separate_the_right_answers_from_the_slips():
    """On every hidden case of 3.4, each slip is far from both right answers (so no slip can pass by
    accident), and the first case is a perfect registration (TRE 0); distances in float64 NumPy."""
    cases = exercises._landmark_cases()
    theta, fixed, moving = cases[0]
    assert np.allclose(np.c_[fixed, np.ones(len(fixed))] @ theta, moving)
    for theta, fixed, moving in cases:
        forward = np.linalg.norm(np.c_[fixed, np.ones(len(fixed))] @ theta - moving, axis=1)
        backward = np.linalg.norm(np.c_[moving, np.ones(len(moving))] @ np.linalg.inv(_square(theta))[:, :3]
                                  - fixed, axis=1)
        mistake = np.linalg.norm(np.c_[moving, np.ones(len(moving))] @ theta - fixed, axis=1)
        for right in (forward, backward):
            assert np.abs(mistake - right).max() > 0.5
