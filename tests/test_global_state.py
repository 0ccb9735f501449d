"""No library function a chapter calls changes global state a student relies on.

Checked around every call: NumPy's global random state, Python's ``random``,
TensorFlow's global generator and its op-level seed sequence (the numbers
``tf.random.uniform`` gives after ``tf.random.set_seed``), Keras's global seed
generator, matplotlib's rcParams and the working directory.

The one documented exception is :func:`tutorial_utils.config.set_seed`, whose
job is to set those seeds; its test checks that it does.

The list of functions follows what the chapters call (``grep`` the notebooks
for ``data.``, ``viz.``, ``warp.``, ``training.``, ``register.``, ``exercises``).
"""
import os
import random

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tutorial_utils import config, data, exercises, fields, metrics, points, viz  # noqa: E402
from tutorial_utils._tf import tf  # noqa: E402

from test_exercises import CELLS, CONTEXT, namespace  # noqa: E402

SEED = 1234


def _keras_seed_state():
    try:
        from keras.src.random.seed_generator import global_seed_generator

        return np.asarray(global_seed_generator().state.numpy()).tolist()
    except Exception:  # another Keras layout: nothing to compare
        return None


# TensorFlow's and Keras's global generators are created on first use (Keras
# draws their seed with Python's `random`); create them now so that the first
# snapshot does not count as a change.
tf.random.get_global_generator()
_keras_seed_state()


def snapshot():
    return {
        "numpy": np.random.get_state(legacy=False),
        "python random": random.getstate(),
        "tf global generator": tf.random.get_global_generator().state.numpy().tolist(),
        "keras seed generator": _keras_seed_state(),
        "rcParams": dict(matplotlib.rcParams),
        "cwd": os.getcwd(),
    }


def _draws():
    """What a student's next random numbers would be."""
    return {
        "np.random.rand": np.random.rand(3).tolist(),
        "random.random": random.random(),
        "tf.random.uniform": tf.random.uniform([3]).numpy().tolist(),
    }


def assert_leaves_global_state(call):
    """Run ``call`` after seeding everything; state and the next draws must be as without it."""
    def seed_all():
        np.random.seed(SEED)
        random.seed(SEED)
        tf.random.set_seed(SEED)

    seed_all()
    expected = _draws()
    seed_all()
    before = snapshot()
    call()
    after = snapshot()
    plt.close("all")
    changed = [key for key in before if _differs(before[key], after[key])]
    assert not changed, f"changed global state: {changed}"
    assert _draws() == expected, "the next random numbers changed (an unseeded draw from a global generator)"


def _differs(a, b):
    if isinstance(a, dict) and "state" in a:  # NumPy's bit generator state
        return a["bit_generator"] != b["bit_generator"] or any(
            np.any(np.asarray(a["state"][k]) != np.asarray(b["state"][k])) for k in a["state"])
    if isinstance(a, dict):
        return a.keys() != b.keys() or any(_differs(a[k], b[k]) for k in a)
    try:
        return bool(a != b)
    except ValueError:  # arrays
        return not np.array_equal(a, b)


RNG = np.random.default_rng(0)
VOLUME = RNG.random((12, 14, 16)).astype(np.float32)
LABEL = (VOLUME > 0.7).astype(np.float32)
DDF = RNG.normal(0, 0.5, (12, 14, 16, 3)).astype(np.float32)

VIZ_CALLS = {
    "notice": lambda: viz.notice("t", "x")._repr_html_(),
    "overlay_rgb": lambda: viz.overlay_rgb(LABEL, LABEL[::-1]),
    "plot_overlay": lambda: viz.plot_overlay(fixed_label=LABEL, warped_label=LABEL[::-1],
                                                orientation="LPS"),
    "plane_for": lambda: viz.plane_for("coronal", "LPS"),
    "plot_slice": lambda: viz.plot_slice(VOLUME, label=LABEL, orientation="LPS", axis="sagittal"),
    "plot_montage": lambda: viz.plot_montage(VOLUME, label=LABEL, orientation="LPS", axis="coronal"),
    "plot_registration_rows": lambda: viz.plot_registration_rows(fixed=VOLUME, moving=VOLUME,
                                                                    warped=VOLUME),
    "plot_checkerboard": lambda: viz.plot_checkerboard(VOLUME, VOLUME[::-1], orientation="LPS"),
    "plot_difference": lambda: viz.plot_difference(VOLUME, VOLUME[::-1]),
    "plot_deformed_grid": lambda: viz.plot_deformed_grid(DDF, background=VOLUME, orientation="LPS"),
    "plot_jacobian": lambda: viz.plot_jacobian(1 + DDF[..., 0]),
    "plot_loss_curves": lambda: viz.plot_loss_curves({"total": [3, 2, 1]}, log=True),
    "plot_grid_3d": lambda: viz.plot_grid_3d(DDF[:5, :5, :5], orientation="LPS"),
    "plot_training_schematic": lambda: viz.plot_training_schematic("combined"),
    "show_volumes (static form)": lambda: viz.show_volumes(
        {"a": VOLUME, "b": VOLUME}, overlays={"a": LABEL}, orientation="LPS").to_html(),
    "show_volumes (widget)": lambda: viz.show_volumes({"a": VOLUME})._repr_mimebundle_(),
}


