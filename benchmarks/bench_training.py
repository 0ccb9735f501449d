"""One training epoch of chapter 5, phase by phase (issue #21).

Builds exactly the chapter's setting (``cpu``: size (48, 48, 52), 8 channels, 2 levels,
batch 2, learning rate 1e-3, 16 training pairs and 1 validation pair of the lung
stand-in; or ``quick``) with the chapter's loss (image ssd 1.0, label multi-scale-dice
1.0 at scales (0, 1, 2, 4, 8), deformation bending 0.5), then times, in this fresh
process:

- ``input``: shuffling, augmentation (:func:`training.augment_pairs`) and batching of
  one epoch's pairs;
- ``step_first``: the first train step (tracing and compilation included) and
  ``step``: the mean of the following ones;
- ``label_loss``: the multi-scale label loss's value and gradient alone, compiled as
  the step compiles it, and ``step_without_label``: a step whose label term is plain
  Dice (its share is the difference);
- ``validation``: :func:`training.evaluate_pairs` on the validation pair;
- ``checkpoint``: one :meth:`training.TrainingCheckpoint.save`;
- ``forward``: one forward pass per pair (:func:`training.predict_ddf`);
- ``epoch``: the wall time of each epoch of :func:`training.fit` (its ``seconds``),
  the first one including compilation.

Each result is one JSON line; a table follows. ``--profile`` also prints cProfile's
top Python-side functions of one epoch.

    PYTHONPATH=$PWD python benchmarks/bench_training.py --epochs 3 --setting cpu
"""
import argparse
import cProfile
import io
import json
import pstats
import tempfile
import time

import numpy as np

from tutorial_utils import data, training
from tutorial_utils._tf import tf
from tutorial_utils.network import build_registration_network

SETTINGS = {  # chapter 5's SETTINGS, without the classical iterations
    "cpu": {"size": (48, 48, 52), "channels": 8, "levels": 2, "batch_size": 2, "learning_rate": 1e-3},
    "quick": {"size": (32, 32, 36), "channels": 4, "levels": 2, "batch_size": 2, "learning_rate": 1e-3},
}
LOSS = training.LossConfig(image_weight=1.0, label_weight=1.0, deform_weight=0.5, image_loss="ssd",
                           label_loss="multi-scale-dice", label_scales=(0, 1, 2, 4, 8),
                           deform_loss="bending")
SEED = 0
AUGMENT_SCALE = 0.05


def emit(results, phase, seconds, **extra):
    row = {"phase": phase, "seconds": round(float(seconds), 4), **extra}
    results.append(row)
    print(json.dumps(row), flush=True)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def step_phases(results, setting, train, config, phase):
    """Time the first and the following train steps of a fresh model and optimiser."""
    model = build_registration_network(setting["size"], initial_channels=setting["channels"],
                                       levels=setting["levels"])
    optimiser = tf.keras.optimizers.Adam(setting["learning_rate"])
    optimiser.build(model.trainable_variables)  # as fit does
    strategy = tf.distribute.get_strategy()
    step = training._make_train_step(model, optimiser, config, strategy, setting["batch_size"])
    arrays = training._pair_arrays(train, "train")
    batch = tuple(tf.constant(arrays[name][:setting["batch_size"]]) for name in training.PAIR_FIELDS[:2]) \
        + tuple(tf.constant(arrays[name][:setting["batch_size"]]) for name in training.PAIR_FIELDS[2:])
    _, first = timed(lambda: float(step(batch)["total"]))
    times = [timed(lambda: float(step(batch)["total"]))[1] for _ in range(4)]
    emit(results, f"{phase}_first", first, note="tracing and compilation included")
    emit(results, phase, np.median(times), note="median of 4 steps after the first")
    return model


def label_loss_phase(results, train, config):
    """The multi-scale label loss's value and gradient alone, compiled like the step."""
    label = config.loss_functions()["label"]
    fixed = tf.constant(train.fixed_labels[:2])
    moving = tf.constant(train.moving_labels[:2])

    @tf.function(autograph=False)
    def value_and_gradient(fixed, moving):
        with tf.GradientTape() as tape:
            tape.watch(moving)
            value = tf.reduce_sum(label(fixed, moving))
        return value, tape.gradient(value, moving)

    value_and_gradient(fixed, moving)
    times = [timed(lambda: value_and_gradient(fixed, moving)[0].numpy())[1] for _ in range(3)]
    emit(results, "label_loss", np.median(times), note="value + gradient, one batch of 2")


