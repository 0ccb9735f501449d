"""The static figures the chapters share (matplotlib).

Figures take plain ``(d1, d2, d3)`` NumPy arrays (a DDF: ``(d1, d2, d3, 3)``, in
voxels); pass a slice index along ``axis`` (default: the slice with the most of
the label when one is given, else the middle slice). ``axis``/``orientation``
are as in :func:`~tutorial_utils.viz.orientation.plane_for`: with an orientation
code, slices are shown as radiologists show them and each image axis is labelled
by its anatomical direction and array axis. Every figure has titles, axis labels
and, where values matter, a colour bar.

Colours: label overlays use the Okabe-Ito palette, which stays distinct for the
common forms of colour blindness: true positive white, false positive orange,
false negative sky blue (never red against green).
"""
from __future__ import annotations

import itertools
from typing import Mapping, Optional, Sequence, Tuple

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from ._common import LABEL_COLOUR, _slice, _volume
from .orientation import ANATOMY, Plane, check_orientation, opening_slice, plane_for

__all__ = [
    "OVERLAY_COLOURS",
    "overlay_rgb",
    "plot_overlay",
    "plot_slice",
    "plot_montage",
    "plot_registration_rows",
    "plot_checkerboard",
    "plot_difference",
    "plot_deformed_grid",
    "plot_jacobian",
    "plot_loss_curves",
    "plot_grid_3d",
    "plot_training_schematic",
]

#: Okabe-Ito colours for the label comparison: colour-blind safe.
OVERLAY_COLOURS = {
    "true positive": (1.0, 1.0, 1.0),
    "false positive": (0.902, 0.624, 0.0),  # orange  #E69F00
    "false negative": (0.337, 0.706, 0.914),  # sky blue #56B4E9
}


# --------------------------------------------------------------------------
# label comparison
# --------------------------------------------------------------------------
def overlay_rgb(fixed_label, warped_label, threshold: float = 0.5) -> np.ndarray:
    """Colour-code the agreement of a warped (moving) label with the fixed one.

    Fixed first, as :mod:`~tutorial_utils.metrics` and :mod:`~tutorial_utils.losses`
    compare ``(fixed, warped)``.

    Parameters
    ----------
    fixed_label, warped_label : array, same shape (any number of dimensions)
        Thresholded at ``threshold``.

    Returns
    -------
    ndarray ``label.shape + (3,)`` RGB in [0, 1]: black in neither, white in both
    ("true positive"), orange in the warped label only ("false positive"), sky blue
    in the fixed label only ("false negative").

    Examples
    --------
    >>> [round(float(c), 3) for c in overlay_rgb([1, 1], [1, 0])[1]]  # fixed only
    [0.337, 0.706, 0.914]
    """
    true = np.asarray(fixed_label) > threshold
    pred = np.asarray(warped_label) > threshold
    if pred.shape != true.shape:
        raise ValueError(f"`fixed_label` has shape {true.shape} but `warped_label` has {pred.shape}.")
    rgb = np.zeros(pred.shape + (3,), dtype=np.float32)
    rgb[pred & true] = OVERLAY_COLOURS["true positive"]
    rgb[pred & ~true] = OVERLAY_COLOURS["false positive"]
    rgb[~pred & true] = OVERLAY_COLOURS["false negative"]
    return rgb


def _index(volume: np.ndarray, plane: Plane, index: Optional[int], label=None) -> int:
    return opening_slice(volume.shape, plane.axis, label) if index is None else int(index)