@pytest.mark.parametrize("name", sorted(VIZ_CALLS))
def test_viz_leaves_global_state(name):
    assert_leaves_global_state(VIZ_CALLS[name])


@pytest.fixture
def mirrored(tmp_path, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))


@pytest.mark.parametrize("call", [
    lambda: data.load_head_neck_ct(),
    lambda: data.load_prostate_mr(),
    lambda: data.load_lung_pairs("valid", size=(24, 24, 26), standin=True, progress=False),
    lambda: data.fetch("hnct", progress=False),
    lambda: data.verify_cache(),
], ids=["load_head_neck_ct", "load_prostate_mr", "lung stand-in", "fetch", "verify_cache"])
def test_data_leaves_global_state(mirrored, call):
    assert_leaves_global_state(call)


def test_config_leaves_global_state_except_set_seed():
    assert_leaves_global_state(lambda: (config.pick(1, 2), config.describe_mode(), config.is_quick()))
    # set_seed is the documented exception: it seeds Python, NumPy and TensorFlow
    config.set_seed(7)
    first = _draws()
    config.set_seed(7)
    assert _draws() == first
    config.set_seed(8)
    assert _draws() != first


@pytest.mark.parametrize("ex_id", sorted(CELLS))
def test_exercise_checks_and_hints_leave_global_state(ex_id, capsys):
    cells = CELLS[ex_id]
    names = namespace(ex_id)
    if ex_id == "2.3":  # as in test_exercises: only the answer, not the re-plotted sweep
        names["answer_2_3"] = cells["solution"].source.split('answer_2_3 = "')[1][0]
    else:
        exec(cells["solution"].source, names)  # the student's code is not ours to judge here
    answer = eval(cells["stub"].metadata["exercise_answer"], names)
    assert_leaves_global_state(lambda: exercises.check(ex_id, answer, **CONTEXT.get(ex_id, {})))
    assert_leaves_global_state(lambda: exercises.hint(ex_id))


# ---------------------------------------------------------------- TensorFlow modules
def test_random_transform_generator_leaves_global_state():
    from tutorial_utils import warp

    assert_leaves_global_state(lambda: warp.random_transform_generator(2, 0.2, seed=3))
    assert_leaves_global_state(lambda: warp.random_transform_generator(2, 0.2))


def test_augment_pairs_leaves_global_state():
    from tutorial_utils import training

    images = VOLUME[None, :8, :8, :8]
    labels = LABEL[None, :8, :8, :8]
    assert_leaves_global_state(lambda: training.augment_pairs(
        fixed=images, moving=images, fixed_label=labels, moving_label=labels,
        scale=0.1, seed=1))


def test_register_steps_leave_global_state():
    from test_notebook_steps import seed_recipes  # benchmarks/seed_recipes.py
    from tutorial_utils import register

    fixed = VOLUME[None, :8, :8, :8]
    moving = VOLUME[None, :8, :8, :8][:, ::-1].copy()

    def affine():
        step, _ = seed_recipes.make_affine_step(fixed=fixed, moving=moving, jit_compile=False)
        register.run_steps(step, 2, progress=False)

    def ddf():
        seed_recipes.register_ddf(fixed=fixed, moving=moving, iterations=2, progress=False, jit_compile=False)

    def recipe():
        register.register_affine(fixed=fixed, moving=moving, sigmas=(1.0,), iterations=(2,), samples=32,
                                 progress=False)

    assert_leaves_global_state(affine)
    assert_leaves_global_state(ddf)
    assert_leaves_global_state(recipe)


def test_points_affine_geometry_leave_global_state():
    """The landmark, affine and geometry functions chapter 3 calls."""
    from tutorial_utils import affine, geometry, points

    theta = affine.identity()
    theta[3] = [0.5, -1.0, 2.0]
    assert_leaves_global_state(lambda: points.landmarks_from_label(LABEL, orientation="LPS", slices=[3, 5]))
    assert_leaves_global_state(lambda: points.map_points(DDF[0, 0, :2], theta, direction="moving_to_fixed"))
    assert_leaves_global_state(lambda: points.target_registration_error(DDF[0, 0, :2], DDF[1, 0, :2], theta))
    assert_leaves_global_state(lambda: affine.transform_points(affine.invert(theta), DDF[0, 0, :2]))
    assert_leaves_global_state(lambda: geometry.index_to_physical([1, 2, 3], geometry.Geometry(spacing=(3, 1, 1))))


