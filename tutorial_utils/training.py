"""Training and using a registration network on paired images.

The loss combines the three families of chapter 2, each with a weight:

    total = w_image * image_dissimilarity(fixed image, warped moving image)
          + w_label * multi-scale Dice loss(fixed label, warped moving label)
          + w_deform * bending energy (or gradient norm) of the DDF

With ``w_label = 0`` the training is unsupervised; with ``w_image = 0`` weakly
supervised; with both, combined. Images are ``(pairs, d1, d2, d3)`` float32
arrays (the fields of :class:`tutorial_utils.data.LungPairs`).

Where several GPUs are present, :func:`get_strategy` returns a
``tf.distribute.MirroredStrategy`` and :func:`fit` spreads each batch over them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._tf import tf
from . import losses, metrics
from .warp import Warping, centre_affine, get_reference_grid, random_transform_generator, resample, warp_grid

__all__ = ["LossConfig", "combined_loss", "augment_pairs", "get_strategy", "fit", "predict_ddf", "warp_with"]


@dataclass
class LossConfig:
    """Weights and choices of the combined training loss.

    Attributes
    ----------
    image_weight, label_weight, deform_weight : float
        Weights of the three terms (0 switches a term off).
    image_loss : {"ssd", "lncc"}
    label_scales : tuple of float
        Gaussian scales (voxels) of the multi-scale Dice loss.
    deform_loss : {"bending", "gradient-l1", "gradient-l2"}
    """

    image_weight: float = 1.0
    label_weight: float = 1.0
    deform_weight: float = 1.0
    image_loss: str = "ssd"
    label_scales: Tuple[float, ...] = (0, 1, 2, 4, 8)
    deform_loss: str = "bending"

    def __post_init__(self):
        if self.image_loss not in ("ssd", "lncc"):
            raise ValueError(f"`image_loss` is {self.image_loss!r}; use 'ssd' or 'lncc'.")
        if self.deform_loss not in ("bending", "gradient-l1", "gradient-l2"):
            raise ValueError(f"`deform_loss` is {self.deform_loss!r}; use 'bending', 'gradient-l1' or 'gradient-l2'.")
        if min(self.image_weight, self.label_weight, self.deform_weight) < 0:
            raise ValueError("loss weights must be 0 or positive.")
        if self.image_weight == 0 and self.label_weight == 0:
            raise ValueError("both the image and the label weight are 0: nothing would drive the registration.")


def combined_loss(fixed_image, warped_image, fixed_label, warped_label, ddf, config: LossConfig) -> Dict[str, tf.Tensor]:
    """The weighted training loss and its (unweighted) terms, per pair.

    Parameters
    ----------
    fixed_image, warped_image, fixed_label, warped_label : tensor ``(batch, d1, d2, d3)``
    ddf : tensor ``(batch, d1, d2, d3, 3)``
    config : LossConfig

    Returns
    -------
    dict of ``(batch,)`` tensors: ``image``, ``label``, ``deform`` (unweighted) and
    ``total`` (weighted sum).
    """
    if config.image_loss == "ssd":
        image_term = losses.ssd(fixed_image, warped_image)
    else:
        image_term = 1.0 - losses.lncc(fixed_image, warped_image)
    label_term = losses.multi_scale_loss(fixed_label, warped_label, "dice", config.label_scales)
    if config.deform_loss == "bending":
        deform_term = losses.bending_energy(ddf)
    else:
        deform_term = losses.gradient_norm(ddf, config.deform_loss.split("-")[1])
    total = (config.image_weight * image_term + config.label_weight * label_term
             + config.deform_weight * deform_term)
    return {"total": total, "image": image_term, "label": label_term, "deform": deform_term}


def augment_pairs(moving_images, fixed_images, moving_labels, fixed_labels, scale: float, seed) -> Tuple[np.ndarray, ...]:
    """Random affine augmentation, the same transform for an image and its label.

    Each moving image is warped together with its moving label by one random
    affine, and each fixed image with its fixed label by another (drawn with
    :func:`~tutorial_utils.warp.random_transform_generator` of ``scale``, applied
    about the volume's centre).

    Parameters
    ----------
    moving_images, fixed_images, moving_labels, fixed_labels : array ``(pairs, d1, d2, d3)``
    scale : float
        Size of the random affines (0 returns copies).
    seed : int or sequence of int
        Seed of the transforms (e.g. ``(seed, epoch)``): same seed, same augmentation.

    Returns
    -------
    The four arrays, augmented, same shapes, float32.
    """
    arrays = [np.asarray(a, dtype=np.float32) for a in (moving_images, fixed_images, moving_labels, fixed_labels)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(arrays[0].shape) != 4:
        raise ValueError(f"the four arrays need one shape (pairs, d1, d2, d3), got {[a.shape for a in arrays]}.")
    if scale == 0:
        return tuple(a.copy() for a in arrays)
    pairs = arrays[0].shape[0]
    size = arrays[0].shape[1:]
    grid = get_reference_grid(size)
    seed = [int(s) for s in np.atleast_1d(seed)]
    theta_moving = centre_affine(random_transform_generator(pairs, scale, seed=seed + [0]), size)
    theta_fixed = centre_affine(random_transform_generator(pairs, scale, seed=seed + [1]), size)
    loc_moving = warp_grid(grid, theta_moving)
    loc_fixed = warp_grid(grid, theta_fixed)
    moving = resample(np.stack([arrays[0], arrays[2]], -1), loc_moving).numpy()
    fixed = resample(np.stack([arrays[1], arrays[3]], -1), loc_fixed).numpy()
    return moving[..., 0], fixed[..., 0], moving[..., 1], fixed[..., 1]


def get_strategy() -> tf.distribute.Strategy:
    """``MirroredStrategy`` over all GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def warp_with(ddf, volume) -> tf.Tensor:
    """Warp ``(batch, d1, d2, d3)`` volumes with a DDF ``(batch, d1, d2, d3, 3)``."""
    return Warping(tuple(ddf.shape[1:4]))(inputs=[ddf, volume])


def predict_ddf(model: tf.keras.Model, moving_images, fixed_images, batch_size: int = 1) -> np.ndarray:
    """One forward pass per pair: the predicted DDFs ``(pairs, d1, d2, d3, 3)`` in voxels."""
    moving = np.asarray(moving_images, np.float32)[..., None]
    fixed = np.asarray(fixed_images, np.float32)[..., None]
    return np.concatenate([model([moving[i:i + batch_size], fixed[i:i + batch_size]], training=False).numpy()
                           for i in range(0, len(moving), batch_size)])


def _evaluate(model, pairs, config: LossConfig) -> Dict[str, float]:
    moving_images, fixed_images, moving_labels, fixed_labels = pairs
    ddf = predict_ddf(model, moving_images, fixed_images)
    warped_images = warp_with(ddf, moving_images).numpy()
    warped_labels = warp_with(ddf, moving_labels).numpy()
    terms = combined_loss(fixed_images, warped_images, fixed_labels, warped_labels, ddf, config)
    dice = [metrics.binary_dice(f, w) for f, w in zip(fixed_labels, warped_labels)]
    return {**{k: float(tf.reduce_mean(v)) for k, v in terms.items()}, "dice": float(np.mean(dice))}


def fit(
    model: tf.keras.Model,
    train_pairs: Sequence[np.ndarray],
    valid_pairs: Sequence[np.ndarray],
    config: LossConfig,
    *,
    epochs: int,
    batch_size: int = 2,
    learning_rate: float = 1e-3,
    augment_scale: float = 0.05,
    seed: int = 0,
    checkpoint_dir: Optional[str] = None,
    strategy: Optional[tf.distribute.Strategy] = None,
    progress: bool = True,
) -> Dict[str, List[float]]:
    """Train ``model`` on paired images; resume from ``checkpoint_dir`` if it holds a checkpoint.

    Parameters
    ----------
    model : tf.keras.Model
        From :func:`~tutorial_utils.network.build_registration_network`, built
        under ``strategy.scope()``.
    train_pairs, valid_pairs : 4 arrays each
        ``(moving_images, fixed_images, moving_labels, fixed_labels)``, each
        ``(pairs, d1, d2, d3)``.
    config : LossConfig
    epochs : int
        Total epochs (a resumed run continues up to this number).
    batch_size : int
        Pairs per step, over all replicas.
    learning_rate : float
        Adam's learning rate.
    augment_scale : float
        Size of the random affine augmentation (0 for none).
    seed : int
        Seeds the shuffling and the augmentation of every epoch.
    checkpoint_dir : str, optional
        Where to save the model, optimiser and history after every epoch.
    strategy : tf.distribute.Strategy, optional
        Default: :func:`get_strategy`.

    Returns
    -------
    dict of lists, one value per epoch: ``train_total``, ``train_image``,
    ``train_label``, ``train_deform``, ``valid_total``, ``valid_dice``, ``seconds``.
    """
    from tqdm.auto import tqdm

    strategy = strategy or get_strategy()
    train_pairs = [np.asarray(a, np.float32) for a in train_pairs]
    count = len(train_pairs[0])
    if count < batch_size:
        raise ValueError(f"{count} training pairs are fewer than `batch_size` = {batch_size}.")
    with strategy.scope():
        optimiser = tf.keras.optimizers.Adam(learning_rate)
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimiser, epoch=epoch_counter)
    history: Dict[str, List[float]] = {key: [] for key in (
        "train_total", "train_image", "train_label", "train_deform", "valid_total", "valid_dice", "seconds")}
    manager = None
    if checkpoint_dir is not None:
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint)
            history_file = Path(checkpoint_dir) / "history.json"
            if history_file.exists():
                history = json.loads(history_file.read_text())["history"]
    size = tuple(train_pairs[0].shape[1:])
    warping = Warping(size)

    def replica_step(moving_image, fixed_image, moving_label, fixed_label):
        with tf.GradientTape() as tape:
            ddf = model([moving_image[..., None], fixed_image[..., None]], training=True)
            warped_image = warping(inputs=[ddf, moving_image])
            warped_label = warping(inputs=[ddf, moving_label])
            terms = combined_loss(fixed_image, warped_image, fixed_label, warped_label, ddf, config)
            loss = tf.nn.compute_average_loss(terms["total"], global_batch_size=batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimiser.apply_gradients(zip(gradients, model.trainable_variables))
        return {k: tf.nn.compute_average_loss(v, global_batch_size=batch_size) for k, v in terms.items()}

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    start_epoch = int(epoch_counter.numpy())
    bar = tqdm(range(start_epoch, epochs), desc="training", disable=not progress, initial=start_epoch, total=epochs)
    for epoch in bar:
        started = time.perf_counter()
        order = np.random.default_rng([seed, epoch]).permutation(count)
        augmented = augment_pairs(*(a[order] for a in train_pairs), scale=augment_scale, seed=[seed, epoch])
        dataset = tf.data.Dataset.from_tensor_slices(tuple(augmented)).batch(batch_size, drop_remainder=True)
        sums: Dict[str, float] = {}
        steps = 0
        for batch in strategy.experimental_distribute_dataset(dataset):
            for key, value in train_step(batch).items():
                sums[key] = sums.get(key, 0.0) + float(value)
            steps += 1
        for key in ("total", "image", "label", "deform"):
            history[f"train_{key}"].append(sums[key] / steps)
        validation = _evaluate(model, valid_pairs, config)
        history["valid_total"].append(validation["total"])
        history["valid_dice"].append(validation["dice"])
        history["seconds"].append(time.perf_counter() - started)
        epoch_counter.assign(epoch + 1)
        if manager is not None:
            manager.save()
            (Path(checkpoint_dir) / "history.json").write_text(
                json.dumps({"history": history, "config": asdict(config)}))
        bar.set_postfix(loss=f"{history['train_total'][-1]:.4f}", valid_dice=f"{validation['dice']:.3f}")
    return history
