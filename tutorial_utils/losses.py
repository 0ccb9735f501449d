"""Loss functions for registration: intensity, label and deformation.

Shapes
------
Images and labels are ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``;
``y_true`` is the fixed image (or label) and ``y_pred`` the warped moving one.
A DDF is ``(batch, d1, d2, d3, 3)`` in voxels. Similarity and score functions
return one value per batch element, ``(batch,)``; the two dispatchers return a
scalar loss to minimise (the mean over the batch).

Similarities go up when images agree (NCC, LNCC, MI, Dice, Jaccard); losses go
down (SSD, cross-entropy, bending energy, gradient norms). The dispatchers turn
similarities into losses: ``1 - lncc`` and ``-gmi``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._tf import tf
from ._checks import as_float32 as _as_float32
from ._checks import check_rank, check_same_shape

__all__ = [
    "ssd",
    "global_ncc",
    "lncc",
    "global_mutual_information",
    "dice_score",
    "jaccard_index",
    "cross_entropy",
    "multi_scale_loss",
    "gaussian_smooth",
    "bending_energy",
    "gradient_norm",
    "dissimilarity_fn",
    "local_displacement_energy",
]

EPS = 1e-5


def _pair(y_true, y_pred, kind="image"):
    """Check and cast a fixed/warped pair; add a channel axis if there is none."""
    meaning = f"(batch, d1, d2, d3) or (batch, d1, d2, d3, channels) {kind}"
    check_rank(y_true, "y_true", [4, 5], meaning)
    check_rank(y_pred, "y_pred", [4, 5], meaning)
    check_same_shape(y_true, y_pred, "y_true", "y_pred")
    y_true = _as_float32(y_true, "y_true")
    y_pred = _as_float32(y_pred, "y_pred")
    if y_true.shape.rank == 4:
        y_true, y_pred = y_true[..., None], y_pred[..., None]
    return y_true, y_pred


# --------------------------------------------------------------------------
# intensity
# --------------------------------------------------------------------------
def ssd(y_true, y_pred) -> tf.Tensor:
    r"""Mean of squared differences.

    .. math:: \mathrm{SSD} = \frac{1}{N}\sum_{v} (y_\mathrm{true}(v) - y_\mathrm{pred}(v))^2

    over the ``N`` voxels and channels of each batch element.

    Returns ``(batch,)``; 0 for identical images.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    return tf.reduce_mean(tf.square(y_true - y_pred), axis=[1, 2, 3, 4])


