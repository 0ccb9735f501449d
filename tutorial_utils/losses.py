"""Loss functions for registration: intensity, label and deformation.

Shapes and argument order
-------------------------
Images and labels are ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``.
Every function comparing two of them takes ``(fixed, warped)`` positionally,
fixed first: ``fixed`` is the fixed image (or label) and ``warped`` the moving
one warped onto the fixed grid. A DDF is ``(batch, d1, d2, d3, 3)`` in voxels.
Similarities, scores and penalties return one value per batch element,
``(batch,)``.

One lookup
----------
:func:`get_loss` returns any loss by name as a callable giving per-pair
``(batch,)`` values *to minimise* (``"lncc"`` is ``1 - lncc``, ``"gmi"`` is
``-MI``, ...); :data:`LOSS_NAMES` lists the names by kind. The dispatchers
:func:`dissimilarity_fn` and :func:`local_displacement_energy` return its batch
mean.

Intensity ranges
----------------
SSD, NCC and LNCC take images in any units (CT in HU, MR scanner units, any
integer or float dtype) and give their formula's value to float32 precision:
SSD and NCC subtract one voxel's value in the input's own precision first (NCC
also standardises, so it ignores offset and scale), and LNCC computes its
window moments in float64. LNCC's zero padding makes it sensitive to an
intensity offset near the borders: see :func:`lncc`. Mutual information
(Parzen bins on ``[0, 1]``) and the label losses (probabilities in ``[0, 1]``)
assume a range and check it: called eagerly, values outside raise a
``ValueError`` that names the argument, the range found and the fix. Inside a
``tf.function`` (with or without ``jit_compile``) a value cannot raise, so the
loss of that batch element is NaN instead, which shows in the loss history.

Examples
--------
>>> import numpy as np
>>> fixed = np.linspace(0, 1, 4 * 6 * 6 * 6).reshape(4, 6, 6, 6) ** 2
>>> loss = get_loss("ncc")
>>> loss(fixed, fixed).shape
TensorShape([4])
>>> round(float(loss(fixed, 1000 + 3000 * fixed)[0]), 4)  # any offset and scale
0.0
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

import numpy as np

from . import fields as _fields
from ._tf import tf
from ._checks import as_float32 as _as_float32
from ._checks import check_rank, check_same_shape

__all__ = [
    "ssd",
    "global_ncc",
    "lncc",
    "window_moments",
    "global_mutual_information",
    "dice_score",
    "jaccard_index",
    "cross_entropy",
    "multi_scale_loss",
    "gaussian_smooth",
    "bending_energy",
    "gradient_norm",
    "folding_penalty",
    "get_loss",
    "LOSS_NAMES",
    "MIN_DEFORMATION_SIZE",
    "dissimilarity_fn",
    "local_displacement_energy",
]

EPS = 1e-5
# values this far outside [0, 1] are accepted (rounding in interpolation and smoothing)
_LABEL_TOLERANCE = 1e-3
_IMAGE_TOLERANCE = 1e-2
_TINY = 1e-20  # guards NCC's 1/std of a constant image (its centred values are exactly 0)
_WIDE_DTYPES = (tf.float64, tf.int32, tf.int64, tf.uint32, tf.uint64)
_MEANING = "(batch, d1, d2, d3) or (batch, d1, d2, d3, channels)"


def _as_numeric(value, name):
    tensor = tf.convert_to_tensor(value)
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer or tensor.dtype == tf.bool):
        raise ValueError(f"`{name}` has dtype {tensor.dtype.name}; it needs a numeric dtype.")
    return tensor


def _pair(fixed, warped, kind="image"):
    """Check a fixed/warped pair; keep their dtypes; add a channel axis if there is none."""
    check_rank(fixed, "fixed", [4, 5], f"{_MEANING} {kind}")
    check_rank(warped, "warped", [4, 5], f"{_MEANING} {kind}")
    check_same_shape(fixed, warped, "fixed", "warped")
    fixed, warped = _as_numeric(fixed, "fixed"), _as_numeric(warped, "warped")
    if fixed.shape.rank == 4:
        fixed, warped = fixed[..., None], warped[..., None]
    return fixed, warped


def _minus(volume, reference) -> tf.Tensor:
    """``volume - reference`` as float32, subtracted in float64 for wide dtypes.

    ``reference`` is one voxel's value per batch element and channel: removing it
    before the cast keeps the texture of images with a large offset (1000 + x in
    float64 would lose x's last 4 digits in float32); a constant image becomes
    exactly 0.
    """
    wide = volume.dtype in _WIDE_DTYPES or reference.dtype in _WIDE_DTYPES
    work = tf.float64 if wide else tf.float32
    return tf.cast(tf.cast(volume, work) - tf.cast(reference, work), tf.float32)


def _first_voxel(volume) -> tf.Tensor:
    return tf.stop_gradient(volume[:, :1, :1, :1, :])


def _range_ok(volume, name, what, tolerance, fix):
    """Check that ``volume`` lies in ``[0, 1]`` (up to ``tolerance``).

    Eagerly, raise a ``ValueError`` if not and return ``None``. Inside a graph
    (``tf.function``, XLA), where a value cannot raise, return a ``(batch,)``
    boolean tensor, True where the batch element is in range (NaN is not).
    """
    values = tf.cast(volume, tf.float32)
    axes = list(range(1, values.shape.rank))
    lowest = tf.reduce_min(values, axis=axes)
    highest = tf.reduce_max(values, axis=axes)
    inside = (lowest >= -tolerance) & (highest <= 1.0 + tolerance)
    if not tf.executing_eagerly():
        return inside
    if not bool(tf.reduce_all(inside)):
        low, high = float(tf.reduce_min(lowest)) + 0.0, float(tf.reduce_max(highest)) + 0.0
        found = f"[{low:.6g}, {high:.6g}]"
        raise ValueError(
            f"`{name}` has values in {found}, but {what} needs values in [0, 1]; {fix}"
        )
    return None


_LABEL_FIX = (
    "a label is a probability of being inside the structure: divide a 0/255 mask by "
    "255, or pick one structure of a label map with (label == k)."
)
_IMAGE_FIX = (
    "rescale the image first, e.g. (x - x.min()) / (x.max() - x.min()), or clip CT to an "
    "intensity window (e.g. [-200, 300] HU) and rescale that window to [0, 1]."
)


def _check_labels(fixed, warped, what):
    """Range checks of a label pair (see :func:`_range_ok`); returns the graph flags."""
    return [
        _range_ok(fixed, "fixed", what, _LABEL_TOLERANCE, _LABEL_FIX),
        _range_ok(warped, "warped", what, _LABEL_TOLERANCE, _LABEL_FIX),
    ]


def _guard(value, flags):
    """NaN for the batch elements whose graph-mode range flag is False."""
    flags = [flag for flag in flags if flag is not None]
    if not flags:
        return value
    inside = tf.reduce_all(tf.stack(flags), axis=0)
    return tf.where(inside, value, tf.constant(np.nan, value.dtype))


def _mask_for(mask, fixed):
    """``mask`` as float32 ``(batch or 1, d1, d2, d3, 1 or channels)`` to weight ``fixed``'s
    voxels (``fixed`` already has its channel axis), checked.

    Eagerly, a mask with a negative or non-finite value, or one with no
    nonzero voxel in a batch element, raises a ``ValueError``; inside a graph
    an empty mask gives NaN for that batch element (0 / 0), which shows in the
    loss history.
    """
    shape = check_rank(mask, "mask", [4, 5], "(batch, d1, d2, d3) or (batch, d1, d2, d3, channels)")
    mask = _as_float32(mask, "mask")
    if len(shape) == 4:
        mask = mask[..., None]
    wanted = tuple(fixed.shape)
    if (tuple(mask.shape[1:4]) != wanted[1:4] or mask.shape[0] not in (1, wanted[0])
            or mask.shape[-1] not in (1, wanted[-1])):
        raise ValueError(
            f"`mask` has shape {shape}, but the images are {wanted[:4]} (channels {wanted[-1]}); "
            "it needs the images' grid, with their batch (or 1) and their channels (or none)."
        )
    if tf.executing_eagerly():
        values = mask.numpy()
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise ValueError("`mask` has negative or non-finite values; it needs weights >= 0 (1 = counted).")
        empty = np.flatnonzero(values.reshape(values.shape[0], -1).sum(axis=1) == 0)
        if empty.size:
            raise ValueError(
                f"`mask` has no nonzero voxel in batch element(s) {empty.tolist()}: there is nothing "
                "to compare (e.g. the transform moved every point outside the moving image)."
            )
    return mask


def _masked_mean(values, mask, axes=(1, 2, 3, 4)):
    """Mean of ``values`` over ``axes`` weighted by ``mask`` (broadcast to ``values``)."""
    weights = tf.broadcast_to(tf.cast(mask, values.dtype), tf.shape(values))
    return tf.reduce_sum(values * weights, axis=axes) / tf.reduce_sum(weights, axis=axes)


# --------------------------------------------------------------------------
# intensity
# --------------------------------------------------------------------------
def ssd(fixed, warped, mask=None) -> tf.Tensor:
    r"""Mean of squared differences.

    .. math:: \mathrm{SSD} = \frac{1}{N}\sum_{v} (f(v) - w(v))^2

    over the ``N`` voxels and channels of each batch element, for ``fixed``
    :math:`f` and ``warped`` :math:`w` in the same (any) intensity units.

    ``mask`` (optional, as deepali's losses take it): ``(batch, d1, d2, d3)``
    or ``(batch, d1, d2, d3, channels)`` weights >= 0 (a batch of 1 is
    shared); the mean then runs over the masked voxels,
    :math:`\sum_v m_v (f_v - w_v)^2 / \sum_v m_v` (e.g. the overlap of the
    moving image with the fixed grid). Intensities sampled at ``n`` scattered
    points (:func:`tutorial_utils.warp.resample_points`) are compared as
    ``(batch, n, 1, 1)`` volumes. Eagerly an empty mask raises a
    ``ValueError``; inside a graph it gives NaN.

    Returns ``(batch,)``; 0 for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.zeros((1, 2, 2, 2)); warped = np.full((1, 2, 2, 2), 3.0)
    >>> float(ssd(fixed, warped)[0])
    9.0
    """
    fixed, warped = _pair(fixed, warped)
    reference = _first_voxel(fixed)  # SSD is unchanged by a shift common to both
    difference = _minus(fixed, reference) - _minus(warped, reference)
    if mask is None:
        return tf.reduce_mean(tf.square(difference), axis=[1, 2, 3, 4])
    return _masked_mean(tf.square(difference), _mask_for(mask, fixed))


def global_ncc(fixed, warped, eps: float = EPS, mask=None) -> tf.Tensor:
    r"""Global normalised cross-correlation.

    .. math:: \mathrm{NCC} = \frac{\sum_v (f_v - \bar f)(w_v - \bar w)}
              {\sqrt{\sum_v (f_v - \bar f)^2 \sum_v (w_v - \bar w)^2} + \epsilon}

    over all voxels and channels of each batch element (Hill et al. 2001,
    Phys. Med. Biol. 46:R1). Returns ``(batch,)`` in ``[-1, 1]``; 1 for images
    that are equal up to a positive linear intensity change, 0 for a constant
    image (no division by zero). Each image is standardised first (shifted by
    one of its voxel values in its own precision, so a large offset such as CT's
    HU costs no accuracy, then centred and divided by its standard deviation), so
    ``eps`` is relative and the value does not depend on intensity offset or
    scale. With ``mask`` (weights, as in :func:`ssd`) the means, variances
    and sums run over the masked voxels only (weighted by the mask).

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.arange(27.0).reshape(1, 3, 3, 3)
    >>> round(float(global_ncc(fixed, -2 * fixed + 1000)[0]), 4)
    -1.0
    """
    fixed, warped = _pair(fixed, warped)
    axes = [1, 2, 3, 4]
    if mask is None:
        mean, total = tf.reduce_mean, tf.reduce_sum
    else:
        weights = tf.broadcast_to(_mask_for(mask, fixed), tf.shape(fixed))

        def mean(values, axis, keepdims=False):
            return tf.reduce_sum(values * weights, axis, keepdims) / tf.reduce_sum(weights, axis, keepdims)

        def total(values, axis):
            return tf.reduce_sum(values * weights, axis)

    def centred(volume):
        volume = _minus(volume, _first_voxel(volume))
        volume = volume - mean(volume, axis=axes, keepdims=True)
        variance = mean(tf.square(volume), axis=axes, keepdims=True)
        return volume * tf.math.rsqrt(variance + _TINY)

    fixed_centred, warped_centred = centred(fixed), centred(warped)
    cross = total(fixed_centred * warped_centred, axis=axes)
    norms = total(tf.square(fixed_centred), axis=axes) * total(tf.square(warped_centred), axis=axes)
    return cross / (tf.sqrt(norms + eps * eps) + eps)


def _window_kernel(window_size: int, kernel_type: str) -> np.ndarray:
    """1-D window weights that sum to 1 in float64 (rectangular, triangular or Gaussian)."""
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"`window_size` is {window_size}; it needs to be a positive odd number.")
    if kernel_type == "rectangular":
        weights = np.ones(window_size)
    elif kernel_type == "triangular":
        half = window_size // 2
        weights = (half + 1.0) - np.abs(np.arange(-half, half + 1))
    elif kernel_type == "gaussian":  # the package's one Gaussian kernel (normalised); +-3 sigma
        return _fields.gaussian_kernel_1d(window_size / 3.0 / 2.0, radius=window_size // 2)
    else:
        raise ValueError(
            f"`kernel_type` is {kernel_type!r}; it needs to be 'rectangular', 'triangular' or 'gaussian'."
        )
    # float64: in float32, 9 weights of 1/9 do not sum to 1 exactly, and a constant
    # window of 1000 would then show a variance of about 0.03
    return weights / weights.sum()


# Kernels up to this many taps are applied as a weighted sum of shifted slices,
# which XLA fuses into a few passes (about ten times faster than XLA's conv3d on
# a CPU); wider ones (large Gaussian smoothing) use tf.nn.conv3d, which is the
# faster of the two without XLA.
_MAX_TAPS_AS_SLICES = 15


def _shifted_copies(volumes, axis, taps):
    """The ``taps`` shifted copies of ``volumes`` along ``axis`` (zero padded):
    copy ``i`` at voxel ``x`` holds the value at ``x + i - taps // 2``."""
    half = taps // 2
    paddings = [[0, 0]] * 5
    paddings[axis] = [half, half]
    padded = tf.pad(volumes, paddings)
    length = tf.shape(volumes)[axis]
    copies = []
    for offset in range(taps):
        begin = [0, 0, 0, 0, 0]
        begin[axis] = offset
        extent = [-1, -1, -1, -1, -1]
        extent[axis] = length
        copies.append(tf.slice(padded, begin, extent))
    return copies


def _shifted_sum(volumes, kernel_1d):
    """Sum of weighted shifted copies: the separable correlation itself."""
    uniform = bool(np.all(kernel_1d == kernel_1d[0]))
    out = volumes
    for axis in (1, 2, 3):
        copies = _shifted_copies(out, axis, len(kernel_1d))
        if uniform:
            out = tf.add_n(copies) * float(kernel_1d[0])
        else:
            out = tf.add_n([float(w) * c for w, c in zip(kernel_1d, copies)])
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
    kernel = tf.constant(kernel_1d, dtype=volumes.dtype)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[axis] = size
        flat = tf.nn.conv3d(flat, tf.reshape(kernel, shape), strides=[1] * 5, padding="SAME")
    out = tf.reshape(flat, tf.concat([[-1, channels], spatial], axis=0))
    return tf.transpose(out, [0, 2, 3, 4, 1])


def _fixed_moments(fixed, kernel_1d):
    """The fixed image's window mean and variance (float64), the part of
    :func:`_local_moments` that does not depend on ``warped``."""
    fixed = tf.cast(fixed, tf.float64)
    mean_f, mean_ff = tf.split(
        _separable_filter(tf.concat([fixed, fixed * fixed], axis=0), np.asarray(kernel_1d, np.float64)),
        2, axis=0)
    return mean_f, tf.maximum(mean_ff - mean_f * mean_f, 0.0)


def window_moments(fixed, window_size: int = 9, kernel_type: str = "rectangular"):
    """The fixed image's LNCC window means and variances, to pass to :func:`lncc` as
    ``fixed_moments=`` when one fixed image is compared with many warped ones.

    An optimiser compares a new warped image with the same fixed image at every
    step; two of the five filtered maps of :func:`lncc` depend on the fixed
    image alone (about a third of its time per step), so they are computed once.

    Parameters
    ----------
    fixed : array-like ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``
    window_size, kernel_type
        The window that :func:`lncc` will be called with.

    Returns
    -------
    ``(mean, variance)``: float64 tensors ``(batch, d1, d2, d3, channels)``
    (a channel axis of 1 added for a 4-D ``fixed``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fixed, warped = rng.random((2, 1, 8, 8, 8))
    >>> moments = window_moments(fixed, window_size=5)
    >>> float(lncc(fixed, warped, window_size=5, fixed_moments=moments)[0]) == float(lncc(fixed, warped, window_size=5)[0])
    True
    """
    fixed, _ = _pair(fixed, fixed)
    return _fixed_moments(fixed, _window_kernel(int(window_size), kernel_type))


def _local_moments(fixed, warped, kernel_1d, fixed_moments=None):
    """Window means, variances and covariance of two volumes, in float64.

    Windows are ``k(x) k(y) k(z)`` with zero padding, as in the formula of
    :func:`lncc`. The moments are ``E[xy] - E[x] E[y]``: in float32 that
    cancellation made windows of a constant region (air at exactly -1000 HU)
    report rounding noise as texture, and the loss reached 4e7; in float64 about
    1e-16 of it is left, far below ``eps``. (A float32 two-pass form, pooling
    lines and planes with the law of total variance, was exact too but 30 times
    slower under XLA.) ``fixed_moments``: :func:`_fixed_moments` of ``fixed``,
    computed once by a caller that compares many warped images with one fixed
    image (:func:`window_moments`).

    Returns ``(mean_f, mean_w, var_f, var_w, cov)``, float64, shaped like ``fixed``.
    """
    kernel = np.asarray(kernel_1d, np.float64)
    mean_f, var_f = _fixed_moments(fixed, kernel) if fixed_moments is None else fixed_moments
    fixed, warped = tf.cast(fixed, tf.float64), tf.cast(warped, tf.float64)
    # The three maps that depend on ``warped`` are stacked along the batch axis
    # (not channels), so every shifted slice in the filter moves contiguous memory.
    warped_maps = _separable_filter(
        tf.concat([warped, warped * warped, fixed * warped], axis=0), kernel
    )
    mean_w, mean_ww, mean_fw = tf.split(warped_maps, 3, axis=0)
    var_w = tf.maximum(mean_ww - mean_w * mean_w, 0.0)
    return mean_f, mean_w, var_f, var_w, mean_fw - mean_f * mean_w


def lncc(
    fixed, warped, window_size: int = 9, kernel_type: str = "rectangular", eps: float = EPS, mask=None,
    fixed_moments=None,
) -> tf.Tensor:
    r"""Local normalised cross-correlation, averaged over voxels.

    With window weights :math:`w` (summing to 1) centred on voxel :math:`v`,
    local means :math:`\mu_f = w * f`, :math:`\mu_w = w * \tilde w`, and
    :math:`n` = ``window_size**3`` the window's voxel count,

    .. math::
        c_v = n\,(w * (f \tilde w) - \mu_f \mu_w),\quad
        s^f_v = n\,(w * f^2 - \mu_f^2),\quad
        s^w_v = n\,(w * \tilde w^2 - \mu_w^2),\quad
        \mathrm{LNCC} = \frac{1}{N}\sum_v \frac{c_v^2}{s^f_v s^w_v + \epsilon}

    for ``fixed`` :math:`f` and ``warped`` :math:`\tilde w` (the squared local
    correlation of Avants et al. 2008, Med. Image Anal. 12:26-41, as in
    DeepReg); ``*`` is correlation with **zero padding**. The window moments are
    computed in float64 from the inputs' own values (see ``_local_moments``), so
    the value is the formula's to float32 precision for any units and dtype.
    Returns ``(batch,)`` in ``[0, 1]``: 1 for identical textured images, 0 where
    both windows are constant, and finite (with finite gradients) everywhere.

    Intensity units: a common scale of either image does not change the value
    (beyond ``eps``, negligible unless the image's local contrast is below about
    1e-3), but an *offset* does near the borders, because the zero padding is an
    edge there unless the background is 0. So give images whose background is
    about 0: rescaled to ``[0, 1]``, MR as acquired, CT as ``HU + 1000`` or
    rescaled. (A constant image of 1000 against a textured one gives 0.875 on
    ``16**3`` voxels: the 7/8 of voxels whose window reaches the padding.)

    Parameters
    ----------
    fixed, warped : tensor
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``.
    window_size : int
        Odd window width in voxels (9 in the nonrigid chapter).
    kernel_type : {"rectangular", "triangular", "gaussian"}
        Shape of the window weights; the Gaussian window is the package's one
        kernel (:func:`tutorial_utils.fields.gaussian_kernel_1d`) with sigma
        ``window_size / 6``, cut at the window. The window sums keep their
        zero padding at the border (the formula above), unlike
        :func:`gaussian_smooth`'s edge replication: LNCC is defined by its
        local sums, and edge replication would invent texture there.
    mask : optional
        Weights as in :func:`ssd`: the mean over voxels of the local values
        runs over the masked voxels (the windows themselves are unchanged).
    fixed_moments : optional
        :func:`window_moments` of ``fixed`` with the same window, computed once
        by a caller that compares many warped images with one fixed image; the
        value is the same as without.

    Examples
    --------
    >>> import numpy as np
    >>> texture = np.sin(np.arange(8.0))[:, None, None] * np.cos(np.arange(8.0))
    >>> fixed = np.broadcast_to(texture, (8, 8, 8))[None]
    >>> round(float(lncc(fixed, 3000 * fixed)[0]), 4)
    1.0
    >>> float(lncc(np.zeros((1, 8, 8, 8)), fixed)[0])  # nothing to correlate
    0.0
    """
    fixed, warped = _pair(fixed, warped)
    kernel = _window_kernel(int(window_size), kernel_type)
    if fixed_moments is not None:
        fixed_moments = _checked_moments(fixed_moments, fixed)
    n = float(window_size) ** 3
    _, _, var_f, var_w, cov = _local_moments(fixed, warped, kernel, fixed_moments)
    cross = n * cov
    local = cross * cross / ((n * var_f) * (n * var_w) + eps)
    if mask is None:
        return tf.cast(tf.reduce_mean(local, axis=[1, 2, 3, 4]), tf.float32)
    return tf.cast(_masked_mean(local, _mask_for(mask, fixed)), tf.float32)


def _checked_moments(fixed_moments, fixed):
    """``fixed_moments`` as two float64 tensors shaped like ``fixed`` (with channels), or a ValueError."""
    if not isinstance(fixed_moments, (tuple, list)) or len(fixed_moments) != 2:
        raise ValueError("`fixed_moments` needs the (mean, variance) pair that window_moments(fixed) returns.")
    mean, variance = (tf.cast(m, tf.float64) for m in fixed_moments)
    if mean.shape != fixed.shape or variance.shape != fixed.shape:
        raise ValueError(
            f"`fixed_moments` have shapes {tuple(mean.shape)} and {tuple(variance.shape)}; they need "
            f"{tuple(fixed.shape)}, window_moments of this fixed image (with its channel axis)."
        )
    return mean, variance


def global_mutual_information(
    fixed, warped, num_bins: int = 23, sigma_ratio: float = 0.5, eps: float = EPS
) -> tf.Tensor:
    r"""Global mutual information with Gaussian Parzen windowing.

    Intensities must be in ``[0, 1]``: the bins cover that range, and an image in
    HU would fall in one bin and give an MI of about 0 with zero gradient, so
    other ranges raise a ``ValueError`` (NaN inside a ``tf.function``; see the
    module notes). Bin centres :math:`b_k` are ``num_bins`` evenly spaced points
    in ``[0, 1]``; each voxel contributes the soft membership
    :math:`W_k(x) \propto \exp(-(x-b_k)^2 / 2\sigma^2)`,
    :math:`\sigma` = ``sigma_ratio`` times the bin spacing, normalised over
    :math:`k`. Then

    .. math::
        p_{kl} = \frac{1}{N}\sum_v W_k(f_v) W_l(w_v),\quad
        \mathrm{MI} = \sum_{k,l} p_{kl}\,\log\frac{p_{kl} + \epsilon}{p_k\,p_l + \epsilon}

    with marginals :math:`p_k = \sum_l p_{kl}` (Mattes et al. 2003, IEEE TMI
    22:120-128). Returns ``(batch,)`` in nats: 0 when either image is constant,
    larger when one image predicts the other.

    Raises
    ------
    ValueError
        If either image has values outside ``[0, 1]`` (beyond 0.01), when eager.

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.linspace(0, 1, 64).reshape(1, 4, 4, 4)
    >>> float(global_mutual_information(fixed, fixed)[0]) > 2.0
    True
    """
    fixed, warped = _pair(fixed, warped)
    if num_bins < 2:
        raise ValueError(f"`num_bins` is {num_bins}; it needs to be at least 2.")
    what = "global_mutual_information (its Parzen bins cover [0, 1])"
    flags = [
        _range_ok(fixed, "fixed", what, _IMAGE_TOLERANCE, _IMAGE_FIX),
        _range_ok(warped, "warped", what, _IMAGE_TOLERANCE, _IMAGE_FIX),
    ]
    fixed, warped = _as_float32(fixed, "fixed"), _as_float32(warped, "warped")
    batch = tf.shape(fixed)[0]
    centres = tf.linspace(0.0, 1.0, num_bins)
    sigma = sigma_ratio / (num_bins - 1)

    def membership(values):
        flat = tf.reshape(values, [batch, -1, 1])
        weights = tf.exp(-0.5 * tf.square((flat - centres) / sigma))
        return weights / (tf.reduce_sum(weights, axis=-1, keepdims=True) + eps)

    w_fixed = membership(fixed)  # (batch, N, bins)
    w_warped = membership(warped)
    voxels = tf.cast(tf.shape(w_fixed)[1], tf.float32)
    # The one matrix product on tensors in the package (tests/graph_ops.py): on Ampere and
    # later GPUs TensorFlow rounds its inputs to TensorFloat-32 (about 1e-3 of each weight,
    # averaging out over the voxels). Elementwise, per bin, it took 4-5 times as long on a
    # CPU (32 x 128 x 128 with its gradient: 300 ms against 72 ms under XLA).
    joint = tf.einsum("bnk,bnl->bkl", w_fixed, w_warped) / voxels
    p_fixed = tf.reduce_sum(joint, axis=2, keepdims=True)
    p_warped = tf.reduce_sum(joint, axis=1, keepdims=True)
    ratio = (joint + eps) / (p_fixed * p_warped + eps)
    return _guard(tf.reduce_sum(joint * tf.math.log(ratio), axis=[1, 2]), flags)


# --------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------
def dice_score(fixed, warped, squared: bool = False, eps: float = EPS) -> tf.Tensor:
    r"""Soft Dice score.

    .. math:: \mathrm{Dice} = \frac{2 \sum_v f_v w_v + \epsilon}{\sum_v f_v + \sum_v w_v + \epsilon}

    over all voxels (and channels) of each batch element; labels are
    probabilities in ``[0, 1]`` (checked: see the module notes). With
    ``squared=True`` the denominator is :math:`\sum_v f_v^2 + \sum_v w_v^2`
    instead (Milletari et al. 2016, V-Net): identical for binary labels, but
    for soft (e.g. smoothed) labels it still gives exactly 1 for a label with
    itself, which is why the multi-scale loss uses it.
    Returns ``(batch,)``: 1 for a label with itself, about 0 for disjoint labels.

    Raises
    ------
    ValueError
        If either label has values outside ``[0, 1]``, when eager.

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.zeros((1, 4, 4, 4)); fixed[:, :2] = 1
    >>> warped = np.zeros((1, 4, 4, 4)); warped[:, 1:3] = 1
    >>> round(float(dice_score(fixed, warped)[0]), 4)
    0.5
    """
    fixed, warped = _pair(fixed, warped, "label")
    flags = _check_labels(fixed, warped, "dice_score")
    fixed, warped = _as_float32(fixed, "fixed"), _as_float32(warped, "warped")
    axes = [1, 2, 3, 4]
    overlap = tf.reduce_sum(fixed * warped, axis=axes)
    if squared:
        total = tf.reduce_sum(tf.square(fixed), axis=axes) + tf.reduce_sum(
            tf.square(warped), axis=axes
        )
    else:
        total = tf.reduce_sum(fixed, axis=axes) + tf.reduce_sum(warped, axis=axes)
    return _guard((2.0 * overlap + eps) / (total + eps), flags)


def jaccard_index(fixed, warped, eps: float = EPS) -> tf.Tensor:
    r"""Soft Jaccard index (intersection over union).

    .. math:: J = \frac{\sum_v f_v w_v + \epsilon}{\sum_v f_v + \sum_v w_v - \sum_v f_v w_v + \epsilon}

    Labels are probabilities in ``[0, 1]`` (checked, as in :func:`dice_score`).
    Returns ``(batch,)``; related to Dice by :math:`J = D / (2 - D)` for binary labels.

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.zeros((1, 4, 4, 4)); fixed[:, :2] = 1
    >>> warped = np.zeros((1, 4, 4, 4)); warped[:, 1:3] = 1
    >>> round(float(jaccard_index(fixed, warped)[0]), 4)
    0.3333
    """
    fixed, warped = _pair(fixed, warped, "label")
    flags = _check_labels(fixed, warped, "jaccard_index")
    fixed, warped = _as_float32(fixed, "fixed"), _as_float32(warped, "warped")
    axes = [1, 2, 3, 4]
    overlap = tf.reduce_sum(fixed * warped, axis=axes)
    union = tf.reduce_sum(fixed, axis=axes) + tf.reduce_sum(warped, axis=axes) - overlap
    return _guard((overlap + eps) / (union + eps), flags)


def cross_entropy(fixed, warped, eps: float = 1e-7) -> tf.Tensor:
    r"""Mean binary cross-entropy of the warped label against the fixed one.

    .. math:: \mathrm{CE} = -\frac{1}{N}\sum_v \big(f_v \log w_v + (1 - f_v)\log(1 - w_v)\big)

    with :math:`w_v` clipped to ``[eps, 1 - eps]``. Labels are probabilities in
    ``[0, 1]`` (checked, as in :func:`dice_score`). Returns ``(batch,)``, in
    nats; 0 for a binary label with itself.

    Examples
    --------
    >>> import numpy as np
    >>> fixed = np.ones((1, 2, 2, 2))
    >>> round(float(cross_entropy(fixed, np.full((1, 2, 2, 2), 0.5))[0]), 4)  # log 2
    0.6931
    """
    fixed, warped = _pair(fixed, warped, "label")
    flags = _check_labels(fixed, warped, "cross_entropy")
    fixed, warped = _as_float32(fixed, "fixed"), _as_float32(warped, "warped")
    warped = tf.clip_by_value(warped, eps, 1.0 - eps)
    loss = -(fixed * tf.math.log(warped) + (1.0 - fixed) * tf.math.log(1.0 - warped))
    return _guard(tf.reduce_mean(loss, axis=[1, 2, 3, 4]), flags)


def gaussian_smooth(volume, sigma: float) -> tf.Tensor:
    """Separable Gaussian smoothing with standard deviation ``sigma`` voxels.

    The package's one Gaussian smoothing, :func:`tutorial_utils.fields.smooth_tensor`:
    the kernel is truncated at ``4 sigma`` and normalised, and the volume is
    extended by repeating its edge voxel (the border rule of elastix's
    pyramids and of ``scipy.ndimage.gaussian_filter(mode="nearest")``, whose
    numbers it gives to float32 rounding). ``sigma = 0`` returns the input
    unchanged. (Until #18 it truncated at 3 sigma and zero padded, which
    darkened a label touching a face: a deliberate change of the numbers near
    the border.)

    Parameters
    ----------
    volume : tensor
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``.
    sigma : float
        Standard deviation in voxels.

    Returns
    -------
    tf.Tensor, same shape as ``volume``.

    Examples
    --------
    >>> import numpy as np
    >>> spike = np.zeros((1, 9, 9, 9)); spike[0, 4, 4, 4] = 1
    >>> round(float(tf.reduce_sum(gaussian_smooth(spike, 1.0))), 4)  # mass is kept
    1.0
    """
    check_rank(volume, "volume", [4, 5], _MEANING)
    volume = _as_float32(volume, "volume")
    if sigma < 0:
        raise ValueError(f"`sigma` is {sigma}; it needs to be 0 or more (voxels).")
    if sigma == 0:
        return volume
    return _fields.smooth_tensor(volume, float(sigma))


_MULTI_SCALE_LOSSES = ("dice", "jaccard", "cross-entropy")


def multi_scale_loss(
    fixed, warped, label_loss: str = "dice", scales: Sequence[float] = (0, 1, 2, 4, 8, 16)
) -> tf.Tensor:
    """Label loss averaged over Gaussian-smoothed copies of both labels.

    Smoothing spreads a label's boundary, so misaligned labels that do not
    overlap at all still give a useful gradient: the usual loss for
    label-driven (weakly supervised) registration (Hu et al. 2018, Med. Image
    Anal. 49:1-13).

    Parameters
    ----------
    fixed, warped : tensor
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)`` labels in ``[0, 1]``.
    label_loss : {"dice", "jaccard", "cross-entropy"}
        The label loss of :func:`get_loss` applied at each scale; ``dice`` uses
        ``squared=True``, which stays 0 for a smoothed label with itself.
        (Called ``loss_type`` until #18; positional calls are unchanged.)
    scales : sequence of float
        Gaussian standard deviations in voxels; 0 means unsmoothed. Smoothing
        is :func:`gaussian_smooth` (edge replication, truncated at 4 sigma;
        before #18 zero padding and 3 sigma, so the values of labels near the
        border changed, deliberately).

    Returns
    -------
    tf.Tensor ``(batch,)``, to minimise.

    Examples
    --------
    >>> import numpy as np
    >>> label = np.zeros((1, 8, 8, 8)); label[:, 2:6, 2:6, 2:6] = 1
    >>> round(float(multi_scale_loss(label, label, "dice", scales=(0, 1))[0]), 4)
    0.0
    """
    if label_loss not in _MULTI_SCALE_LOSSES:
        raise ValueError(
            f"`label_loss` is {label_loss!r}; known label losses: {list(_MULTI_SCALE_LOSSES)}."
        )
    if len(scales) == 0:
        raise ValueError("`scales` is empty; give at least one scale (0 for no smoothing).")
    fixed, warped = _pair(fixed, warped, "label")
    flags = _check_labels(fixed, warped, "multi_scale_loss")
    loss = get_loss(label_loss, **({"squared": True} if label_loss == "dice" else {}))
    terms = [loss(gaussian_smooth(fixed, s), gaussian_smooth(warped, s)) for s in scales]
    return _guard(tf.add_n(terms) / float(len(terms)), flags)


# --------------------------------------------------------------------------
# deformation
# --------------------------------------------------------------------------
#: The fewest voxels per axis the deformation energies take (central differences of
#: central differences reach 2 voxels to each side).
MIN_DEFORMATION_SIZE = 5


def _check_ddf(ddf, name="ddf"):
    shape = check_rank(ddf, name, [5], "(batch, d1, d2, d3, 3)")
    if shape[-1] != 3:
        raise ValueError(f"`{name}` has shape {shape}; its last axis must hold 3 displacements.")
    if any(size is not None and size < MIN_DEFORMATION_SIZE for size in shape[1:4]):
        raise ValueError(
            f"`{name}` has shape {shape}; deformation energies need at least "
            f"{MIN_DEFORMATION_SIZE} voxels per axis."
        )
    return _as_float32(ddf, name)


# The derivative stencil is the package's one, in its extension form (see
# tutorial_utils.fields): central differences, with the field extended
# quadratically when the border is included.
_central_differences = _fields.central_differences
_quadratic_extension = _fields.extend_quadratically


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
        ``True``: the field is first extended by 2 voxels beyond each border
        with the parabola through its 3 outer voxels (exact for fields up to
        quadratic), so the same formula is evaluated at every voxel and the
        mean runs over all ``d1 d2 d3`` voxels: the border, where unpenalised
        fields fold most, is regularised too. The first derivatives there are
        ``numpy.gradient(..., edge_order=2)``'s, the ones
        :func:`tutorial_utils.metrics.jacobian_determinant` uses; the second
        derivatives are the one-sided second differences. ``u_1 = a x_1^2``
        has energy ``4 a^2 / 3`` at every voxel.

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
        ddf = _quadratic_extension(ddf, 2)
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
        is extended by 1 voxel with the parabola through its 3 outer voxels, so
        derivatives are evaluated at every voxel, equal to
        ``numpy.gradient(..., edge_order=2)``'s; mean over all voxels.

    Returns ``(batch,)``.
    """
    ddf = _check_ddf(ddf)
    if norm not in ("l1", "l2"):
        raise ValueError(f"`norm` is {norm!r}; it needs to be 'l1' or 'l2'.")
    if include_border:
        ddf = _quadratic_extension(ddf, 1)
    derivatives = tf.stack(_central_differences(ddf), axis=-1)  # (..., component, direction)
    per_voxel = tf.abs(derivatives) if norm == "l1" else tf.square(derivatives)
    return tf.reduce_mean(tf.reduce_sum(per_voxel, axis=-1), axis=[1, 2, 3, 4])


def folding_penalty(ddf, threshold: float = 0.1) -> tf.Tensor:
    r"""Mean hinge on the one-sided Jacobian determinants: a penalty on (near-)folding only.

    .. math:: P = \frac{1}{8N}\sum_{k=1}^{8}\sum_v \max(0,\ \tau - \det J_k(v))

    where :math:`J_k = I + D_k u` uses the ``k``-th of the 8 combinations of
    forward and backward differences along (d1, d2, d3)
    (:func:`tutorial_utils.fields.one_sided_jacobian_determinants`, Liu et al.,
    IJCV 2024): the determinants :func:`tutorial_utils.metrics.folding_fraction`
    scores, so a field cannot lower this penalty by folding in a way the metric
    does not see (a central-difference penalty let an odd-even oscillation fold
    5 % of voxels unseen, #22). Voxels whose determinants stay above ``tau``
    cost nothing, so unlike the bending energy it does not stiffen the whole
    field; it pushes the voxels about to fold back (the selective Jacobian loss
    of Mok & Chung, CVPR 2020, with a margin ``tau``).

    Parameters
    ----------
    ddf : tensor ``(batch, d1, d2, d3, 3)``, voxels; each axis >= 2.
    threshold : float
        The margin ``tau``; 0 penalises folding voxels only.

    Returns
    -------
    tf.Tensor ``(batch,)``; 0 for an identity or any field whose one-sided
    determinants are all above ``tau``.

    Examples
    --------
    >>> import numpy as np
    >>> float(folding_penalty(np.zeros((1, 4, 4, 4, 3)))[0])
    0.0
    >>> ddf = np.zeros((1, 6, 6, 6, 3), np.float32); ddf[0, ::2, ..., 0] = 1.2  # odd-even fold
    >>> float(folding_penalty(ddf, 0.0)[0]) > 0
    True
    """
    shape = check_rank(ddf, "ddf", [5], "(batch, d1, d2, d3, 3)")
    if shape[-1] != 3 or any(size is not None and size < 2 for size in shape[1:4]):
        raise ValueError(f"`ddf` has shape {shape}; it needs (batch, d1, d2, d3, 3), each d >= 2.")
    determinants = _fields.one_sided_jacobian_determinants(_as_float32(ddf, "ddf"))
    return tf.reduce_mean(tf.nn.relu(threshold - determinants), axis=[0, 2, 3, 4])


# --------------------------------------------------------------------------
# the one lookup (after DeepReg's loss registry), and the dispatchers
# --------------------------------------------------------------------------
class _Entry:
    """A registered loss: ``base`` (a function above), options fixed by the name,
    and how its value becomes one to minimise."""

    def __init__(self, kind, base, to_minimise, preset=None, meaning=""):
        self.kind, self.base, self.to_minimise = kind, base, to_minimise
        self.preset, self.meaning = dict(preset or {}), meaning


def _identity(value):
    return value


def _one_minus(value):
    return 1.0 - value


def _negative(value):
    return -value


_REGISTRY = {
    "ssd": _Entry("image", ssd, _identity, meaning="ssd"),
    "ncc": _Entry("image", global_ncc, _one_minus, meaning="1 - global_ncc"),
    "lncc": _Entry("image", lncc, _one_minus, meaning="1 - lncc"),
    "gmi": _Entry("image", global_mutual_information, _negative,
                  meaning="-global_mutual_information"),
    "dice": _Entry("label", dice_score, _one_minus, meaning="1 - dice_score"),
    "jaccard": _Entry("label", jaccard_index, _one_minus, meaning="1 - jaccard_index"),
    "cross-entropy": _Entry("label", cross_entropy, _identity, meaning="cross_entropy"),
    "multi-scale-dice": _Entry("label", multi_scale_loss, _identity, {"label_loss": "dice"},
                               meaning="multi_scale_loss(label_loss='dice')"),
    "bending": _Entry("deformation", bending_energy, _identity, meaning="bending_energy"),
    "gradient-l1": _Entry("deformation", gradient_norm, _identity, {"norm": "l1"},
                          meaning="gradient_norm(norm='l1')"),
    "gradient-l2": _Entry("deformation", gradient_norm, _identity, {"norm": "l2"},
                          meaning="gradient_norm(norm='l2')"),
    "folding": _Entry("deformation", folding_penalty, _identity, meaning="folding_penalty"),
}

#: The names :func:`get_loss` knows, by kind.
LOSS_NAMES = {
    kind: tuple(name for name, entry in _REGISTRY.items() if entry.kind == kind)
    for kind in ("image", "label", "deformation")
}


def _unknown(name, kinds) -> ValueError:
    known = {kind: LOSS_NAMES[kind] for kind in kinds}
    return ValueError(f"`name` is {name!r}; known losses: {known}.")


def get_loss(name: str, **options) -> Callable:
    """The loss called ``name``, as a callable giving per-pair values to minimise.

    Parameters
    ----------
    name : str
        One of :data:`LOSS_NAMES`: image ``"ssd"``, ``"ncc"`` (``1 - global_ncc``),
        ``"lncc"`` (``1 - lncc``), ``"gmi"`` (``-global_mutual_information``);
        label ``"dice"`` (``1 - dice_score``), ``"jaccard"`` (``1 -
        jaccard_index``), ``"cross-entropy"``, ``"multi-scale-dice"``
        (:func:`multi_scale_loss` with ``label_loss="dice"``); deformation
        ``"bending"`` (:func:`bending_energy`), ``"gradient-l1"``,
        ``"gradient-l2"`` (:func:`gradient_norm`), ``"folding"``
        (:func:`folding_penalty`).
    **options
        Keyword arguments of that function, e.g. ``window_size=5`` for
        ``"lncc"``, ``scales=(0, 2)`` for ``"multi-scale-dice"``,
        ``include_border=True`` for ``"bending"`` (where the function has it).

    Returns
    -------
    callable
        ``loss(fixed, warped)`` for image and label losses, ``loss(ddf)`` for
        deformation ones; it returns a ``(batch,)`` tensor to minimise (0 at
        best for all but ``"gmi"`` and ``"ncc"``'s negative correlations).
        The losses that take a mask (``"ssd"``, ``"ncc"``, ``"lncc"``) also
        take it when called, ``loss(fixed, warped, mask=overlap)``: the mean
        then runs over the masked voxels (see :func:`ssd`).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones) or an option the
        function does not take.

    Examples
    --------
    >>> import numpy as np
    >>> label = np.zeros((2, 6, 6, 6)); label[:, 1:4] = 1
    >>> get_loss("dice")(label, label).numpy().round(4)
    array([0., 0.], dtype=float32)
    >>> get_loss("lncc", window_size=5).__name__
    'lncc'
    """
    if name not in _REGISTRY:
        raise _unknown(name, LOSS_NAMES)
    entry = _REGISTRY[name]
    settings = {**entry.preset, **options}
    parameters = inspect.signature(entry.base).parameters
    positional = 1 if entry.kind == "deformation" else 2
    allowed = [p for p in list(parameters)[positional:] if p not in entry.preset and p != "mask"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"get_loss({name!r}) got option(s) {unknown}; {entry.meaning} takes {allowed}."
        )

    takes_mask = "mask" in parameters

    def loss(*volumes, mask=None):
        if mask is None:
            return entry.to_minimise(entry.base(*volumes, **settings))
        if not takes_mask:
            masked = [n for n, e in _REGISTRY.items() if "mask" in inspect.signature(e.base).parameters]
            raise ValueError(f"get_loss({name!r}) takes no `mask`; the losses that do: {masked}.")
        return entry.to_minimise(entry.base(*volumes, mask=mask, **settings))

    loss.__name__ = name
    loss.__qualname__ = name
    loss.__doc__ = f"``{entry.meaning}`` with options {settings}: (batch,) values to minimise."
    return loss


def dissimilarity_fn(fixed, warped, name: str, **options) -> tf.Tensor:
    """Image (or label) dissimilarity to minimise, as a scalar (mean over the batch).

    Parameters
    ----------
    fixed, warped : tensor
        ``(batch, d1, d2, d3)`` or ``(batch, d1, d2, d3, channels)``: fixed and warped.
    name : str
        An image or label name of :data:`LOSS_NAMES` (``"ssd"``, ``"ncc"``,
        ``"lncc"``, ``"gmi"``, ``"dice"``, ...).
    **options
        Passed to :func:`get_loss`; ``mask=`` is passed to the loss itself.

    Returns
    -------
    tf.Tensor, scalar: the batch mean of ``get_loss(name, **options)(fixed, warped)``.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.linspace(0, 1, 2 * 5 * 5 * 5).reshape(2, 5, 5, 5)
    >>> float(dissimilarity_fn(image, image, "ssd"))
    0.0
    """
    if name not in _REGISTRY or _REGISTRY[name].kind == "deformation":
        raise _unknown(name, ("image", "label"))
    mask = options.pop("mask", None)
    return tf.reduce_mean(get_loss(name, **options)(fixed, warped, mask=mask))


def local_displacement_energy(ddf, name: str, **options) -> tf.Tensor:
    """Deformation regulariser of a DDF, as a scalar (mean over the batch).

    Parameters
    ----------
    ddf : tensor ``(batch, d1, d2, d3, 3)`` in voxels.
    name : {"bending", "gradient-l1", "gradient-l2", "folding"}
    **options
        Passed to :func:`get_loss` (e.g. ``include_border=True``).

    Returns
    -------
    tf.Tensor, scalar: the batch mean of ``get_loss(name, **options)(ddf)``.

    Examples
    --------
    >>> import numpy as np
    >>> float(local_displacement_energy(np.ones((1, 6, 6, 6, 3)), "bending"))
    0.0
    """
    if name not in LOSS_NAMES["deformation"]:
        raise _unknown(name, ("deformation",))
    return tf.reduce_mean(get_loss(name, **options)(ddf))
