"""The course's registrations against the established tools, same tasks, same process.

Two tasks on the real data (offline mirror or the manifest's download):

- ``affine``: chapter 3's self-registration, the head-and-neck CT warped by the
  secret affine ``random_transform_generator(1, 0.2, seed=42)``; error = the
  residual of ``metrics.affine_residual`` against that truth (voxels).
- ``prostate``: chapter 4's pair, patient 0 moving and patient 1 fixed; Dice and
  HD95 of the warped prostate label, and the fraction of voxels whose Jacobian
  determinant is <= 0 (whole field and 2 voxels away from the border).

Methods: the seed recipe (the chapters' original loops, ``seed_recipes.py``), the
course's improved pipeline (``register.register_affine``, ``register.register_nonrigid``,
with their defaults; for the affine task also ``register_affine(optimiser="adam")``,
chapter 3's Adam recipe, "course, Adam"),
elastix with its default parameter maps, greedy (PICSL) with its usual settings
(``classical.greedy_affine``: ``-a -dof 12 -m NCC 2x2x2 -n 100x50x10``;
``classical.greedy_deformable``: that affine, then ``-m NCC 2x2x2 -n 100x50x10``
on top), phase correlation (affine task) and TV-L1 optical flow (prostate task).
Times are wall-clock and include XLA compilation; the libraries are imported and
elastix's and greedy's modules loaded once (a tiny registration) before any
timing, as TensorFlow's import is not counted either.

Every method's result is a ``results.RegistrationResult``; each task's rows are
``results.compare``'s table. Prints on stdout, one JSON object a line: one per
row; the per-level wall times of the course's methods (``level_seconds``, and
``phase_seconds`` for the nonrigid pipeline: pyramid, each level's upsampling, set-up
and first step (tracing, compilation) and its other steps, or its upsampling alone at a
level of 0 steps, and the base added at the end, where the method measured them); then two ratio lines per task, the course against the
best OTHER tool on each axis, named in the line: the fastest one (seconds) and
the most accurate one (affine: lowest mean residual; prostate: highest Dice). The
text table goes to stderr.

Usage:  TUTORIAL_DATA_MIRROR=../shared/data/example-data \\
        python benchmarks/bench_classical.py [--task affine|prostate|both] [--quick]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import seed_recipes  # noqa: E402  (beside this file)
from tutorial_utils import classical, data, metrics, register, warp  # noqa: E402
from tutorial_utils._tf import tf  # noqa: E402
from tutorial_utils.results import RegistrationResult, compare  # noqa: E402

SEED = 42
TRANSFORM_SCALE = 0.2
#: The course's own methods; every other row is an "other tool" in the ratio lines.
COURSE_METHODS = ("seed recipe", "course", "course, Adam")


def emit(record):
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)
    return record


def as_result(method, out):
    """A ``classical`` adapter's output as a RegistrationResult (they return dicts on main today)."""
    if isinstance(out, RegistrationResult):
        return out
    return RegistrationResult(method=method, seconds=out["seconds"], theta=out.get("theta"), ddf=out.get("ddf"))


def report(task, runs, score):
    """Emit one JSON line per method (``results.compare``'s rows) and the course's per-level
    times; the table on stderr."""
    table = compare(runs, score, title=task)
    rows = {row["method"]: emit({"task": task, **row}) for row in table.rows}
    for name in COURSE_METHODS:
        if name in runs and runs[name].level_seconds:
            levels = runs[name].level_seconds
            emit({"task": task, "method": name, "level_seconds": [round(float(v), 3) for v in levels],
                  "levels_total": float(sum(levels)), "seconds": float(runs[name].seconds)})
        phases = runs[name].details.get("phase_seconds") if name in runs else None
        if phases:  # where the time went (register_nonrigid): pyramid, each level's compilation and steps
            emit({"task": task, "method": name, "phase_seconds": {k: round(float(v), 3) for k, v in phases.items()}})
    print(table, file=sys.stderr, flush=True)
    return rows