def global_ncc(y_true, y_pred, eps: float = EPS) -> tf.Tensor:
    r"""Global normalised cross-correlation.

    .. math:: \mathrm{NCC} = \frac{\sum_v (t_v - \bar t)(p_v - \bar p)}
              {\sqrt{\sum_v (t_v - \bar t)^2 \sum_v (p_v - \bar p)^2} + \epsilon}

    over all voxels and channels of each batch element. Returns ``(batch,)`` in
    ``[-1, 1]``; 1 for images that are equal up to a positive linear intensity
    change, about 0 for a constant image (no division by zero).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    axes = [1, 2, 3, 4]
    true_centred = y_true - tf.reduce_mean(y_true, axis=axes, keepdims=True)
    pred_centred = y_pred - tf.reduce_mean(y_pred, axis=axes, keepdims=True)
    cross = tf.reduce_sum(true_centred * pred_centred, axis=axes)
    norms = tf.reduce_sum(tf.square(true_centred), axis=axes) * tf.reduce_sum(
        tf.square(pred_centred), axis=axes
    )
    return cross / (tf.sqrt(norms + eps * eps) + eps)


def _window_kernel(window_size: int, kernel_type: str) -> np.ndarray:
    """1-D window weights that sum to 1 (rectangular, triangular or Gaussian)."""
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"`window_size` is {window_size}; it needs to be a positive odd number.")
    if kernel_type == "rectangular":
        weights = np.ones(window_size)
    elif kernel_type == "triangular":
        half = window_size // 2
        weights = (half + 1.0) - np.abs(np.arange(-half, half + 1))
    elif kernel_type == "gaussian":
        sigma = window_size / 3.0 / 2.0  # the window spans +-3 sigma
        offsets = np.arange(window_size) - window_size // 2
        weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    else:
        raise ValueError(
            f"`kernel_type` is {kernel_type!r}; it needs to be 'rectangular', 'triangular' or 'gaussian'."
        )
    return (weights / weights.sum()).astype(np.float32)


# Kernels up to this many taps are applied as a weighted sum of shifted slices,
# which XLA fuses into a few passes (about ten times faster than XLA's conv3d on
# a CPU); wider ones (large Gaussian smoothing) use tf.nn.conv3d, which is the
# faster of the two without XLA.
_MAX_TAPS_AS_SLICES = 15


def _shifted_sum(volumes, kernel_1d):
    """Sum of weighted shifted copies: the separable correlation itself."""
    half = len(kernel_1d) // 2
    uniform = bool(np.all(kernel_1d == kernel_1d[0]))
    out = volumes
    for axis in (1, 2, 3):
        paddings = [[0, 0]] * 5
        paddings[axis] = [half, half]
        padded = tf.pad(out, paddings)
        length = tf.shape(out)[axis]
        taps = []
        for offset, weight in enumerate(kernel_1d):
            begin = [0, 0, 0, 0, 0]
            begin[axis] = offset
            extent = [-1, -1, -1, -1, -1]
            extent[axis] = length
            shifted = tf.slice(padded, begin, extent)
            taps.append(shifted if uniform else float(weight) * shifted)
        out = tf.add_n(taps)
        if uniform:
            out = out * float(kernel_1d[0])
    return out


def _separable_filter(volumes, kernel_1d) -> tf.Tensor:
    """Correlate each channel of ``(batch, d1, d2, d3, channels)`` with a separable
    kernel ``k(x) k(y) k(z)``, zero padding ('same' size)."""
    size = len(kernel_1d)
    if size <= _MAX_TAPS_AS_SLICES:
        return _shifted_sum(volumes, kernel_1d)
    channels = volumes.shape[-1]
    batch_channels = tf.transpose(volumes, [0, 4, 1, 2, 3])
    spatial = tf.shape(batch_channels)[2:]
    flat = tf.reshape(batch_channels, tf.concat([[-1], spatial, [1]], axis=0))
    kernel = tf.constant(kernel_1d, dtype=tf.float32)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[axis] = size
        flat = tf.nn.conv3d(flat, tf.reshape(kernel, shape), strides=[1] * 5, padding="SAME")
    out = tf.reshape(flat, tf.concat([[-1, channels], spatial], axis=0))
    return tf.transpose(out, [0, 2, 3, 4, 1])


def lncc(
    y_true, y_pred, window_size: int = 9, kernel_type: str = "rectangular", eps: float = EPS
) -> tf.Tensor:
    r"""Local normalised cross-correlation, averaged over voxels.

    With window weights :math:`w` (summing to 1) centred on voxel :math:`v`,
    local means :math:`\mu_t = w * t`, :math:`\mu_p = w * p`, and
    :math:`n` = ``window_size**3`` the window's voxel count,

    .. math::
        c_v = n\,(w * (t p) - \mu_t \mu_p),\quad
        s^t_v = n\,(w * t^2 - \mu_t^2),\quad
        s^p_v = n\,(w * p^2 - \mu_p^2),\quad
        \mathrm{LNCC} = \frac{1}{N}\sum_v \frac{c_v^2}{s^t_v s^p_v + \epsilon}

    (the squared local correlation; ``*`` is correlation with zero padding).
    Returns ``(batch,)`` in ``[0, 1]``: 1 for identical textured images, 0 where
    either window is constant, and finite (with finite gradients) everywhere.

    Parameters
    ----------
    window_size : int
        Odd window width in voxels (9 in the nonrigid chapter).
    kernel_type : {"rectangular", "triangular", "gaussian"}
        Shape of the window weights.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    kernel = _window_kernel(int(window_size), kernel_type)
    n = float(window_size) ** 3
    # The maps are stacked along the batch axis (not channels), so every shifted
    # slice in the filter moves contiguous memory; the fixed image's two maps are
    # filtered apart from the three that depend on y_pred, so that the backward
    # pass only filters those three.
    fixed_maps = _separable_filter(tf.concat([y_true, y_true * y_true], axis=0), kernel)
    moving_maps = _separable_filter(
        tf.concat([y_pred, y_pred * y_pred, y_true * y_pred], axis=0), kernel
    )
    mean_t, mean_tt = tf.split(fixed_maps, 2, axis=0)
    mean_p, mean_pp, mean_tp = tf.split(moving_maps, 3, axis=0)
    cross = n * (mean_tp - mean_t * mean_p)
    var_t = tf.maximum(n * (mean_tt - mean_t * mean_t), 0.0)
    var_p = tf.maximum(n * (mean_pp - mean_p * mean_p), 0.0)
    local = cross * cross / (var_t * var_p + eps)
    return tf.reduce_mean(local, axis=[1, 2, 3, 4])


