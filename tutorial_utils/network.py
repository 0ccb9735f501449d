"""A registration network for paired 3-D images, in the spirit of LocalNet / U-Net.

The network reads the moving and fixed images as two channels and outputs a
dense displacement field (or a stationary velocity field, integrated into one).
Its last layer starts at zero, so before any training it predicts the identity
transform (a zero DDF). Its size is set by two numbers, so one definition serves
a Colab GPU (e.g. 32 channels, 3 levels at 96x96x104) and a laptop CPU
(e.g. 8 channels, 2 levels at 48x48x52).
"""
from __future__ import annotations

from typing import Sequence


from ._tf import tf
from .warp import integrate_velocity

__all__ = ["build_registration_network"]


def _seeded(seed: int, name: str):
    """A Glorot-uniform initializer whose seed is derived from ``seed`` and the layer's name.

    Keras layers built without a seed draw one from Python's global ``random``
    module; seeding every initializer keeps the library off global state and
    makes the initial weights a function of ``seed`` alone.
    """
    import zlib

    return tf.keras.initializers.GlorotUniform(seed=(int(seed) * 7919 + zlib.crc32(name.encode())) % 2**31)


def _conv_block(tensor, channels: int, name: str, seed: int):
    for index in range(2):
        tensor = tf.keras.layers.Conv3D(
            channels, 3, padding="same", name=f"{name}_conv{index}",
            kernel_initializer=_seeded(seed, f"{name}_conv{index}"),
        )(tensor)
        tensor = tf.keras.layers.GroupNormalization(groups=min(4, channels), name=f"{name}_norm{index}")(tensor)
        tensor = tf.keras.layers.LeakyReLU(0.2, name=f"{name}_act{index}")(tensor)
    return tensor


class _IntegrateVelocity(tf.keras.layers.Layer):
    """Scaling and squaring as a Keras layer (so the network can output a velocity).

    Calls :func:`tutorial_utils.warp.integrate_velocity` (Arsigny et al. 2006):
    ``(batch, d1, d2, d3, 3)`` velocity in voxels -> DDF of the same shape in
    voxels, ``num_steps`` squarings; the field is extended from its border at
    each squaring, so a constant velocity gives that translation everywhere.
    """

    def __init__(self, num_steps: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.num_steps = num_steps

    def call(self, velocity):
        return integrate_velocity(velocity, self.num_steps)

    def get_config(self):
        return {**super().get_config(), "num_steps": self.num_steps}


def _checked_size(image_size, initial_channels: int, levels: int):
    """``image_size`` as a tuple of 3 int; a ``ValueError`` for sizes the network cannot take."""
    image_size = tuple(int(size) for size in image_size)
    if len(image_size) != 3:
        raise ValueError(f"`image_size` is {image_size}; it needs three sizes (d1, d2, d3).")
    if levels < 1 or initial_channels < 1:
        raise ValueError(f"`levels` ({levels}) and `initial_channels` ({initial_channels}) must be at least 1.")
    factor = 2 ** levels
    if any(size % factor for size in image_size):
        raise ValueError(
            f"`image_size` {image_size} is not divisible by 2**levels = {factor}; resample the images "
            f"(e.g. load_lung_pairs(size=...)) or use fewer levels."
        )
    return image_size


def build_registration_network(
    image_size: Sequence[int],
    initial_channels: int = 16,
    levels: int = 3,
    velocity: bool = False,
    name: str = "registration_network",
    seed: int = 0,
) -> tf.keras.Model:
    """An encoder-decoder that predicts a DDF from a moving and a fixed image.

    Architecture: ``levels`` encoder blocks (two 3x3x3 convolutions with group
    normalisation and leaky ReLU, then a stride-2 convolution halving the size
    and doubling the channels), a bottleneck block, and a decoder that upsamples
    (transposed convolution) and *adds* the encoder's features of the same size
    (additive skip connections, as in LocalNet). A final 3x3x3 convolution with
    zero-initialised weights and bias maps to 3 channels: the DDF in voxels.

    Parameters
    ----------
    image_size : sequence of 3 int
        ``(d1, d2, d3)``, each divisible by ``2**levels``.
    initial_channels : int
        Channels of the first level; level ``k`` has ``initial_channels * 2**k``.
    levels : int
        Number of down-sampling steps.
    velocity : bool
        Output a stationary velocity field and integrate it (scaling and
        squaring, :func:`tutorial_utils.warp.integrate_velocity`, 7 squarings)
        into the DDF.
    name : str
        The model's name.
    seed : int
        Seed of the initial weights (each layer's initializer is seeded from it
        and the layer's name; no global random state is read or changed).

    Returns
    -------
    tf.keras.Model
        Inputs ``[moving, fixed]``, each ``(batch, d1, d2, d3, 1)``; output the
        DDF ``(batch, d1, d2, d3, 3)`` in voxels.

    Raises
    ------
    ValueError
        If ``image_size`` is not three sizes divisible by ``2**levels``, or
        ``levels`` or ``initial_channels`` is below 1.

    Examples
    --------
    >>> model = build_registration_network((8, 8, 8), initial_channels=2, levels=1)
    >>> model.output_shape
    (None, 8, 8, 8, 3)
    """
    image_size = _checked_size(image_size, initial_channels, levels)
    moving = tf.keras.Input(image_size + (1,), name="moving")
    fixed = tf.keras.Input(image_size + (1,), name="fixed")
    tensor = tf.keras.layers.Concatenate(name="pair")([moving, fixed])

    skips = []
    for level in range(levels):
        channels = initial_channels * 2 ** level
        tensor = _conv_block(tensor, channels, f"down{level}", seed)
        skips.append(tensor)
        tensor = tf.keras.layers.Conv3D(
            channels * 2, 3, strides=2, padding="same", name=f"pool{level}",
            kernel_initializer=_seeded(seed, f"pool{level}"),
        )(tensor)
    tensor = _conv_block(tensor, initial_channels * 2 ** levels, "bottom", seed)
    for level in reversed(range(levels)):
        channels = initial_channels * 2 ** level
        tensor = tf.keras.layers.Conv3DTranspose(
            channels, 3, strides=2, padding="same", name=f"up{level}",
            kernel_initializer=_seeded(seed, f"up{level}"),
        )(tensor)
        tensor = tf.keras.layers.Add(name=f"skip{level}")([tensor, skips[level]])
        tensor = _conv_block(tensor, channels, f"dec{level}", seed)
    field = tf.keras.layers.Conv3D(
        3, 3, padding="same", kernel_initializer="zeros", bias_initializer="zeros",
        name="velocity" if velocity else "ddf_head",
    )(tensor)
    ddf = _IntegrateVelocity(name="ddf")(field) if velocity else field
    return tf.keras.Model(inputs=[moving, fixed], outputs=ddf, name=name)
