"""The course's registrations against the established tools, same tasks, same process.

Two tasks on the real data (offline mirror or the manifest's download):

- ``affine``: chapter 3's self-registration, the head-and-neck CT warped by the
  secret affine ``random_transform_generator(1, 0.2, seed=42)``; error = the
  residual of ``metrics.affine_residual`` against that truth (voxels).
- ``prostate``: chapter 4's pair, patient 0 moving and patient 1 fixed; Dice and
  HD95 of the warped prostate label, and the fraction of voxels whose Jacobian
  determinant is <= 0 (whole field and 2 voxels away from the border).

Methods: the seed recipe (the chapters' original loops), the course's improved
pipeline (``register.register_affine``; ``register.register_nonrigid`` when the
package has it), elastix with its default parameter maps, phase correlation
(affine task) and TV-L1 optical flow (prostate task). Times are wall-clock and
include XLA compilation; the libraries are imported and elastix's modules loaded
once (a tiny registration) before any timing, as TensorFlow's import is not
counted either.

Prints one JSON object per line, then one ratio line per task (course / elastix).

Usage:  TUTORIAL_DATA_MIRROR=../shared/data/example-data \\
        python benchmarks/bench_classical.py [--task affine|prostate|both] [--quick]
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tutorial_utils import classical, data, metrics, register, warp  # noqa: E402
from tutorial_utils._tf import tf  # noqa: E402

SEED = 42
TRANSFORM_SCALE = 0.2


def emit(record):
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)
    return record


def warm_up_elastix():
    """Load itk-elastix's lazily imported modules (tens of seconds the first time)."""
    volume = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)
    classical.elastix_affine(fixed=volume, moving=volume)


def seed_affine(fixed, moving, iterations):
    """Chapter 3's original loop: SSD on the whole grid, Adam 0.01, fixed count."""
    start = time.perf_counter()
    step, theta = register.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01, loss_name="ssd")
    register.run_steps(step, iterations, progress=False)
    return theta.numpy(), time.perf_counter() - start


def affine_task(quick):
    ct = data.load_head_neck_ct()
    fixed = tf.constant(ct["image"][None])
    theta_true = warp.random_transform_generator(1, TRANSFORM_SCALE, seed=SEED).numpy()
    grid = warp.get_reference_grid(fixed.shape[1:4])
    moving = warp.resample(fixed, warp.warp_grid(grid, theta_true))
    size = tuple(fixed.shape[1:4])
    rows = {}

    def record(method, theta, seconds):
        mean, largest = metrics.affine_residual(theta, theta_true, size)
        rows[method] = emit({"task": "affine", "method": method, "seconds": seconds,
                             "residual_mean": mean, "residual_max": largest})

    theta, seconds = seed_affine(fixed, moving, 100 if quick else 1001)
    record("seed recipe", theta, seconds)
    result = register.register_affine(fixed=fixed.numpy(), moving=moving.numpy(), progress=False)
    record("course", result["theta"], result["seconds"])
    result = classical.elastix_affine(fixed=fixed.numpy(), moving=moving.numpy())
    record("elastix", result["theta"], result["seconds"])
    result = classical.phase_correlation_shift(fixed=fixed.numpy(), moving=moving.numpy())
    record("phase correlation", result["theta"], result["seconds"])
    course, elastix = rows["course"], rows["elastix"]
    emit({"task": "affine", "ratio": "course / elastix",
          "seconds": course["seconds"] / elastix["seconds"],
          "residual_mean": course["residual_mean"] / elastix["residual_mean"],
          "residual_max": course["residual_max"] / elastix["residual_max"]})


def label_scores(ddf, fixed_label, moving_label):
    if hasattr(metrics, "evaluate_registration"):
        scores = metrics.evaluate_registration(ddf, fixed_label=fixed_label, moving_label=moving_label)
        return {key: scores[key] for key in ("dice", "hd95", "folding_whole", "folding_interior")}
    warped = warp.warp(moving_label[None], ddf)[0].numpy()
    return {"dice": metrics.binary_dice(fixed_label, warped),
            "hd95": metrics.hausdorff_distance(fixed_label, warped),
            "folding_whole": metrics.folding_fraction(ddf),
            "folding_interior": metrics.folding_fraction(ddf, margin=2)}


def prostate_task(quick):
    mr = data.load_prostate_mr()
    fixed, moving = mr["fixed_image"], mr["moving_image"]
    rows = {}

    def record(method, ddf, seconds):
        scores = label_scores(np.asarray(ddf, np.float32), mr["fixed_label"], mr["moving_label"])
        rows[method] = emit({"task": "prostate", "method": method, "seconds": seconds, **scores})

    # chapter 4's seed recipe: LNCC + 1.0 x bending, Adam 0.1, 3001 iterations
    result = register.register_ddf(fixed=fixed[None], moving=moving[None], iterations=300 if quick else 3001, progress=False,
                                   learning_rate=0.1, image_loss="lncc", deform_loss="bending",
                                   deform_weight=1.0, seed=SEED)
    record("seed recipe", result["ddf"], result["seconds"])
    if hasattr(register, "register_nonrigid"):
        # the package's defaults (chapter 4's full mode uses them unless it says otherwise)
        start = time.perf_counter()
        result = register.register_nonrigid(fixed=fixed[None], moving=moving[None], progress=False)
        record("course", result["ddf"], time.perf_counter() - start)
    result = classical.elastix_bspline(fixed=fixed, moving=moving)
    record("elastix", result["ddf"], result["seconds"])
    result = classical.elastix_bspline(fixed=fixed, moving=moving, affine_first=False)
    record("elastix bspline only", result["ddf"], result["seconds"])
    result = classical.optical_flow_tvl1(fixed=fixed, moving=moving)
    record("optical flow tvl1", result["ddf"], result["seconds"])
    if "course" in rows:
        course, elastix = rows["course"], rows["elastix"]
        emit({"task": "prostate", "ratio": "course / elastix",
              "seconds": course["seconds"] / elastix["seconds"],
              "dice": course["dice"] / elastix["dice"], "hd95": course["hd95"] / elastix["hd95"]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("affine", "prostate", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="fewer seed-recipe iterations")
    args = parser.parse_args()
    warm_up_elastix()
    if args.task in ("affine", "both"):
        affine_task(args.quick)
    if args.task in ("prostate", "both"):
        prostate_task(args.quick)


if __name__ == "__main__":
    main()
