"""Seconds per optimisation step of the course's two classical recipes, on the real data.

Prints, for each recipe, the time of one full step (forward, gradient, Adam
update) compiled with XLA, the same step without XLA (the baseline), and the
time of one SciPy trilinear resampling of the same volume at the same kind of
locations (scipy.ndimage.map_coordinates, order=1), all measured in this run;
then the ratios step / SciPy.

Usage:  TUTORIAL_DATA_MIRROR=../shared/data/example-data python benchmarks/bench_recipes.py [--repeats N]
Targets (issue 3): affine step <= 1.5x SciPy, nonrigid step <= 5x SciPy.
"""
import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import ndimage  # noqa: E402

import seed_recipes  # noqa: E402  (beside this file)
from tutorial_utils import data, register, warp  # noqa: E402


def seconds_per_call(fn, repeats):
    fn()  # compile / warm up
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def scipy_resample_seconds(volume, loc, repeats):
    coordinates = np.moveaxis(np.asarray(loc, dtype=np.float32), -1, 0)
    return seconds_per_call(lambda: ndimage.map_coordinates(volume, coordinates, order=1, mode="constant"), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"TensorFlow {tf.__version__}; median of {args.repeats} calls\n")

    # affine self-registration of the head-and-neck CT: SSD, Adam 0.01
    ct = data.load_head_neck_ct()
    fixed = tf.constant(ct["image"][None])
    theta_true = warp.random_transform_generator(1, 0.2, seed=42)
    loc = warp.warp_grid(warp.get_reference_grid(fixed.shape[1:4]), theta_true)
    moving = warp.resample(fixed, loc)
    scipy_affine = scipy_resample_seconds(ct["image"], loc[0], args.repeats)
    step_xla, _ = seed_recipes.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01, image_loss="ssd", jit_compile=True)
    step_eager, _ = seed_recipes.make_affine_step(fixed=fixed, moving=moving, learning_rate=0.01, image_loss="ssd", jit_compile=False)
    affine_xla = seconds_per_call(step_xla, args.repeats)
    affine_graph = seconds_per_call(step_eager, args.repeats)

    # nonrigid prostate MR: LNCC (window 9) + bending energy (weight 1), Adam 0.1
    mr = data.load_prostate_mr()
    fixed_mr = tf.constant(mr["fixed_image"][None])
    moving_mr = tf.constant(mr["moving_image"][None])
    step_xla, field, _ = register.make_ddf_step(fixed=fixed_mr, moving=moving_mr, seed=0, jit_compile=True)
    nonrigid_xla = seconds_per_call(step_xla, args.repeats)
    grid = warp.get_reference_grid(fixed_mr.shape[1:4]).numpy()
    scipy_nonrigid = scipy_resample_seconds(mr["moving_image"], grid + field.numpy()[0], args.repeats)
    step_eager, _, _ = register.make_ddf_step(fixed=fixed_mr, moving=moving_mr, seed=0, jit_compile=False)
    nonrigid_graph = seconds_per_call(step_eager, args.repeats)

    rows = [
        ("affine  128x128x37, SSD", affine_xla, affine_graph, scipy_affine, 1.5, 1001),
        ("nonrigid 32x128x128, LNCC+bending", nonrigid_xla, nonrigid_graph, scipy_nonrigid, 5.0, 3001),
    ]
    print(f"{'recipe':36s} {'step XLA':>10s} {'step no-XLA':>12s} {'SciPy resample':>15s} "
          f"{'XLA/SciPy':>10s} {'target':>7s} {'full recipe (XLA)':>18s}")
    for name, fast, baseline, reference, target, iterations in rows:
        ratio = fast / reference
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"{name:36s} {fast * 1e3:8.1f}ms {baseline * 1e3:10.1f}ms {reference * 1e3:13.1f}ms "
              f"{ratio:9.2f}x {target:5.1f}x  {iterations} it = {fast * iterations / 60:5.1f} min  {verdict}")
    print(f"\nXLA speed-up over the same step without XLA: affine {affine_graph / affine_xla:.1f}x, "
          f"nonrigid {nonrigid_graph / nonrigid_xla:.1f}x")


if __name__ == "__main__":
    main()