def plot_overlay(*, fixed_label, warped_label, axis=None, index: Optional[int] = None, title: str = "",
                 ax=None, orientation: Optional[str] = None):
    """One slice of :func:`overlay_rgb` with a legend of the three colours.

    The labels are keyword-only (``fixed_label=``, ``warped_label=``): swapping
    them would swap the meaning of orange and blue without any error.
    ``axis``/``orientation`` as in :func:`plane_for`; ``index=None`` shows the
    slice with the most of either label.
    """
    true = _volume(fixed_label, "fixed_label")
    pred = _volume(warped_label, "warped_label")
    plane = plane_for(axis, orientation)
    index = _index(true, plane, index, np.maximum(pred, true))
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    ax.imshow(overlay_rgb(plane.take(true, index), plane.take(pred, index)), interpolation="nearest")
    ax.set_title(title or f"fixed vs warped label, {plane.name(index)}")
    plane.label(ax)
    handles = [matplotlib.patches.Patch(facecolor=c, edgecolor="grey", label=k) for k, c in OVERLAY_COLOURS.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.8)
    return ax


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------
def plot_slice(volume, axis=None, index: Optional[int] = None, title: str = "", ax=None,
               orientation: Optional[str] = None, cmap: str = "gray", label=None,
               vmin: Optional[float] = None, vmax: Optional[float] = None):
    """One slice of a volume, optionally with a label contour in yellow.

    Parameters
    ----------
    volume : array ``(d1, d2, d3)`` (size-1 batch/channel axes are dropped)
    axis, orientation
        As in :func:`plane_for`: an array axis, or a view name with ``orientation``.
    index : int, optional
        The slice; default the one with the most ``label``, else the middle.
    title : str
        Default: the view and slice, e.g. "axial slice 18 (array axis 2)".
    label : array ``(d1, d2, d3)``, optional
    vmin, vmax : float, optional
        Grey-level limits (default: the slice's own range).

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> ax = plot_slice(np.zeros((4, 5, 6)), orientation="LPS")
    >>> ax.get_title(), ax.get_ylabel()
    ('axial slice 3 (array axis 2)', 'anterior ↑ (array axis 1)')
    """
    volume = _volume(volume, "volume")
    plane = plane_for(axis, orientation)
    label = None if label is None else _volume(label, "label")
    index = _index(volume, plane, index, label)
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    ax.imshow(plane.take(volume, index), cmap=cmap, vmin=vmin, vmax=vmax)
    if label is not None:
        ax.contour(plane.take(label, index), levels=[0.5], colors=[LABEL_COLOUR], linewidths=1)
    ax.set_title(title or plane.name(index))
    plane.label(ax)
    return ax


def plot_montage(volume, axis=None, count: int = 8, title: str = "", cmap: str = "gray", label=None,
                 orientation: Optional[str] = None):
    """Evenly spaced slices of one volume, optionally with a label contour in yellow."""
    volume = _volume(volume, "volume")
    plane = plane_for(axis, orientation)
    indices = np.linspace(0, volume.shape[plane.axis] - 1, count + 2).round().astype(int)[1:-1]
    columns = min(count, 4)
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax, index in itertools.zip_longest(axes.ravel(), indices):
        if index is None:
            ax.axis("off")
            continue
        ax.imshow(plane.take(volume, index), cmap=cmap)
        if label is not None:
            ax.contour(plane.take(_volume(label, "label"), index), levels=[0.5], colors=[LABEL_COLOUR],
                       linewidths=1)
        ax.set_title(plane.name(index), fontsize=8)
        plane.label(ax)
    fig.suptitle(title or f"{plane.view or 'slices'} along array axis {plane.axis}")
    fig.tight_layout()
    return fig


