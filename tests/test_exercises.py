"""Every exercise in the chapters: the check fails on the stub and passes on the reference solution.

The stub and solution cells are read from the notebooks themselves (cells whose
metadata names an exercise), so what is tested is what students get.
"""
from pathlib import Path

import nbformat
import numpy as np
import pytest

from tutorial_utils import exercises

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "book" / "chapters").glob("*.ipynb"))


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
    "5.2": {"training_seconds": 300.0, "optimisation_seconds": 3001 * 0.05, "forward_seconds": 0.02},
}
NOTEBOOK_NAMES = {"5.2": {"training_seconds": 300.0, "classical_seconds": 3001 * 0.05, "forward": 0.02}}


def namespace(ex_id):
    from tutorial_utils import training

    names = {"np": np, "training": training, "check": exercises.check, "hint": exercises.hint}
    names.update(CONTEXT.get(ex_id, {}))
    names.update(NOTEBOOK_NAMES.get(ex_id, {}))
    return names


def test_every_chapter_has_three_exercises_and_every_exercise_is_in_a_chapter():
    per_chapter = {}
    for ex_id, cells in CELLS.items():
        per_chapter.setdefault(cells["chapter"], []).append(ex_id)
    assert len(per_chapter) == len(CHAPTERS) == 5
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