def once_phases(results, setting, train, valid, model):
    """Input pipeline, validation, checkpointing and forward pass, each once (after a warm-up)."""
    arrays = training._pair_arrays(train, "train")
    strategy = tf.distribute.get_strategy()

    def consume(batch):  # a step that does nothing: what is left is the input pipeline
        return {"total": tf.constant(0.0)}

    training._train_epoch(consume, arrays, strategy, batch_size=setting["batch_size"],
                          augment_scale=AUGMENT_SCALE, seed=SEED, epoch=0)
    _, seconds = timed(training._train_epoch, consume, arrays, strategy, batch_size=setting["batch_size"],
                       augment_scale=AUGMENT_SCALE, seed=SEED, epoch=1)
    emit(results, "input", seconds, note="shuffle + augment + batch, one epoch, no steps")
    training.evaluate_pairs(model, valid, LOSS)
    _, seconds = timed(training.evaluate_pairs, model, valid, LOSS)
    emit(results, "validation", seconds, pairs=len(valid.fixed_images))
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = training.TrainingCheckpoint(folder, model=model, optimiser=tf.keras.optimizers.Adam(1e-3))
        checkpoint.save(1, {"train_total": [1.0]}, LOSS)
        _, seconds = timed(checkpoint.save, 2, {"train_total": [1.0, 0.5]}, LOSS)
    emit(results, "checkpoint", seconds)
    fixed, moving = valid.fixed_images[:1], valid.moving_images[:1]
    training.predict_ddf(model, fixed=fixed, moving=moving)
    times = [timed(training.predict_ddf, model, fixed=fixed, moving=moving)[1] for _ in range(3)]
    emit(results, "forward", np.median(times), note="one pair, after a warm-up")


def epoch_phase(results, setting, train, valid, epochs, profile):
    model = build_registration_network(setting["size"], initial_channels=setting["channels"],
                                       levels=setting["levels"])
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as folder:
        if profiler:
            profiler.enable()
        history = training.fit(model, train=train, valid=valid, config=LOSS, epochs=epochs,
                               batch_size=setting["batch_size"], learning_rate=setting["learning_rate"],
                               augment_scale=AUGMENT_SCALE, seed=SEED, checkpoint_dir=folder,
                               progress=False)
        if profiler:
            profiler.disable()
    for epoch, seconds in enumerate(history["seconds"]):
        emit(results, "epoch", seconds, epoch=epoch + 1, valid_dice=round(history["valid_dice"][epoch], 4),
             train_total=round(history["train_total"][epoch], 5))
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        print(text.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--profile", action="store_true", help="cProfile the epochs of fit")
    parser.add_argument("--skip-phases", action="store_true", help="only the epochs of fit")
    args = parser.parse_args()
    setting = SETTINGS[args.setting]
    started = time.perf_counter()
    train = data.load_lung_pairs("train", size=setting["size"], standin=True)
    valid = data.load_lung_pairs("valid", size=setting["size"], standin=True)
    results = []
    emit(results, "load", time.perf_counter() - started, train=len(train.fixed_images),
         valid=len(valid.fixed_images), setting=args.setting)
    # fit first, in the fresh process: its first epoch pays every compilation, as in the chapter
    epoch_phase(results, setting, train, valid, args.epochs, args.profile)
    if not args.skip_phases:
        model = step_phases(results, setting, train, LOSS, "step")
        plain = training.LossConfig(**{**LOSS.__dict__, "label_loss": "dice"})
        step_phases(results, setting, train, plain, "step_without_label")
        label_loss_phase(results, train, LOSS)
        once_phases(results, setting, train, valid, model)
    print(f"\n{'phase':22s} {'seconds':>9s}  notes")
    for row in results:
        notes = {key: value for key, value in row.items() if key not in ("phase", "seconds")}
        print(f"{row['phase']:22s} {row['seconds']:9.3f}  {json.dumps(notes) if notes else ''}")


if __name__ == "__main__":
    main()