def plot_registration_rows(
    *, fixed, moving, warped, axis=None, indices: Optional[Sequence[int]] = None, title: str = "",
    cmap: str = "gray", orientation: Optional[str] = None,
):
    """Rows of fixed / moving / warped moving slices: the classic way to judge a
    registration. The volumes are keyword-only (``fixed=``, ``moving=``, ``warped=``);
    ``indices`` default to three evenly spaced slices."""
    volumes = [_volume(fixed, "fixed"), _volume(moving, "moving"), _volume(warped, "warped")]
    plane = plane_for(axis, orientation)
    depth = volumes[0].shape[plane.axis]
    if indices is None:
        indices = np.linspace(0, depth - 1, 5).round().astype(int)[1:-1]
    fig, axes = plt.subplots(len(indices), 3, figsize=(9, 3 * len(indices)), squeeze=False)
    vmin = min(float(v.min()) for v in volumes)
    vmax = max(float(v.max()) for v in volumes)
    for row, index in enumerate(indices):
        for column, (name, volume) in enumerate(zip(("fixed", "moving", "warped moving"), volumes)):
            ax = axes[row, column]
            ax.imshow(plane.take(volume, index), cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(f"{name}, {plane.name(index)}", fontsize=8)
            plane.label(ax)
    fig.suptitle(title or "fixed / moving / warped moving")
    fig.tight_layout()
    return fig


def plot_checkerboard(first, second, axis=None, index: Optional[int] = None, tiles: int = 8, title: str = "",
                      ax=None, orientation: Optional[str] = None):
    """Alternate tiles of two images: edges that line up across tiles mean alignment."""
    first, second = _volume(first, "first"), _volume(second, "second")
    plane = plane_for(axis, orientation)
    index = _index(first, plane, index)
    a, b = plane.take(first, index), plane.take(second, index)
    rows = (np.arange(a.shape[0]) * tiles // a.shape[0])[:, None]
    cols = (np.arange(a.shape[1]) * tiles // a.shape[1])[None, :]
    board = np.where((rows + cols) % 2 == 0, a, b)
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    ax.imshow(board, cmap="gray")
    ax.set_title(title or f"checkerboard, {plane.name(index)}")
    plane.label(ax)
    return ax


def plot_difference(first, second, axis=None, index: Optional[int] = None, title: str = "", ax=None,
                    orientation: Optional[str] = None):
    """Signed difference ``first - second`` on a diverging colour map, with a colour bar."""
    first, second = _volume(first, "first"), _volume(second, "second")
    plane = plane_for(axis, orientation)
    index = _index(first, plane, index)
    difference = plane.take(first, index) - plane.take(second, index)
    limit = float(np.abs(difference).max()) or 1.0
    ax = ax or plt.subplots(figsize=(5, 4.5))[1]
    shown = ax.imshow(difference, cmap="PuOr", vmin=-limit, vmax=limit)
    plt.colorbar(shown, ax=ax, label="intensity difference")
    ax.set_title(title or f"difference, {plane.name(index)}")
    plane.label(ax)
    return ax


# --------------------------------------------------------------------------
# fields
# --------------------------------------------------------------------------
def _field(ddf) -> np.ndarray:
    field = np.asarray(ddf, dtype=np.float32)
    if field.ndim == 5 and field.shape[0] == 1:
        field = field[0]
    if field.ndim != 4 or field.shape[-1] != 3:
        raise ValueError(f"`ddf` has shape {np.shape(ddf)}; it needs (d1, d2, d3, 3) or (1, d1, d2, d3, 3).")
    return field


def _grid_lines(field: np.ndarray, plane: Plane, index: int) -> Tuple[np.ndarray, np.ndarray]:
    """Screen coordinates (x, y) of the displaced voxel centres of one slice, as shown."""
    plane_field = _slice(field, plane.axis, index)  # (a, b, 3), a < b the remaining axes
    shape = plane_field.shape[:2]
    grid = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    a, b = [i for i in range(3) if i != plane.axis]
    position = {a: grid[0] + plane_field[..., a], b: grid[1] + plane_field[..., b]}
    size = {a: shape[0], b: shape[1]}
    y = size[plane.rows] - 1 - position[plane.rows] if plane.flip_rows else position[plane.rows]
    x = size[plane.cols] - 1 - position[plane.cols] if plane.flip_cols else position[plane.cols]
    return plane.image(x), plane.image(y)


def plot_deformed_grid(ddf, axis=None, index: Optional[int] = None, spacing: int = 4, title: str = "", ax=None,
                       background=None, orientation: Optional[str] = None):
    """The in-plane part of a DDF drawn as a deformed grid of lines.

    Each grid line joins voxel positions ``x + ddf(x)`` of the fixed grid; a
    smooth field bends the lines gently, folding makes them cross. With
    ``orientation`` the slice is shown as :func:`plane_for` says.
    """
    field = _field(ddf)
    plane = plane_for(axis, orientation)
    index = _index(field[..., 0], plane, index)
    x, y = _grid_lines(field, plane, index)
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    if background is not None:
        ax.imshow(plane.take(_volume(background, "background"), index), cmap="gray", alpha=0.6)
    for r in range(0, y.shape[0], spacing):
        ax.plot(x[r], y[r], color="#0072B2", linewidth=0.7)
    for c in range(0, y.shape[1], spacing):
        ax.plot(x[:, c], y[:, c], color="#0072B2", linewidth=0.7)
    ax.set_xlim(-1, y.shape[1])
    ax.set_ylim(y.shape[0], -1)
    ax.set_aspect("equal")
    ax.set_title(title or f"deformed grid, {plane.name(index)}")
    plane.label(ax)
    return ax


def plot_jacobian(jacobian, axis=None, index: Optional[int] = None, title: str = "", ax=None,
                  orientation: Optional[str] = None):
    """A slice of the Jacobian determinant: 1 no change, <1 shrink, >1 grow, <=0 folding (black)."""
    volume = _volume(jacobian, "jacobian")
    plane = plane_for(axis, orientation)
    index = _index(volume, plane, index)
    ax = ax or plt.subplots(figsize=(5.5, 4.5))[1]
    cmap = matplotlib.colormaps["PuOr_r"].with_extremes(under="black")
    shown = ax.imshow(plane.take(volume, index), cmap=cmap, vmin=1e-6, vmax=2.0)
    plt.colorbar(shown, ax=ax, label="det J  (black: <= 0, folding)", extend="min")
    folding = float(np.mean(volume <= 0)) * 100
    ax.set_title(title or f"Jacobian determinant, {plane.name(index)}\n({folding:.3f}% of voxels fold)")
    plane.label(ax)
    return ax


def plot_loss_curves(history: Mapping[str, Sequence[float]], title: str = "loss during optimisation",
                     xlabel: str = "iteration", log: bool = False, ax=None):
    """Curves of one or more loss terms against iteration, each named in the legend."""
    ax = ax or plt.subplots(figsize=(6.5, 4))[1]
    styles = itertools.cycle(["-", "--", ":", "-."])
    colours = itertools.cycle(["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"])
    for (name, values), style, colour in zip(history.items(), styles, colours):
        ax.plot(np.arange(len(values)), values, style, color=colour, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def _grid_polylines(points: np.ndarray, spacing: int) -> np.ndarray:
    """The grid lines through ``points`` ``(d1, d2, d3, 3)`` along each axis, every
    ``spacing``-th, joined into one ``(n, 3)`` polyline with NaN rows between lines."""
    lines = []
    for axis in range(3):
        along = np.moveaxis(points, axis, 2)[::spacing, ::spacing]  # (a, b, length, 3)
        along = along.reshape(-1, along.shape[2], 3)
        gaps = np.full((along.shape[0], 1, 3), np.nan)
        lines.append(np.concatenate([along, gaps], axis=1).reshape(-1, 3))
    return np.concatenate(lines)


def plot_grid_3d(ddf, spacing: int = 1, title: str = "a 3-D grid warped by a DDF", ax=None,
                 orientation: Optional[str] = None):
    """Draw the lines of a small 3-D voxel grid, each point moved by ``ddf``.

    Parameters
    ----------
    ddf : array ``(d1, d2, d3, 3)`` or ``(1, d1, d2, d3, 3)``, in voxels; keep it small (e.g. 6x6x6).
    spacing : int
        Draw every ``spacing``-th grid line.
    orientation : str, optional
        A 3-letter code; each axis label then names the direction it increases toward.
    """
    field = _field(ddf)
    size = field.shape[:3]
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).astype(float)
    moved = grid + field
    if ax is None:
        ax = plt.figure(figsize=(6, 6)).add_subplot(projection="3d")
    ax.computed_zorder = False  # one artist per family (fast): draw them in this order
    for points, style in ((grid, dict(color="#BBBBBB", linewidth=0.6, zorder=1)),
                          (moved, dict(color="#0072B2", linewidth=1.0, zorder=2))):
        ax.plot(*_grid_polylines(points, spacing).T, **style)
    ax.scatter(*moved.reshape(-1, 3).T, s=6, color="#D55E00", zorder=3)
    code = check_orientation(orientation) if orientation is not None else None
    for setter, axis in zip((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), range(3)):
        towards = f"{ANATOMY[code[axis]]} → " if code else ""
        setter(f"{towards}d{axis + 1} (array axis {axis}, voxels)")
    ax.set_title(title + "\n(grey: regular grid, blue: warped, orange: displaced voxel centres)", fontsize=10)
    return ax


_SCHEMATICS = {
    "unsupervised": ("image dissimilarity\n(warped moving vs fixed image)", False, True),
    "weakly supervised": ("label dissimilarity\n(warped moving vs fixed label)", True, False),
    "combined": ("image + label dissimilarity", True, True),
}


def plot_training_schematic(kind: str, ax=None):
    """Our own block diagram of a registration network trained ``unsupervised``,
    ``weakly supervised`` or ``combined``: inputs, network, DDF, warping, losses."""
    if kind not in _SCHEMATICS:
        raise ValueError(f"`kind` is {kind!r}; choose one of {list(_SCHEMATICS)}.")
    loss_text, uses_labels, uses_images = _SCHEMATICS[kind]
    ax = ax or plt.subplots(figsize=(9, 3.6))[1]
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4)
    ax.axis("off")

    def box(x, y, text, colour):
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5,
                bbox=dict(boxstyle="round,pad=0.4", facecolor=colour, edgecolor="#333333"))

    def arrow(start, end, style="-|>"):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle=style, color="#333333", lw=1.1))

    box(1.0, 3.2, "moving image", "#DDEEFF")
    box(1.0, 2.2, "fixed image", "#DDEEFF")
    if uses_labels:
        box(1.0, 0.6, "moving label\n(training only)", "#FFF2CC")
        box(5.0, 0.45, "fixed label\n(training only)", "#FFF2CC")
    box(3.2, 2.7, "registration\nnetwork", "#E5E5E5")
    box(5.0, 2.7, "DDF", "#E0F0E0")
    box(6.6, 2.7, "warping", "#E5E5E5")
    box(8.6, 3.3, "deformation loss\n(smoothness)", "#F4D6E8")
    box(8.6, 1.6, loss_text, "#F4D6E8")
    arrow((1.6, 3.2), (2.5, 2.85))
    arrow((1.6, 2.2), (2.5, 2.55))
    arrow((3.9, 2.7), (4.6, 2.7))
    arrow((5.4, 2.7), (6.1, 2.7))
    arrow((5.0, 3.0), (7.6, 3.3))
    arrow((1.6, 3.35), (6.4, 3.0), style="-|>")
    if uses_labels:
        arrow((1.8, 0.6), (6.4, 2.4))
    arrow((7.1, 2.6), (7.6, 1.8))
    if uses_images:
        arrow((1.6, 2.05), (7.5, 1.5))
    if uses_labels:
        arrow((5.6, 0.5), (7.6, 1.4))
    ax.set_title(f"{kind} training: what the loss compares", fontsize=11)
    return ax