def emit_ratios(task, rows, accuracy, higher_is_better, also=()):
    """The course against the fastest other tool (seconds) and the most accurate one (``accuracy``
    and ``also``), each named: two JSON lines."""
    course = rows["course"]
    others = {name: row for name, row in rows.items() if name not in COURSE_METHODS}
    fastest = min(others, key=lambda name: others[name]["seconds"])
    best = (max if higher_is_better else min)(others, key=lambda name: others[name][accuracy])
    emit({"task": task, "ratio": f"course / fastest other tool ({fastest})", "versus": fastest,
          "seconds": course["seconds"] / others[fastest]["seconds"]})
    emit({"task": task, "ratio": f"course / most accurate other tool by {accuracy} ({best})", "versus": best,
          **{key: course[key] / others[best][key] for key in (accuracy, *also)},
          "seconds": course["seconds"] / others[best]["seconds"]})


def warm_up_tools():
    """Load itk-elastix's lazily imported modules (tens of seconds the first time) and greedy's."""
    volume = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)
    classical.elastix_affine(fixed=volume, moving=volume)
    classical.greedy_affine(fixed=volume, moving=volume, iterations=(2,))


def affine_task(quick):
    ct = data.load_head_neck_ct()
    fixed = tf.constant(ct["image"][None])
    theta_true = warp.random_transform_generator(1, TRANSFORM_SCALE, seed=SEED).numpy()
    grid = warp.get_reference_grid(fixed.shape[1:4])
    moving = warp.resample(fixed, warp.warp_grid(grid, theta_true))
    size = tuple(fixed.shape[1:4])
    pair = dict(fixed=fixed.numpy(), moving=moving.numpy())
    runs = {
        # chapter 3's original loop: SSD on the whole grid, Adam 0.01, fixed count
        "seed recipe": seed_recipes.register_seed_affine(
            fixed=fixed, moving=moving, iterations=100 if quick else 1001, learning_rate=0.01),
        "course": register.register_affine(**pair, progress=False),  # Gauss-Newton, chapter 3's last recipe
        # chapter 3's "improved recipe": the same sampling and pyramid, Adam's steps (compiled with XLA)
        "course, Adam": register.register_affine(**pair, optimiser="adam", progress=False),
        "elastix": as_result("elastix", classical.elastix_affine(**pair)),
        "greedy": classical.greedy_affine(**pair),
        "phase correlation": as_result("phase correlation", classical.phase_correlation_shift(**pair)),
    }

    def score(result):
        mean, largest = metrics.affine_residual(result.theta, theta_true, size)
        return {"residual_mean": mean, "residual_max": largest}

    rows = report("affine", runs, score)
    emit_ratios("affine", rows, "residual_mean", higher_is_better=False, also=("residual_max",))


def prostate_task(quick):
    mr = data.load_prostate_mr()
    fixed, moving = mr["fixed_image"], mr["moving_image"]
    runs = {
        # chapter 4's seed recipe: LNCC + 1.0 x bending, Adam 0.1, 3001 iterations
        "seed recipe": seed_recipes.register_ddf(
            fixed=fixed[None], moving=moving[None], iterations=300 if quick else 3001,
            learning_rate=0.1, image_loss="lncc", deform_loss="bending", deform_weight=1.0, seed=SEED),
        # the package's defaults (chapter 4's full mode uses them unless it says otherwise)
        "course": register.register_nonrigid(fixed=fixed[None], moving=moving[None], progress=False),
        "elastix": as_result("elastix", classical.elastix_bspline(fixed=fixed, moving=moving)),
        "elastix bspline only": as_result("elastix bspline only", classical.elastix_bspline(
            fixed=fixed, moving=moving, affine_first=False)),
        "greedy": classical.greedy_deformable(fixed=fixed, moving=moving),
        "optical flow tvl1": as_result("optical flow tvl1", classical.optical_flow_tvl1(fixed=fixed, moving=moving)),
    }

    def score(result):
        scores = metrics.evaluate_registration(result.displacement(fixed.shape), fixed_label=mr["fixed_label"],
                                               moving_label=mr["moving_label"])
        return {key: scores[key] for key in ("dice", "hd95", "folding_whole", "folding_interior")}

    rows = report("prostate", runs, score)
    emit_ratios("prostate", rows, "dice", higher_is_better=True, also=("hd95",))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("affine", "prostate", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="fewer seed-recipe iterations")
    args = parser.parse_args()
    warm_up_tools()
    if args.task in ("affine", "both"):
        affine_task(args.quick)
    if args.task in ("prostate", "both"):
        prostate_task(args.quick)


if __name__ == "__main__":
    main()