def test_network_building_leaves_global_state():
    from tutorial_utils import network

    assert_leaves_global_state(lambda: network.build_registration_network((8, 8, 8)))


# ---------------------------------------------------------------- NumPy modules chapter 4 calls
LANDMARK_LABEL = np.zeros((8, 8, 8), np.float32)
LANDMARK_LABEL[2:6, 3:6, 2:5] = 1.0
NUMPY_CALLS = {
    "fields.jacobian_determinant": lambda: fields.jacobian_determinant(DDF[None]),
    "fields.one_sided_jacobian_determinants": lambda: fields.one_sided_jacobian_determinants(DDF[None]),
    "metrics.folding_fraction": lambda: metrics.folding_fraction(DDF, margin=2),
    "points.landmarks_from_label": lambda: points.landmarks_from_label(LANDMARK_LABEL, orientation="SPL"),
    "points.target_registration_error": lambda: points.target_registration_error(
        points.landmarks_from_label(LANDMARK_LABEL), points.landmarks_from_label(LANDMARK_LABEL[::-1]),
        np.zeros((8, 8, 8, 3))),
}


@pytest.mark.parametrize("name", sorted(NUMPY_CALLS))
def test_numpy_modules_leave_global_state(name):
    assert_leaves_global_state(NUMPY_CALLS[name])


def test_notebooks_call_no_function_left_out_here():
    """Every viz/data function the chapters call is in the lists above."""
    import re
    from pathlib import Path

    called = set()
    for path in sorted((Path(__file__).resolve().parents[1] / "book" / "chapters").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                called |= set(re.findall(r"\b(?:viz|data)\.(\w+)\(", cell.source))
    covered = {name.split(" ")[0] for name in VIZ_CALLS} | {
        "load_head_neck_ct", "load_prostate_mr", "load_lung_pairs", "fetch", "verify_cache", "cache_dir"}
    assert called <= covered, f"not checked for global state: {sorted(called - covered)}"


def test_register_files_leaves_global_state(tmp_path, monkeypatch):
    """The appendix's workflow (files in, files out): a tiny pair, a tiny schedule."""
    from tutorial_utils.images import write_image
    from tutorial_utils.register import files
    from tutorial_utils.register.cli import summary

    # two steps: XLA's compile of the nonrigid step would be most of the time and touches no
    # Python state (the same traced code runs; test_register_nonrigid.py checks XLA = graph)
    tiny = {"affine": {"sigmas": (1.0,), "iterations": (2,), "samples": 256},
            "nonrigid": {"levels": 1, "iterations": (2,), "jit_compile": False}}
    monkeypatch.setitem(files.SETTINGS, "quick", tiny)
    image = VOLUME[:8, :8, :8] + np.arange(8)[:, None, None]
    write_image(tmp_path / "fixed.nii.gz", image, {"spacing": (1.0, 1.0, 2.0)})
    write_image(tmp_path / "moving.nii.gz", image[::-1].copy(), {"spacing": (1.0, 1.0, 2.0)})
    assert_leaves_global_state(lambda: summary(files.register_files(
        tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz", tmp_path / "out", quick=True, force=True,
        progress=False)))


def test_chapter5_evaluation_and_table_leave_global_state():
    """Chapter 5 scores its test pairs with metrics.evaluate_pairs (HD95 in mm) and prints
    results.comparison_table."""
    from tutorial_utils import metrics, results

    labels = np.stack([LABEL, LABEL[::-1]])
    ddfs = np.stack([DDF, np.zeros_like(DDF)])
    assert_leaves_global_state(lambda: metrics.evaluate_pairs(ddfs, labels, labels, spacing=(1.5, 1.0, 2.0)))
    assert_leaves_global_state(lambda: str(results.comparison_table([{"method": "a", "Dice": 0.5}])))


def test_register_nonrigid_from_an_initial_ddf_leaves_global_state():
    from tutorial_utils import register

    fixed = VOLUME[None, :8, :8, :8]
    moving = VOLUME[None, :8, :8, :8][:, ::-1].copy()
    assert_leaves_global_state(lambda: register.register_nonrigid(
        fixed=fixed, moving=moving, initial_ddf=0.1 * DDF[None, :8, :8, :8], levels=1, iterations=(2,),
        progress=False, jit_compile=False))  # as in test_register_files_leaves_global_state
