"""LNCC's cost: float64 window moments (losses.lncc) against the float32 ones it replaced.

The float32 moments are the baseline, run in the same process: the same zero-padded
formula, but with E[x^2] - E[x]^2 cancelling in float32, which turned a constant
window of 1000 into rounding noise and LNCC into 4e7. Prints milliseconds per call
(eager value, and value + gradient compiled with XLA, as register's steps run it) and
the ratio to the baseline, for the volume sizes of the chapters.

    PYTHONPATH=$PWD python benchmarks/bench_lncc.py
"""
import time

import numpy as np

from tutorial_utils import losses
from tutorial_utils._tf import tf


def float32_lncc(fixed, warped, window_size=9):
    """The previous implementation, verbatim: the same formula with float32 moments."""
    kernel = losses._window_kernel(window_size, "rectangular").astype(np.float32)
    y_true, y_pred = tf.cast(fixed, tf.float32)[..., None], tf.cast(warped, tf.float32)[..., None]
    n = float(window_size) ** 3
    fixed_maps = losses._separable_filter(tf.concat([y_true, y_true * y_true], axis=0), kernel)
    moving_maps = losses._separable_filter(
        tf.concat([y_pred, y_pred * y_pred, y_true * y_pred], axis=0), kernel
    )
    mean_t, mean_tt = tf.split(fixed_maps, 2, axis=0)
    mean_p, mean_pp, mean_tp = tf.split(moving_maps, 3, axis=0)
    cross = n * (mean_tp - mean_t * mean_p)
    var_t = tf.maximum(n * (mean_tt - mean_t * mean_t), 0.0)
    var_p = tf.maximum(n * (mean_pp - mean_p * mean_p), 0.0)
    return tf.reduce_mean(cross * cross / (var_t * var_p + losses.EPS), axis=[1, 2, 3, 4])


def milliseconds(function, *args, repeats=5):
    function(*args)  # compile / warm up
    start = time.perf_counter()
    for _ in range(repeats):
        function(*args)
    return 1000 * (time.perf_counter() - start) / repeats


def main():
    rng = np.random.default_rng(0)
    for shape in [(1, 64, 64, 64), (1, 32, 128, 128), (1, 128, 128, 37)]:
        fixed = tf.constant(rng.random(shape).astype(np.float32))
        warped = tf.constant(rng.random(shape).astype(np.float32))
        row = {}
        for name, fn in [("float32 (baseline)", float32_lncc), ("float64 (losses.lncc)", losses.lncc)]:
            step = tf.function(
                lambda f, w, fn=fn: tf.gradients(tf.reduce_sum(fn(f, w)), w)[0], jit_compile=True
            )
            row[name] = (milliseconds(fn, fixed, warped), milliseconds(step, fixed, warped))
            print(f"{str(shape[1:]):16s} {name:22s} eager {row[name][0]:7.1f} ms   "
                  f"XLA value+gradient {row[name][1]:7.1f} ms")
        base, new = row["float32 (baseline)"], row["float64 (losses.lncc)"]
        print(f"{'':16s} ratio float64/float32: eager {new[0] / base[0]:.2f}, XLA {new[1] / base[1]:.2f}")
    constant = np.full((1, 16, 16, 16), 1000.0, np.float32)
    textured = constant + 0.01 * rng.standard_normal(constant.shape).astype(np.float32)
    print(f"constant 1000 vs textured: float32 moments {float(float32_lncc(constant, textured)[0]):.4g}, "
          f"float64 moments {float(losses.lncc(constant, textured)[0]):.4g} (formula: 0.875)")


if __name__ == "__main__":
    main()
