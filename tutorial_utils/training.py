"""Training and using a registration network on paired images.

The loss combines the three families of chapter 2, each with a weight:

    total = w_image * image loss(fixed image, warped moving image)
          + w_label * label loss(fixed label, warped moving label)
          + w_deform * deformation loss(DDF)

each term being one of :func:`tutorial_utils.losses.get_loss`'s names (values to
minimise, one per pair). With ``w_label = 0`` the training is unsupervised; with
``w_image = 0`` weakly supervised; with both, combined.

The data are pair objects such as :class:`tutorial_utils.data.LungPairs`: anything
with the four float32 arrays ``fixed_images``, ``moving_images``, ``fixed_labels``
and ``moving_labels``, each ``(pairs, d1, d2, d3)``. Every function that takes both
a fixed and a moving image takes them keyword-only, fixed first.

Where several GPUs are present, :func:`get_strategy` returns a
``tf.distribute.MirroredStrategy`` and :func:`fit` spreads each batch over them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ._tf import tf
from . import losses, metrics
from .progress import progress_bar
from .warp import centre_affine, get_reference_grid, random_transform_generator, resample, warp, warp_grid

__all__ = [
    "LossConfig", "combined_loss", "augment_pairs", "get_strategy", "predict_ddf",
    "evaluate_pairs", "TrainingCheckpoint", "checkpoint_folder", "run_record", "fit",
]

PAIR_FIELDS = ("fixed_images", "moving_images", "fixed_labels", "moving_labels")


@dataclass
class LossConfig:
    """Weights and choices of the combined training loss.

    Attributes
    ----------
    image_weight, label_weight, deform_weight : float
        Weights of the three terms (0 switches a term off; none may be negative).
    image_loss : str
        One of ``losses.LOSS_NAMES["image"]`` (default ``"ssd"``).
    label_loss : str
        One of ``losses.LOSS_NAMES["label"]`` (default ``"multi-scale-dice"``).
    label_scales : tuple of float
        Gaussian scales (voxels) of the ``"multi-scale-dice"`` label loss.
    deform_loss : str
        One of ``losses.LOSS_NAMES["deformation"]`` (default ``"bending"``).

    Raises
    ------
    ValueError
        For a name that is not a loss of its family, a negative weight, or both
        the image and the label weight 0 (nothing would drive the registration).

    Examples
    --------
    >>> LossConfig(image_weight=0.0, label_weight=1.0, deform_weight=0.5).label_loss
    'multi-scale-dice'
    """

    image_weight: float = 1.0
    label_weight: float = 1.0
    deform_weight: float = 1.0
    image_loss: str = "ssd"
    label_loss: str = "multi-scale-dice"
    label_scales: Tuple[float, ...] = (0, 1, 2, 4, 8)
    deform_loss: str = "bending"

    def __post_init__(self):
        for family, field_name in (("image", "image_loss"), ("label", "label_loss"),
                                   ("deformation", "deform_loss")):
            names = losses.LOSS_NAMES[family]
            if getattr(self, field_name) not in names:
                raise ValueError(f"`{field_name}` is {getattr(self, field_name)!r}; use one of the "
                                 f"{family} losses {', '.join(map(repr, names))}.")
        weights = {"image_weight": self.image_weight, "label_weight": self.label_weight,
                   "deform_weight": self.deform_weight}
        for name, weight in weights.items():
            if not weight >= 0:
                raise ValueError(f"`{name}` is {weight}; loss weights must be 0 or positive.")
        if self.image_weight == 0 and self.label_weight == 0:
            raise ValueError("both the image and the label weight are 0: nothing would drive the "
                             "registration; give one of them a positive weight.")

    def loss_functions(self) -> Dict[str, object]:
        """The three per-pair losses, from :func:`tutorial_utils.losses.get_loss`."""
        label_options = {"scales": tuple(self.label_scales)} if self.label_loss == "multi-scale-dice" else {}
        return {"image": losses.get_loss(self.image_loss),
                "label": losses.get_loss(self.label_loss, **label_options),
                "deform": losses.get_loss(self.deform_loss)}


def combined_loss(config: LossConfig, *, fixed, warped, fixed_label, warped_label, ddf) -> Dict[str, tf.Tensor]:
    """The weighted training loss and its (unweighted) terms, per pair.

    Parameters
    ----------
    config : LossConfig
    fixed, warped : tensor ``(batch, d1, d2, d3)``
        The fixed image and the warped moving image.
    fixed_label, warped_label : tensor ``(batch, d1, d2, d3)``
        The fixed label and the warped moving label.
    ddf : tensor ``(batch, d1, d2, d3, 3)``
        The displacement (voxels) that warped them.

    Returns
    -------
    dict of ``(batch,)`` tensors: ``image``, ``label``, ``deform`` (unweighted, from
    :func:`tutorial_utils.losses.get_loss`) and ``total`` (their weighted sum).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.linspace(0, 1, 2 * 8 ** 3, dtype=np.float32).reshape(2, 8, 8, 8)
    >>> label = (image > 0.5).astype(np.float32)
    >>> terms = combined_loss(LossConfig(), fixed=image, warped=image, fixed_label=label,
    ...                       warped_label=label, ddf=np.zeros((2, 8, 8, 8, 3), np.float32))
    >>> [round(float(value), 6) for value in terms["total"]]  # a perfect match costs nothing
    [0.0, 0.0]
    """
    functions = config.loss_functions()
    return _weighted({"image": functions["image"](fixed, warped),
                      "label": functions["label"](fixed_label, warped_label),
                      "deform": functions["deform"](ddf)}, config)


def _weighted(terms: Dict[str, tf.Tensor], config: LossConfig) -> Dict[str, tf.Tensor]:
    """``terms`` with ``total``, their weighted sum, added (the formula of :func:`combined_loss`)."""
    terms["total"] = (config.image_weight * terms["image"] + config.label_weight * terms["label"]
                      + config.deform_weight * terms["deform"])
    return terms


def _pair_arrays(pairs, name: str) -> Dict[str, np.ndarray]:
    """The four arrays of a pair object as float32, checked to share one 4-D shape."""
    missing = [field_name for field_name in PAIR_FIELDS if not hasattr(pairs, field_name)]
    if missing:
        raise ValueError(f"`{name}` is a {type(pairs).__name__} without {', '.join(missing)}; pass a "
                         "data.LungPairs (or an object with the four arrays "
                         f"{', '.join(PAIR_FIELDS)}).")
    arrays = {field_name: np.asarray(getattr(pairs, field_name), np.float32) for field_name in PAIR_FIELDS}
    shapes = {field_name: array.shape for field_name, array in arrays.items()}
    if len(set(shapes.values())) != 1 or len(arrays["fixed_images"].shape) != 4:
        raise ValueError(f"the arrays of `{name}` need one shape (pairs, d1, d2, d3); got {shapes}.")
    return arrays


# resample, XLA-compiled: the augmentation of an epoch's pairs (about 1.4 s a chapter 5 epoch
# eagerly on two CPU cores) then costs about a fifth; traced again only for a new shape.
_resample_compiled = tf.function(resample, jit_compile=True, autograph=False)


def augment_pairs(*, fixed, moving, fixed_label, moving_label, scale: float, seed) -> Dict[str, np.ndarray]:
    """Random affine augmentation, the same transform for an image and its label.

    Each fixed image is warped together with its fixed label by one random
    affine, and each moving image with its moving label by another (drawn with
    :func:`~tutorial_utils.warp.random_transform_generator` of ``scale``, applied
    about the volume's centre, trilinear, zero outside).

    Parameters
    ----------
    fixed, moving, fixed_label, moving_label : array ``(pairs, d1, d2, d3)``
    scale : float
        Size of the random affines (0 returns copies).
    seed : int or sequence of int
        Seed of the transforms (e.g. ``(seed, epoch)``): same seed, same augmentation.

    Returns
    -------
    dict with the four arrays, augmented, same shapes, float32, under the keys
    ``fixed``, ``moving``, ``fixed_label``, ``moving_label``.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.random.default_rng(0).random((2, 8, 8, 8), dtype=np.float32)
    >>> out = augment_pairs(fixed=image, moving=image, fixed_label=image, moving_label=image,
    ...                     scale=0.1, seed=(0, 1))
    >>> bool(np.allclose(out["fixed"], out["fixed_label"], atol=1e-6))  # label follows image
    True
    """
    arrays = {"fixed": fixed, "moving": moving, "fixed_label": fixed_label, "moving_label": moving_label}
    arrays = {name: np.asarray(array, dtype=np.float32) for name, array in arrays.items()}
    shapes = {name: array.shape for name, array in arrays.items()}
    if len(set(shapes.values())) != 1 or len(arrays["fixed"].shape) != 4:
        raise ValueError(f"the four arrays need one shape (pairs, d1, d2, d3), got {shapes}.")
    if scale == 0:
        return {name: array.copy() for name, array in arrays.items()}
    pairs, size = arrays["fixed"].shape[0], arrays["fixed"].shape[1:]
    grid = get_reference_grid(size)
    seed = [int(s) for s in np.atleast_1d(seed)]
    out = {}
    for stream, kind in ((0, "moving"), (1, "fixed")):
        theta = centre_affine(random_transform_generator(pairs, scale, seed=seed + [stream]), size)
        both = np.stack([arrays[kind], arrays[f"{kind}_label"]], -1)
        warped = _resample_compiled(both, warp_grid(grid, theta)).numpy()
        out[kind], out[f"{kind}_label"] = warped[..., 0], warped[..., 1]
    return {name: out[name] for name in arrays}


def get_strategy() -> tf.distribute.Strategy:
    """``MirroredStrategy`` over all GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def predict_ddf(model: tf.keras.Model, *, fixed, moving, batch_size: int = 1) -> np.ndarray:
    """One forward pass per pair: the predicted DDFs in voxels.

    Parameters
    ----------
    model : tf.keras.Model
        From :func:`~tutorial_utils.network.build_registration_network` (inputs
        ``[moving, fixed]``).
    fixed, moving : array ``(pairs, d1, d2, d3)``
    batch_size : int
        Pairs per forward pass.

    Returns
    -------
    ndarray ``(pairs, d1, d2, d3, 3)``, float32, on the fixed image's grid.

    Examples
    --------
    >>> import numpy as np
    >>> from tutorial_utils.network import build_registration_network
    >>> model = build_registration_network((8, 8, 8), initial_channels=2, levels=1)
    >>> image = np.zeros((3, 8, 8, 8), np.float32)
    >>> ddf = predict_ddf(model, fixed=image, moving=image)
    >>> ddf.shape, float(np.abs(ddf).max())  # untrained: the identity
    ((3, 8, 8, 8, 3), 0.0)
    """
    fixed = np.asarray(fixed, np.float32)
    moving = np.asarray(moving, np.float32)
    if fixed.shape != moving.shape or fixed.ndim != 4:
        raise ValueError(f"`fixed` {fixed.shape} and `moving` {moving.shape} need one shape "
                         "(pairs, d1, d2, d3).")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` is {batch_size}; it needs to be at least 1.")
    fields = [model([moving[i:i + batch_size, ..., None], fixed[i:i + batch_size, ..., None]],
                    training=False).numpy() for i in range(0, len(fixed), batch_size)]
    return np.concatenate(fields)


def evaluate_pairs(model: tf.keras.Model, pairs, config: LossConfig) -> Dict[str, float]:
    """Register every pair of ``pairs`` with ``model`` and average loss terms and Dice.

    Parameters
    ----------
    model : tf.keras.Model
    pairs : data.LungPairs or an object with the four pair arrays
    config : LossConfig

    Returns
    -------
    dict of floats: ``total``, ``image``, ``label``, ``deform`` (means over the
    pairs of :func:`combined_loss`) and ``dice``, the mean
    :func:`~tutorial_utils.metrics.binary_dice` of fixed and warped labels.
    """
    arrays = _pair_arrays(pairs, "pairs")
    ddf = predict_ddf(model, fixed=arrays["fixed_images"], moving=arrays["moving_images"])
    warped = warp(arrays["moving_images"], ddf).numpy()
    warped_label = warp(arrays["moving_labels"], ddf).numpy()
    terms = combined_loss(config, fixed=arrays["fixed_images"], warped=warped,
                          fixed_label=arrays["fixed_labels"], warped_label=warped_label, ddf=ddf)
    dice = [metrics.binary_dice(f, w) for f, w in zip(arrays["fixed_labels"], warped_label)]
    return {**{name: float(tf.reduce_mean(value)) for name, value in terms.items()},
            "dice": float(np.mean(dice))}


class TrainingCheckpoint:
    """The state of a training run, saved after each epoch and restored to resume.

    Model weights, optimiser state and the number of epochs done go into a
    ``tf.train.Checkpoint`` kept by a ``tf.train.CheckpointManager`` (the latest
    ``max_to_keep``); the history of losses and the loss configuration go beside
    them into ``history.json``. The same design as DeepReg's
    ``CheckpointManagerCallback``, without the Keras callback machinery.

    Create it under the ``tf.distribute`` strategy's scope that the model uses.
    Printing it shows the folder's name only, never the machine's absolute path.

    Parameters
    ----------
    directory : str or Path
        The folder (created on the first save).
    model : tf.keras.Model
    optimiser : tf.keras.optimizers.Optimizer
    max_to_keep : int
        Checkpoints kept on disk.
    """

    HISTORY_FILE = "history.json"

    def __init__(self, directory, *, model, optimiser, max_to_keep: int = 2):
        self.directory = Path(directory)
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=optimiser, epoch=self._epoch)
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(self.directory),
                                                   max_to_keep=max_to_keep)

    def __repr__(self) -> str:
        return f"TrainingCheckpoint({self.directory.name!r})"

    @property
    def holds_checkpoint(self) -> bool:
        """Whether the folder holds a saved state to resume from."""
        return bool(self._manager.latest_checkpoint)

    def saved_run(self) -> Optional[dict]:
        """The record of what the saved run was asked to do (see :func:`run_record`), read
        without restoring anything; None if the folder holds none (nothing saved yet, or
        saved by an older version of the package)."""
        history_file = self.directory / self.HISTORY_FILE
        if not history_file.exists():
            return None
        return json.loads(history_file.read_text()).get("run")

    def restore(self) -> Tuple[int, Optional[Dict[str, List[float]]]]:
        """Load the latest checkpoint, if any: ``(epochs done, history or None)``."""
        if not self._manager.latest_checkpoint:
            return 0, None
        self._checkpoint.restore(self._manager.latest_checkpoint)
        history_file = self.directory / self.HISTORY_FILE
        history = json.loads(history_file.read_text())["history"] if history_file.exists() else None
        return int(self._epoch.numpy()), history

    def save(self, epochs_done: int, history: Dict[str, List[float]], config: LossConfig,
             run: Optional[dict] = None) -> None:
        """Save the state after ``epochs_done`` epochs, with the history, the loss configuration
        and ``run``, the record of what the run was asked to do (:func:`run_record`)."""
        self._epoch.assign(int(epochs_done))
        self._manager.save(checkpoint_number=int(epochs_done))
        (self.directory / self.HISTORY_FILE).write_text(
            json.dumps({"history": history, "config": asdict(config), "run": run}))


def checkpoint_folder(name: str, *, fresh: bool = False) -> Path:
    """The folder ``checkpoints/<name>`` in the data cache (:func:`tutorial_utils.data.cache_dir`).

    Parameters
    ----------
    name : str
        A plain folder name, e.g. ``"lung_cpu"``.
    fresh : bool
        Delete what the folder holds first (train from scratch).

    Returns
    -------
    Path (absolute: pass it to :func:`fit`, show only its ``.name``).
    """
    from .data import cache_dir

    if not name or os.sep in name or "/" in name or name in (".", ".."):
        raise ValueError(f"`name` is {name!r}; it needs to be a plain folder name such as 'lung_cpu'.")
    folder = cache_dir() / "checkpoints" / name
    if fresh and folder.exists():
        shutil.rmtree(folder)
    return folder


def _fingerprint(arrays: Dict[str, np.ndarray]) -> dict:
    """Number and shape of the pairs, and a SHA-256 of (at most about 10^6 evenly strided values
    of) each array: cheap, and different for different data."""
    digest = hashlib.sha256()
    for name in PAIR_FIELDS:
        flat = arrays[name].reshape(-1)
        digest.update(np.ascontiguousarray(flat[::max(1, flat.size // 1_000_000)], np.float32).tobytes())
    shape = arrays["fixed_images"].shape
    return {"pairs": int(shape[0]), "shape": [int(s) for s in shape[1:]], "sha256": digest.hexdigest()[:16]}


def run_record(model: tf.keras.Model, *, train, valid, config: LossConfig, epochs: int, batch_size: int,
               learning_rate: float, augment_scale: float, seed: int) -> dict:
    """What a training run is asked to do, as saved beside its checkpoint (JSON types only).

    :func:`fit` resumes a checkpoint only when this record equals the saved one.

    Returns
    -------
    dict with ``loss`` (the :class:`LossConfig`'s fields), ``network`` (parameter count,
    input and output shapes, and a digest of the layers' kinds and weight shapes),
    ``data`` (``train``/``valid``: pairs, shape ``(d1, d2, d3)``, a fingerprint of the
    values) and ``setting`` (``epochs``, ``batch_size``, ``learning_rate``,
    ``augment_scale``, ``seed``).
    """
    layers = [[type(layer).__name__, [list(w.shape) for w in layer.weights]] for layer in model.layers]
    network = {"parameters": int(model.count_params()),
               "inputs": [list(tensor.shape) for tensor in model.inputs],
               "outputs": [list(tensor.shape) for tensor in model.outputs],
               "layers": hashlib.sha256(json.dumps(layers).encode()).hexdigest()[:16]}
    record = {"loss": asdict(config), "network": network,
              "data": {"train": _fingerprint(_pair_arrays(train, "train")),
                       "valid": _fingerprint(_pair_arrays(valid, "valid"))},
              "setting": {"epochs": int(epochs), "batch_size": int(batch_size),
                          "learning_rate": float(learning_rate), "augment_scale": float(augment_scale),
                          "seed": int(seed)}}
    return json.loads(json.dumps(record))  # tuples -> lists, as they come back from the file


def _differences(saved, asked, path="") -> List[str]:
    if isinstance(saved, dict) and isinstance(asked, dict):
        return [line for key in sorted(set(saved) | set(asked))
                for line in _differences(saved.get(key), asked.get(key), f"{path}.{key}" if path else key)]
    return [] if saved == asked else [f"{path}: saved {saved!r}, asked {asked!r}"]


def _check_resumable(checkpoint: "TrainingCheckpoint", record: dict) -> None:
    """Refuse to resume a checkpoint of another run (or of an unrecorded one)."""
    if not checkpoint.holds_checkpoint:
        return
    advice = ("to train what you asked for, start afresh with training.checkpoint_folder(name, fresh=True) "
              "or give `checkpoint_dir` another folder; to continue the saved run, call fit with its settings.")
    saved = checkpoint.saved_run()
    if saved is None:
        raise ValueError(f"`checkpoint_dir` ({checkpoint!r}) holds a checkpoint without a record of what its "
                         f"run was asked to do (an older version of the package), so resuming it could "
                         f"return another run; {advice}")
    differences = _differences(saved, record)
    if differences:
        raise ValueError(f"`checkpoint_dir` ({checkpoint!r}) holds another run than the one asked for: "
                         + "; ".join(differences) + f". {advice}")


HISTORY_KEYS = ("train_total", "train_image", "train_label", "train_deform",
                "valid_total", "valid_dice", "seconds", "train_seconds", "valid_seconds")


def _make_train_step(model, optimiser, config: LossConfig, strategy, batch_size: int):
    """A compiled step: one batch ``(fixed, moving, fixed_label, moving_label)`` -> summed terms.

    Traced once per :func:`fit` (build ``optimiser``'s variables first: a step that
    creates them is traced twice), without AutoGraph (no tensor-dependent Python
    control flow here; converting the losses and the network doubled the tracing
    time). Warping (image and label together, one 2-channel warp), the image and
    the deformation term run XLA-compiled (:func:`_warp_and_terms`: about ten times
    faster than the plain graph on a CPU); the network and the label loss do not
    (XLA's 3-D convolutions, and the wide Gaussian smoothing of
    ``"multi-scale-dice"``, are many times slower than oneDNN's on a CPU). Same
    formula as :func:`combined_loss`.
    """
    warp_and_terms = _warp_and_terms(config)
    label_loss = config.loss_functions()["label"]

    def replica_step(fixed, moving, fixed_label, moving_label):
        with tf.GradientTape() as tape:
            ddf = model([moving[..., None], fixed[..., None]], training=True)
            terms, warped_label = warp_and_terms(fixed, moving, moving_label, ddf)
            terms = _weighted({**terms, "label": label_loss(fixed_label, warped_label)}, config)
            loss = tf.nn.compute_average_loss(terms["total"], global_batch_size=batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimiser.apply_gradients(zip(gradients, model.trainable_variables))
        return {name: tf.nn.compute_average_loss(value, global_batch_size=batch_size)
                for name, value in terms.items()}

    @tf.function(autograph=False)
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in per_replica.items()}

    return train_step


def _warp_and_terms(config: LossConfig):
    """An XLA-compiled ``(fixed, moving, moving_label, ddf) -> ({"image", "deform"}, warped label)``:
    the moving image and label warped as two channels of one volume (one set of
    sampling weights and gathers), the image term of the warped image, the deformation term."""
    functions = config.loss_functions()

    @tf.function(jit_compile=True, autograph=False)
    def warp_and_terms(fixed, moving, moving_label, ddf):
        warped = warp(tf.stack([moving, moving_label], axis=-1), ddf)
        terms = {"image": functions["image"](fixed, warped[..., 0]), "deform": functions["deform"](ddf)}
        return terms, warped[..., 1]

    return warp_and_terms


def _train_epoch(train_step, arrays, strategy, *, batch_size, augment_scale, seed, epoch) -> Dict[str, float]:
    """Shuffle and augment the training pairs (seeded by ``(seed, epoch)``), one pass over them."""
    order = np.random.default_rng([seed, epoch]).permutation(len(arrays["fixed_images"]))
    augmented = augment_pairs(fixed=arrays["fixed_images"][order], moving=arrays["moving_images"][order],
                              fixed_label=arrays["fixed_labels"][order],
                              moving_label=arrays["moving_labels"][order],
                              scale=augment_scale, seed=[seed, epoch])
    batches = tf.data.Dataset.from_tensor_slices(
        tuple(augmented[name] for name in ("fixed", "moving", "fixed_label", "moving_label"))
    ).batch(batch_size, drop_remainder=True)
    sums: Dict[str, float] = {}
    steps = 0
    for batch in strategy.experimental_distribute_dataset(batches):
        for name, value in train_step(batch).items():
            sums[name] = sums.get(name, 0.0) + float(value)
        steps += 1
    return {name: total / steps for name, total in sums.items()}


def _check_fit_inputs(train, valid, *, epochs, batch_size) -> Dict[str, np.ndarray]:
    """The training arrays, after checking both splits, ``epochs`` and ``batch_size``."""
    arrays = _pair_arrays(train, "train")
    _pair_arrays(valid, "valid")
    count = len(arrays["fixed_images"])
    if int(batch_size) < 1 or count < int(batch_size):
        raise ValueError(f"`batch_size` is {batch_size}; it needs to be between 1 and the "
                         f"{count} training pairs.")
    if int(epochs) < 0:
        raise ValueError(f"`epochs` is {epochs}; it needs to be 0 or more.")
    return arrays


def _record_epoch(history, terms, validation, phases) -> None:
    """Append one epoch: its mean terms, its validation and its seconds, by phase and in all."""
    for name in ("total", "image", "label", "deform"):
        history[f"train_{name}"].append(terms[name])
    history["valid_total"].append(validation["total"])
    history["valid_dice"].append(validation["dice"])
    for name, seconds in phases.items():  # a history restored from an older run may lack them
        history.setdefault(f"{name}_seconds", []).append(seconds)
    history["seconds"].append(sum(phases.values()))


def fit(model: tf.keras.Model, *, train, valid, config: LossConfig, epochs: int, batch_size: int = 2,
        learning_rate: float = 1e-3, augment_scale: float = 0.05, seed: int = 0, checkpoint_dir=None,
        strategy: Optional[tf.distribute.Strategy] = None, progress: bool = True) -> Dict[str, List[float]]:
    """Train ``model`` on paired images; resume from ``checkpoint_dir`` if it holds this run.

    A checkpoint is resumed only when the saved run was asked for exactly what this
    call asks (:func:`run_record`: loss configuration, network, data, and the
    setting, ``epochs`` included); anything else is refused, never silently
    returned as if it were the run asked for.

    Each epoch shuffles the training pairs, augments them (:func:`augment_pairs`),
    takes one Adam step per batch on :func:`combined_loss`, then evaluates the
    validation pairs (:func:`evaluate_pairs`) and saves a :class:`TrainingCheckpoint`.

    Parameters
    ----------
    model : tf.keras.Model
        From :func:`~tutorial_utils.network.build_registration_network`, built
        under ``strategy.scope()``.
    train, valid : data.LungPairs
        Or any object with the float32 arrays ``fixed_images``, ``moving_images``,
        ``fixed_labels``, ``moving_labels``, each ``(pairs, d1, d2, d3)``.
    config : LossConfig
    epochs : int
        Total epochs. A run interrupted earlier continues up to this number when
        called again with the same arguments.
    batch_size : int
        Pairs per step, over all replicas (at most the number of training pairs).
    learning_rate : float
        Adam's learning rate.
    augment_scale : float
        Size of the random affine augmentation (0 for none).
    seed : int
        Seeds the shuffling and the augmentation of every epoch.
    checkpoint_dir : str or Path, optional
        Where to save the model, optimiser and history after every epoch
        (e.g. :func:`checkpoint_folder`).
    strategy : tf.distribute.Strategy, optional
        Default: :func:`get_strategy`.
    progress : bool
        Show an epoch bar (:func:`tutorial_utils.progress.progress_bar`) with the
        training loss and the validation Dice.

    Returns
    -------
    dict of lists, one value per epoch: ``train_total``, ``train_image``,
    ``train_label``, ``train_deform``, ``valid_total``, ``valid_dice``, ``seconds``
    (wall time of each epoch, its validation included, its checkpoint not), split
    into ``train_seconds`` (augmentation and the steps; the first epoch's includes
    tracing and compiling the step) and ``valid_seconds``.

    Raises
    ------
    ValueError
        If ``train`` or ``valid`` lack the four arrays or their shapes disagree,
        ``epochs`` is negative, there are fewer training pairs than ``batch_size``,
        or ``checkpoint_dir`` holds a checkpoint of another run (the message lists what
        differs) or one saved without a record (an older version): start afresh with
        ``checkpoint_folder(name, fresh=True)`` or use another folder.
    """
    arrays = _check_fit_inputs(train, valid, epochs=epochs, batch_size=batch_size)
    strategy = strategy or get_strategy()
    with strategy.scope():
        optimiser = tf.keras.optimizers.Adam(learning_rate)
        optimiser.build(model.trainable_variables)  # now, not inside the first step (traced twice)
        checkpoint = (None if checkpoint_dir is None else
                      TrainingCheckpoint(checkpoint_dir, model=model, optimiser=optimiser))
    record = run_record(model, train=train, valid=valid, config=config, epochs=epochs, batch_size=batch_size,
                        learning_rate=learning_rate, augment_scale=augment_scale, seed=seed)
    if checkpoint is not None:
        _check_resumable(checkpoint, record)  # before restoring: a refused run leaves the model alone
    start, history = checkpoint.restore() if checkpoint is not None else (0, None)
    history = history or {key: [] for key in HISTORY_KEYS}
    train_step = _make_train_step(model, optimiser, config, strategy, int(batch_size))
    description = "training" + (f" (resumed after epoch {start})" if start else "")
    bar = progress_bar(range(start, int(epochs)), total=int(epochs), initial=start,
                       description=description, disable=not progress)
    for epoch in bar:
        times = [time.perf_counter()]
        terms = _train_epoch(train_step, arrays, strategy, batch_size=int(batch_size),
                             augment_scale=augment_scale, seed=seed, epoch=epoch)
        times.append(time.perf_counter())
        validation = evaluate_pairs(model, valid, config)
        times.append(time.perf_counter())
        _record_epoch(history, terms, validation, {"train": times[1] - times[0], "valid": times[2] - times[1]})
        if checkpoint is not None:
            checkpoint.save(epoch + 1, history, config, run=record)
        bar.set_postfix(loss=terms["total"], valid_dice=validation["dice"])
    return history