def global_mutual_information(
    y_true, y_pred, num_bins: int = 23, sigma_ratio: float = 0.5, eps: float = EPS
) -> tf.Tensor:
    r"""Global mutual information with Gaussian Parzen windowing.

    Intensities are expected in ``[0, 1]`` (normalise first). Bin centres
    :math:`b_k` are ``num_bins`` evenly spaced points in ``[0, 1]``; each voxel
    contributes the soft membership :math:`W_k(x) \propto \exp(-(x-b_k)^2 / 2\sigma^2)`,
    :math:`\sigma` = ``sigma_ratio`` times the bin spacing, normalised over
    :math:`k`. Then

    .. math::
        p_{kl} = \frac{1}{N}\sum_v W_k(t_v) W_l(p_v),\quad
        \mathrm{MI} = \sum_{k,l} p_{kl}\,\log\frac{p_{kl} + \epsilon}{p_k\,p_l + \epsilon}

    with marginals :math:`p_k = \sum_l p_{kl}`. Returns ``(batch,)`` in nats:
    0 when either image is constant, larger when one image predicts the other.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if num_bins < 2:
        raise ValueError(f"`num_bins` is {num_bins}; it needs to be at least 2.")
    batch = tf.shape(y_true)[0]
    centres = tf.linspace(0.0, 1.0, num_bins)
    sigma = sigma_ratio / (num_bins - 1)

    def membership(values):
        flat = tf.reshape(values, [batch, -1, 1])
        weights = tf.exp(-0.5 * tf.square((flat - centres) / sigma))
        return weights / (tf.reduce_sum(weights, axis=-1, keepdims=True) + eps)

    w_true = membership(y_true)  # (batch, N, bins)
    w_pred = membership(y_pred)
    voxels = tf.cast(tf.shape(w_true)[1], tf.float32)
    joint = tf.einsum("bnk,bnl->bkl", w_true, w_pred) / voxels
    p_true = tf.reduce_sum(joint, axis=2, keepdims=True)
    p_pred = tf.reduce_sum(joint, axis=1, keepdims=True)
    ratio = (joint + eps) / (p_true * p_pred + eps)
    return tf.reduce_sum(joint * tf.math.log(ratio), axis=[1, 2])


# --------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------
def dice_score(y_true, y_pred, squared: bool = False, eps: float = EPS) -> tf.Tensor:
    r"""Soft Dice score.

    .. math:: \mathrm{Dice} = \frac{2 \sum_v t_v p_v + \epsilon}{\sum_v t_v + \sum_v p_v + \epsilon}

    over all voxels (and channels) of each batch element; labels are
    probabilities in ``[0, 1]``. With ``squared=True`` the denominator is
    :math:`\sum_v t_v^2 + \sum_v p_v^2` instead: identical for binary labels, but
    for soft (e.g. smoothed) labels it still gives exactly 1 for a label with
    itself, which is why the multi-scale loss uses it.
    Returns ``(batch,)``: 1 for a label with itself, about 0 for disjoint labels.
    """
    y_true, y_pred = _pair(y_true, y_pred, "label")
    axes = [1, 2, 3, 4]
    overlap = tf.reduce_sum(y_true * y_pred, axis=axes)
    if squared:
        total = tf.reduce_sum(tf.square(y_true), axis=axes) + tf.reduce_sum(tf.square(y_pred), axis=axes)
    else:
        total = tf.reduce_sum(y_true, axis=axes) + tf.reduce_sum(y_pred, axis=axes)
    return (2.0 * overlap + eps) / (total + eps)


def jaccard_index(y_true, y_pred, eps: float = EPS) -> tf.Tensor:
    r"""Soft Jaccard index (intersection over union).

    .. math:: J = \frac{\sum_v t_v p_v + \epsilon}{\sum_v t_v + \sum_v p_v - \sum_v t_v p_v + \epsilon}

    Returns ``(batch,)``; related to Dice by :math:`J = D / (2 - D)` for binary labels.
    """
    y_true, y_pred = _pair(y_true, y_pred, "label")
    axes = [1, 2, 3, 4]
    overlap = tf.reduce_sum(y_true * y_pred, axis=axes)
    union = tf.reduce_sum(y_true, axis=axes) + tf.reduce_sum(y_pred, axis=axes) - overlap
    return (overlap + eps) / (union + eps)


def cross_entropy(y_true, y_pred, eps: float = 1e-7) -> tf.Tensor:
    r"""Mean binary cross-entropy of a predicted label against the true one.

    .. math:: \mathrm{CE} = -\frac{1}{N}\sum_v \big(t_v \log p_v + (1 - t_v)\log(1 - p_v)\big)

    with :math:`p_v` clipped to ``[eps, 1 - eps]``. Returns ``(batch,)``, in nats;
    0 for a binary label with itself.
    """
    y_true, y_pred = _pair(y_true, y_pred, "label")
    y_pred = tf.clip_by_value(y_pred, eps, 1.0 - eps)
    loss = -(y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))
    return tf.reduce_mean(loss, axis=[1, 2, 3, 4])


def _gaussian_kernel_1d(sigma: float) -> np.ndarray:
    radius = max(1, int(3.0 * sigma + 0.5))  # as scipy.ndimage.gaussian_filter(truncate=3)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).astype(np.float32)


def gaussian_smooth(volume, sigma: float) -> tf.Tensor:
    """Separable Gaussian smoothing with standard deviation ``sigma`` voxels.

    The kernel is truncated at ``3 sigma`` and normalised; borders are zero
    padded. ``sigma = 0`` returns the input unchanged.

    Parameters
    ----------
    volume : tensor
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``.
    sigma : float
        Standard deviation in voxels.

    Returns
    -------
    tf.Tensor, same shape as ``volume``.
    """
    check_rank(volume, "volume", [4, 5], "(batch, d1, d2, d3) or (batch, d1, d2, d3, channels)")
    volume = _as_float32(volume, "volume")
    if sigma < 0:
        raise ValueError(f"`sigma` is {sigma}; it needs to be 0 or more (voxels).")
    if sigma == 0:
        return volume
    had_channels = volume.shape.rank == 5
    volume5 = volume if had_channels else volume[..., None]
    smoothed = _separable_filter(volume5, _gaussian_kernel_1d(float(sigma)))
    return smoothed if had_channels else smoothed[..., 0]


_LABEL_LOSSES = {
    "dice": lambda t, p: 1.0 - dice_score(t, p, squared=True),
    "jaccard": lambda t, p: 1.0 - jaccard_index(t, p),
    "cross-entropy": cross_entropy,
}


def multi_scale_loss(
    y_true, y_pred, loss_type: str = "dice", scales: Sequence[float] = (0, 1, 2, 4, 8, 16)
) -> tf.Tensor:
    """Label loss averaged over Gaussian-smoothed copies of both labels.

    Smoothing spreads a label's boundary, so misaligned labels that do not
    overlap at all still give a useful gradient: the usual loss for
    label-driven (weakly supervised) registration.

    Parameters
    ----------
    y_true, y_pred : tensor
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)`` labels in ``[0, 1]``.
    loss_type : {"dice", "jaccard", "cross-entropy"}
        ``dice`` uses ``1 - dice_score(squared=True)``, which stays 0 for a
        smoothed label with itself; ``jaccard`` uses ``1 - jaccard_index``.
    scales : sequence of float
        Gaussian standard deviations in voxels; 0 means unsmoothed.

    Returns
    -------
    tf.Tensor ``(batch,)``.
    """
    if loss_type not in _LABEL_LOSSES:
        raise ValueError(
            f"`loss_type` is {loss_type!r}; known label losses: {sorted(_LABEL_LOSSES)}."
        )
    if len(scales) == 0:
        raise ValueError("`scales` is empty; give at least one scale (0 for no smoothing).")
    y_true, y_pred = _pair(y_true, y_pred, "label")
    losses = [
        _LABEL_LOSSES[loss_type](gaussian_smooth(y_true, s), gaussian_smooth(y_pred, s))
        for s in scales
    ]
    return tf.add_n(losses) / float(len(losses))


# --------------------------------------------------------------------------
# deformation
# --------------------------------------------------------------------------
def _check_ddf(ddf, name="ddf"):
    shape = check_rank(ddf, name, [5], "(batch, d1, d2, d3, 3)")
    if shape[-1] != 3:
        raise ValueError(f"`{name}` has shape {shape}; its last axis must hold 3 displacements.")
    if any(size is not None and size < 5 for size in shape[1:4]):
        raise ValueError(
            f"`{name}` has shape {shape}; deformation energies need at least 5 voxels per axis."
        )
    return _as_float32(ddf, name)


def _central_differences(field):
    """Central differences along d1, d2, d3 on the interior (2 voxels cropped per axis).

    ``field`` is ``(batch, d1, d2, d3, c)``; each output is ``(batch, d1-2, d2-2, d3-2, c)``.
    """
    d_1 = (field[:, 2:, 1:-1, 1:-1] - field[:, :-2, 1:-1, 1:-1]) / 2.0
    d_2 = (field[:, 1:-1, 2:, 1:-1] - field[:, 1:-1, :-2, 1:-1]) / 2.0
    d_3 = (field[:, 1:-1, 1:-1, 2:] - field[:, 1:-1, 1:-1, :-2]) / 2.0
    return d_1, d_2, d_3


def _odd_extension(field, width: int):
    """Extend ``(batch, d1, d2, d3, c)`` by ``width`` voxels on each side of each spatial
    axis by odd reflection, ``f[-k] = 2 f[0] - f[k]`` (``numpy.pad(mode="reflect",
    reflect_type="odd")``): a linear extrapolation, exact for affine fields."""
    for axis in (1, 2, 3):
        size = field.shape[axis]

        def part(start, stop, field=field, axis=axis):
            index = [slice(None)] * 5
            index[axis] = slice(start, stop)
            return field[tuple(index)]

        low = 2.0 * part(0, 1) - tf.reverse(part(1, width + 1), [axis])
        high = 2.0 * part(size - 1, size) - tf.reverse(part(size - 1 - width, size - 1), [axis])
        field = tf.concat([low, field, high], axis=axis)
    return field


def bending_energy(ddf, include_border: bool = False) -> tf.Tensor:
    r"""Bending energy of a displacement field, by finite differences.

    .. math:: B = \frac{1}{3N}\sum_v \sum_{c=1}^{3} \Big(\sum_{i} (\partial_{ii} u_c)^2
              + 2\sum_{i<j} (\partial_{ij} u_c)^2\Big)

    i.e. the mean over voxels *and* the three displacement components (the
    normalisation of the original tutorial's toolkit, so that its weights carry
    over). Derivatives are in voxel units; second derivatives apply the
    first-derivative operator twice. A linear (affine) field has energy 0;
    ``u_1 = a x_1^2`` has energy ``4 a^2 / 3`` (away from the border).

    Parameters
    ----------
    ddf : tensor ``(batch, d1, d2, d3, 3)`` in voxels.
    include_border : bool
        ``False`` (default, the original toolkit's): central differences on the
        interior only, so the mean runs over the ``(d-4)^3`` voxels at least 2
        from every border, and the outer voxels are not penalised at all.
        ``True``: the field is first extended by 2 voxels beyond each border by
        odd reflection (``numpy.pad(..., mode="reflect", reflect_type="odd")``,
        a linear extrapolation, exact for affine fields), so the same formula
        is evaluated at every voxel and the mean runs over all ``d1 d2 d3``
        voxels: the border, where unpenalised fields fold most, is regularised
        too. The first derivatives there are the one-sided differences of
        :func:`numpy.gradient`, the ones
        :func:`tutorial_utils.metrics.jacobian_determinant` uses.

    Returns ``(batch,)``.

    Examples
    --------
    >>> import numpy as np
    >>> x1 = np.arange(8.0)[:, None, None] * np.ones((8, 8, 8))
    >>> ddf = np.zeros((1, 8, 8, 8, 3), np.float32); ddf[0, ..., 0] = 0.1 * x1 ** 2
    >>> round(float(bending_energy(ddf)[0]), 5)  # 4 a^2 / 3 with a = 0.1
    0.01333
    """
    ddf = _check_ddf(ddf)
    if include_border:
        ddf = _odd_extension(ddf, 2)
    d_1, d_2, d_3 = _central_differences(ddf)
    d_11, d_12, d_13 = _central_differences(d_1)
    _, d_22, d_23 = _central_differences(d_2)
    _, _, d_33 = _central_differences(d_3)
    energy = (
        tf.square(d_11) + tf.square(d_22) + tf.square(d_33)
        + 2.0 * (tf.square(d_12) + tf.square(d_13) + tf.square(d_23))
    )
    return tf.reduce_mean(energy, axis=[1, 2, 3, 4])


def gradient_norm(ddf, norm: str = "l2", include_border: bool = False) -> tf.Tensor:
    r"""Mean L1 or squared-L2 norm of the displacement gradient.

    .. math:: G_{L2} = \frac{1}{3N}\sum_v \sum_{c,i} (\partial_i u_c)^2,\qquad
              G_{L1} = \frac{1}{3N}\sum_v \sum_{c,i} |\partial_i u_c|

    (mean over voxels and the three components, summed over the three
    directions). A constant field (a translation) has 0; the field ``u = x A``
    has ``G_{L2} = \sum A_{ij}^2 / 3``.

    Parameters
    ----------
    ddf : tensor ``(batch, d1, d2, d3, 3)`` in voxels.
    norm : {"l1", "l2"}
    include_border : bool
        ``False`` (default): central differences on the interior (derivatives
        are not evaluated at the outer voxel of each side). ``True``: the field
        is extended by 1 voxel by odd reflection (linear extrapolation), so
        derivatives are evaluated at every voxel, equal to
        :func:`numpy.gradient`'s (one-sided at the two ends); mean over all voxels.

    Returns ``(batch,)``.
    """
    ddf = _check_ddf(ddf)
    if norm not in ("l1", "l2"):
        raise ValueError(f"`norm` is {norm!r}; it needs to be 'l1' or 'l2'.")
    if include_border:
        ddf = _odd_extension(ddf, 1)
    derivatives = tf.stack(_central_differences(ddf), axis=-1)  # (..., component, direction)
    per_voxel = tf.abs(derivatives) if norm == "l1" else tf.square(derivatives)
    return tf.reduce_mean(tf.reduce_sum(per_voxel, axis=-1), axis=[1, 2, 3, 4])


# --------------------------------------------------------------------------
# dispatchers, as named in the original tutorial
# --------------------------------------------------------------------------
_DISSIMILARITIES = {
    "ssd": ssd,
    "lncc": lambda t, p: 1.0 - lncc(t, p),
    "gmi": lambda t, p: -global_mutual_information(t, p),
}

_ENERGIES = {
    "bending": bending_energy,
    "gradient-l1": lambda ddf: gradient_norm(ddf, "l1"),
    "gradient-l2": lambda ddf: gradient_norm(ddf, "l2"),
}


def dissimilarity_fn(y_true, y_pred, name: str) -> tf.Tensor:
    """Image dissimilarity to minimise, as a scalar (mean over the batch).

    Parameters
    ----------
    y_true, y_pred : tensor
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``: fixed and warped images.
    name : {"ssd", "lncc", "gmi"}
        ``ssd`` returns :func:`ssd`; ``lncc`` returns ``1 - lncc`` (window 9,
        rectangular); ``gmi`` returns minus :func:`global_mutual_information`.
    """
    if name not in _DISSIMILARITIES:
        raise ValueError(f"`name` is {name!r}; known image dissimilarities: {sorted(_DISSIMILARITIES)}.")
    return tf.reduce_mean(_DISSIMILARITIES[name](y_true, y_pred))


def local_displacement_energy(ddf, name: str) -> tf.Tensor:
    """Deformation regulariser of a DDF, as a scalar (mean over the batch).

    Parameters
    ----------
    ddf : tensor ``(batch, d1, d2, d3, 3)`` in voxels.
    name : {"bending", "gradient-l1", "gradient-l2"}
    """
    if name not in _ENERGIES:
        raise ValueError(f"`name` is {name!r}; known deformation energies: {sorted(_ENERGIES)}.")
    return tf.reduce_mean(_ENERGIES[name](ddf))
