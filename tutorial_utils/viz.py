"""Plots and the slice viewer the chapters share.

Static figures (matplotlib) take plain ``(d1, d2, d3)`` NumPy arrays; pass a
slice index along ``axis`` (default: the slice with the most of the label when
one is given, else the middle slice). Every figure has titles, axis labels and,
where values matter, a colour bar.

Orientation: give ``orientation=`` (a loader's 3-letter code, e.g. ``"LPS"``) and
every figure and the viewer show standard radiological views - axial: anterior
up, the patient's left on the image's right; coronal: superior up, patient's left
on the right; sagittal: superior up, anterior on the left (as ITK-SNAP and 3D
Slicer show them) - with each image axis labelled by its anatomical direction and
its array axis, e.g. "anterior ↑ (array axis 1)". ``axis`` may then name the view
(``"axial"``, ``"coronal"``, ``"sagittal"``). Only the display is flipped and
transposed (:class:`Plane`); arrays are never reoriented. Without an orientation,
slices are shown in array order, labelled by array axis.

The slice viewer, :func:`show_volumes`, gives a live slider (ipywidgets core
widgets only, so it works in JupyterLab, classic Notebook and Colab) and, in
the same output, a self-contained HTML slider over pre-rendered slices for
places where no kernel runs (the published book, a notebook executed headless in
CI). Jupyter front-ends show the widget; static renderers show the HTML. The
static form's HTML and JavaScript are files in ``tutorial_utils/templates``.

Colours: label overlays use the Okabe-Ito palette, which stays distinct for the
common forms of colour blindness: true positive white, false positive orange,
false negative sky blue (never red against green).
"""
from __future__ import annotations

import base64
import hashlib
import html
import importlib.resources
import io
import itertools
import json
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Mapping, Optional, Sequence, Tuple

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

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
    "show_volumes",
    "SliceViewer",
    "ANATOMY",
    "VIEWS",
    "check_orientation",
    "Plane",
    "plane_for",
    "opening_slice",
]

#: Okabe-Ito colours for the label comparison: colour-blind safe.
OVERLAY_COLOURS = {
    "true positive": (1.0, 1.0, 1.0),
    "false positive": (0.902, 0.624, 0.0),  # orange  #E69F00
    "false negative": (0.337, 0.706, 0.914),  # sky blue #56B4E9
}
#: Colour of a label drawn over an image in the viewer (Okabe-Ito vermillion-free yellow).
LABEL_COLOUR = (0.941, 0.894, 0.259)  # #F0E442


def _volume(array, name: str) -> np.ndarray:
    volume = np.asarray(array, dtype=np.float32)
    volume = np.squeeze(volume)
    if volume.ndim != 3:
        raise ValueError(
            f"`{name}` has shape {np.shape(array)}; it needs one volume (d1, d2, d3) "
            "(a batch or channel axis of size 1 is dropped)."
        )
    return volume


def _slice(volume: np.ndarray, axis: int, index: Optional[int]) -> np.ndarray:
    if axis not in (0, 1, 2):
        raise ValueError(f"`axis` is {axis}; it needs to be 0, 1 or 2 (d1, d2, d3).")
    index = volume.shape[axis] // 2 if index is None else int(index)
    if not 0 <= index < volume.shape[axis]:
        raise ValueError(f"slice {index} is outside 0..{volume.shape[axis] - 1} along axis {axis}.")
    return np.take(volume, index, axis=axis)


# --------------------------------------------------------------------------
# orientation: which way is up
# --------------------------------------------------------------------------
#: What each letter of an orientation code means (nibabel: the direction an axis increases toward).
ANATOMY = {"L": "patient's left", "R": "patient's right", "A": "anterior", "P": "posterior",
           "S": "superior", "I": "inferior"}
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
#: Standard radiological views: (letters of the axis sliced along, up, right on the screen).
VIEWS = {"axial": ("SI", "A", "L"), "coronal": ("AP", "S", "L"), "sagittal": ("LR", "S", "P")}


def check_orientation(orientation: str) -> str:
    """The orientation code in capitals, or a ValueError saying what is wrong.

    >>> check_orientation("lps")
    'LPS'
    """
    code = str(orientation).upper()
    if len(code) != 3 or set(code) - set(ANATOMY) or len({frozenset((c, _OPPOSITE[c])) for c in code}) != 3:
        raise ValueError(
            f"`orientation` is {orientation!r}; it needs three letters, one of L/R, one of A/P and "
            "one of S/I, each the direction an array axis increases toward (e.g. 'LPS').")
    return code


@dataclass(frozen=True)
class Plane:
    """How a slice of a volume is put on the screen.

    ``axis`` is the array axis sliced along; ``rows``/``cols`` the array axes shown
    downward/rightward, each reversed when ``flip_rows``/``flip_cols``; ``view`` is
    "axial", "coronal", "sagittal" or None (no orientation given: array order).
    """

    axis: int
    rows: int
    cols: int
    flip_rows: bool = False
    flip_cols: bool = False
    view: Optional[str] = None
    row_label: str = ""
    col_label: str = ""

    def image(self, plane: np.ndarray) -> np.ndarray:
        """A 2-D slice ``np.take(volume, index, axis)`` (trailing axes allowed), as shown."""
        shown = np.swapaxes(plane, 0, 1) if self.rows > self.cols else plane
        shown = shown[::-1] if self.flip_rows else shown
        return shown[:, ::-1] if self.flip_cols else shown

    def take(self, volume: np.ndarray, index: int) -> np.ndarray:
        """Slice ``index`` of ``volume`` along ``axis``, as shown."""
        return self.image(_slice(volume, self.axis, index))

    def name(self, index: int) -> str:
        """E.g. "axial slice 18 (array axis 2)" or "slice 18 along d3"."""
        if self.view:
            return f"{self.view} slice {index} (array axis {self.axis})"
        return f"slice {index} along d{self.axis + 1}"

    def label(self, ax) -> None:
        """Axis labels: anatomical direction and array axis."""
        ax.set_ylabel(self.row_label)
        ax.set_xlabel(self.col_label)


def plane_for(axis=None, orientation: Optional[str] = None) -> Plane:
    """The :class:`Plane` for slicing along ``axis`` of a volume in ``orientation``.

    Parameters
    ----------
    axis : {0, 1, 2}, "axial", "coronal", "sagittal" or None
        The array axis to slice along, or (with ``orientation``) a view name.
        None: axial with an orientation, else axis 2.
    orientation : str, optional
        The volume's 3-letter code (e.g. ``"LPS"``). With it the slice is shown as
        radiologists show it - axial: anterior up, the patient's left on the right;
        coronal: superior up, patient's left on the right; sagittal: superior up,
        anterior on the left. Without it: array order (first remaining axis down).

    Examples
    --------
    >>> plane = plane_for("axial", "LPS")
    >>> plane.axis, plane.rows, plane.cols, plane.flip_rows, plane.flip_cols
    (2, 1, 0, False, False)
    >>> plane.row_label
    'anterior ↑ (array axis 1)'
    """
    if orientation is None:
        axis = 2 if axis is None else axis
        if axis not in (0, 1, 2):
            raise ValueError(f"`axis` is {axis!r}; it needs to be 0, 1 or 2 (d1, d2, d3); name a view "
                             "('axial', 'coronal', 'sagittal') only together with `orientation=`.")
        rows, cols = [i for i in range(3) if i != axis]
        return Plane(axis, rows, cols, row_label=f"d{rows + 1} (array axis {rows}, voxels)",
                     col_label=f"d{cols + 1} (array axis {cols}, voxels)")
    code = check_orientation(orientation)
    if axis is None or isinstance(axis, str):
        view = "axial" if axis is None else str(axis).lower()
        if view not in VIEWS:
            raise ValueError(f"`axis` is {axis!r}; name a view {list(VIEWS)} or give an array axis 0, 1, 2.")
        axis = next(i for i, c in enumerate(code) if c in VIEWS[view][0])
    elif axis not in (0, 1, 2):
        raise ValueError(f"`axis` is {axis!r}; it needs to be 0, 1 or 2, or a view name {list(VIEWS)}.")
    view = next(v for v, (normal, _, _) in VIEWS.items() if code[axis] in normal)
    _, up, right = VIEWS[view]
    rows = next(i for i in range(3) if i != axis and code[i] in up + _OPPOSITE[up])
    cols = 3 - axis - rows
    return Plane(axis, rows, cols, flip_rows=code[rows] == up, flip_cols=code[cols] != right, view=view,
                 row_label=f"{ANATOMY[up]} ↑ (array axis {rows})",
                 col_label=f"{ANATOMY[right]} → (array axis {cols})")


def opening_slice(shape: Sequence[int], axis: int, label=None) -> int:
    """The slice to open on: the one with the most label voxels (> 0.5), else the middle.

    >>> label = np.zeros((4, 4, 10)); label[1, 1, 7] = 1
    >>> opening_slice(label.shape, 2, label), opening_slice(label.shape, 2)
    (7, 5)
    """
    if label is not None:
        mask = np.asarray(label) > 0.5
        counts = mask.sum(axis=tuple(i for i in range(mask.ndim) if i != axis))
        if counts.max(initial=0) > 0:
            return int(np.argmax(counts))
    return int(shape[axis]) // 2


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


# --------------------------------------------------------------------------
# the slice viewer
# --------------------------------------------------------------------------
def _to_rgb(plane: np.ndarray, cmap: str, limits: Tuple[float, float]) -> np.ndarray:
    low, high = limits
    scaled = np.clip((plane - low) / (high - low if high > low else 1.0), 0, 1)
    return matplotlib.colormaps[cmap](scaled)[..., :3]


@lru_cache(maxsize=None)
def _template(name: str) -> string.Template:
    """A static file of ``tutorial_utils/templates`` (HTML or JavaScript), read once."""
    text = importlib.resources.files("tutorial_utils").joinpath("templates").joinpath(name).read_text(encoding="utf-8")
    return string.Template(text)


_VIEWER_IDS = itertools.count()


def _png(rgb: np.ndarray, scale: int) -> bytes:
    from PIL import Image

    array = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(array)
    if scale != 1:
        image = image.resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)  # 5x faster than optimize=True, ~5 % larger
    return buffer.getvalue()


class _Volumes:
    """The named volumes and overlays of a viewer, and how their slices look."""

    def __init__(self, volumes, overlays, axis, cmaps, orientation):
        if not volumes:
            raise ValueError("`volumes` is empty; give at least one named volume.")
        self.orientation = check_orientation(orientation) if orientation is not None else None
        self.axis = plane_for(axis, self.orientation).axis
        self.panels: Dict[str, np.ndarray] = {name: _volume(v, name) for name, v in volumes.items()}
        self.overlays = {name: _volume(v, f"overlays[{name!r}]") for name, v in (overlays or {}).items()}
        for name, label in self.overlays.items():
            if name not in self.panels:
                raise ValueError(f"overlay {name!r} names no volume; volumes are {list(self.panels)}.")
            if label.shape != self.panels[name].shape:
                raise ValueError(f"overlay {name!r} has shape {label.shape} but its volume has {self.panels[name].shape}.")
        self.cmaps = {name: (cmaps or {}).get(name, "gray") for name in self.panels}
        self.limits = {name: (float(v.min()), float(v.max())) for name, v in self.panels.items()}
        self.shapes = list(dict.fromkeys(v.shape for v in self.panels.values()))
        self.opacity = 0.4

    def plane(self, axis: Optional[int] = None) -> Plane:
        """How slices along ``axis`` (default: the viewer's) are shown."""
        return plane_for(self.axis if axis is None else axis, self.orientation)

    def opening_index(self, shape: Tuple[int, int, int], axis: Optional[int] = None) -> int:
        """The slice a group opens on: most of the first overlay of that shape, else the middle."""
        axis = self.axis if axis is None else axis
        label = next((self.overlays[n] for n in self.overlays if self.panels[n].shape == shape), None)
        return opening_slice(shape, axis, label)

    def render(self, name: str, index: int, axis: Optional[int] = None, opacity: Optional[float] = None) -> bytes:
        """PNG bytes of one panel's slice ``index`` along ``axis``, as shown."""
        plane = self.plane(axis)
        shown = plane.take(self.panels[name], index)
        if self.cmaps[name] == "gray" and name not in self.overlays:
            low, high = self.limits[name]
            grey = np.clip((shown - low) / (high - low if high > low else 1.0), 0, 1)
            return _png(grey, 1)  # one channel: a third of the size of RGB
        rgb = _to_rgb(shown, self.cmaps[name], self.limits[name])
        if name in self.overlays:
            alpha = (self.opacity if opacity is None else opacity) * (plane.take(self.overlays[name], index) > 0.5)
            rgb = rgb * (1 - alpha[..., None]) + np.array(LABEL_COLOUR) * alpha[..., None]
        return _png(rgb, 1)

    def _group(self, name: str) -> int:
        return self.shapes.index(self.panels[name].shape)

    def _axes_text(self, axis: Optional[int] = None) -> str:
        plane = self.plane(axis)
        if plane.view is None:
            return f"down: {plane.row_label}; right: {plane.col_label}"
        return f"up: {plane.row_label}; right: {plane.col_label}"


class SliceViewer(_Volumes):
    """Side-by-side volumes with a slice slider; see :func:`show_volumes`.

    Attributes
    ----------
    panels : dict name -> ndarray ``(d1, d2, d3)``
    sliders : list of ipywidgets.IntSlider
        One per distinct volume shape: same-shaped panels share a slider.
    axis : int
        The array axis sliced along first.
    orientation : str or None
        The volumes' 3-letter code; with it slices are shown as radiologists show them.
    """

    def __init__(self, volumes: Mapping[str, np.ndarray], overlays: Optional[Mapping[str, np.ndarray]] = None,
                 axis=None, cmaps: Optional[Mapping[str, str]] = None, title: str = "",
                 max_frames: int = 40, max_bytes: int = 1_000_000, scale: Optional[int] = None,
                 orientation: Optional[str] = None):
        super().__init__(volumes, overlays, axis, cmaps, orientation)
        self.title = title
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        largest = max(max(v.shape) for v in self.panels.values())
        self.scale = scale if scale is not None else max(1, 256 // largest)
        self._widget = None
        self.sliders = []

    def _width(self, name: str, axis: Optional[int] = None) -> int:
        return self.panels[name].shape[self.plane(axis).cols] * self.scale

    # -- live form
    @property
    def widget(self):
        """The ipywidgets form: sliders (one per shape), axis choice, opacity, images."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _axis_options(self):
        if self.orientation is None:
            return [("d1", 0), ("d2", 1), ("d3", 2)]
        options = [(f"{view} (array axis {plane_for(view, self.orientation).axis})",
                    plane_for(view, self.orientation).axis) for view in VIEWS]
        return options

    def _build_widget(self):
        return _live_widget(self)

    # -- static form
    def frame_indices(self) -> Dict[Tuple[int, int, int], list]:
        """Slice indices pre-rendered for the static form, per volume shape (the opening
        slice always among them)."""
        return {shape: sorted(set(np.linspace(0, shape[self.axis] - 1, min(self.max_frames, shape[self.axis]))
                                  .round().astype(int).tolist()) | {self.opening_index(shape)})
                for shape in self.shapes}

    def to_html(self) -> str:
        """Self-contained HTML: images as data URIs and a short script (from the
        package's ``templates/``) that swaps them as a slider moves.

        Keeps under ``max_bytes`` by dropping frames evenly when needed; loads
        nothing from the network.
        """
        return _static_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": f"SliceViewer({', '.join(self.panels)}; static slider below when no widgets)",
                  "text/html": self.to_html()}
        try:
            widget_bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude) or {}
        except Exception:  # no ipywidgets or no kernel: the static form is enough
            widget_bundle = {}
        bundle.update({k: v for k, v in widget_bundle.items() if k != "text/plain"})
        return bundle


def _live_widget(viewer: SliceViewer):
    """The ipywidgets form of a viewer: view choice, sliders, opacity, images."""
    import ipywidgets as widgets

    axis_choice = widgets.Dropdown(options=viewer._axis_options(), value=viewer.axis, description="view",
                                   layout=widgets.Layout(width="260px"))
    viewer.sliders = [
        widgets.IntSlider(value=viewer.opening_index(shape), min=0, max=shape[viewer.axis] - 1,
                          description="slice" if len(viewer.shapes) == 1 else f"slice {i + 1}",
                          continuous_update=True)
        for i, shape in enumerate(viewer.shapes)
    ]
    opacity = widgets.FloatSlider(value=viewer.opacity, min=0.0, max=1.0, step=0.05, description="label opacity")
    images = {name: widgets.Image(format="png", layout=widgets.Layout(width=f"{viewer._width(name)}px"))
              for name in viewer.panels}
    axes_text = widgets.HTML(html.escape(viewer._axes_text()))

    def redraw(*_):
        for name, image in images.items():
            slider = viewer.sliders[viewer._group(name)]
            image.value = viewer.render(name, slider.value, axis_choice.value, opacity.value)

    def change_axis(change):
        for slider, shape in zip(viewer.sliders, viewer.shapes):
            slider.max = shape[change["new"]] - 1
            slider.value = viewer.opening_index(shape, change["new"])
        for name, image in images.items():
            image.layout.width = f"{viewer._width(name, change['new'])}px"
        axes_text.value = html.escape(viewer._axes_text(change["new"]))
        redraw()

    for slider in viewer.sliders:
        slider.observe(redraw, names="value")
    opacity.observe(redraw, names="value")
    axis_choice.observe(change_axis, names="value")
    redraw()
    controls = [axis_choice, *viewer.sliders] + ([opacity] if viewer.overlays else [])
    panels = [widgets.VBox([widgets.HTML(f"<b>{html.escape(name)}</b>"), image]) for name, image in images.items()]
    header = [widgets.HTML(f"<h4>{html.escape(viewer.title)}</h4>")] if viewer.title else []
    return widgets.VBox(header + [widgets.HBox(controls), axes_text, widgets.HBox(panels)])


def _frames(viewer: SliceViewer) -> Tuple[Dict[Tuple[int, int, int], list], Dict[str, list]]:
    """Indices and base64 PNG frames, halved until they fit in ``max_bytes``."""
    indices = viewer.frame_indices()
    while True:
        frames = {name: [base64.b64encode(viewer.render(name, i)).decode() for i in indices[v.shape]]
                  for name, v in viewer.panels.items()}
        size = sum(len(f) for group in frames.values() for f in group)
        if size <= viewer.max_bytes or max(len(i) for i in indices.values()) <= 2:
            return indices, frames
        indices = {shape: sorted(set(index[::2]) | {viewer.opening_index(shape)})
                   for shape, index in indices.items()}


def _static_html(viewer: SliceViewer) -> str:
    """The static form of a viewer (see :meth:`SliceViewer.to_html`)."""
    indices, frames = _frames(viewer)
    start = {shape: indices[shape].index(viewer.opening_index(shape)) for shape in viewer.shapes}
    plane = viewer.plane()
    along = f"{plane.view} slice" if plane.view else "slice"
    sliders = "".join(_template("slice_viewer_slider.html").substitute(
        label=(along if len(viewer.shapes) == 1 else f"{along} {group + 1}") + f" (array axis {viewer.axis})",
        last=len(indices[shape]) - 1, value=start[shape], group=group, shown=indices[shape][start[shape]])
        for group, shape in enumerate(viewer.shapes))
    panels = "".join(_template("slice_viewer_panel.html").substitute(
        name=html.escape(name), group=viewer._group(name), width=viewer._width(name),
        frame=frames[name][start[volume.shape]]) for name, volume in viewer.panels.items())
    data = json.dumps({"frames": [frames[name] for name in viewer.panels],
                       "slices": [indices[shape] for shape in viewer.shapes]}).replace("</", "<\\/")
    uid = "tu-viewer-" + hashlib.sha1(data.encode()).hexdigest()[:12] + f"-{next(_VIEWER_IDS)}"
    return _template("slice_viewer.html").substitute(
        uid=uid, frame_count=max(len(i) for i in indices.values()), sliders=sliders, panels=panels,
        title=f"<div><b>{html.escape(viewer.title)}</b></div>" if viewer.title else "",
        axes=html.escape(viewer._axes_text()), data=data, script=_template("slice_viewer.js").template)


def show_volumes(volumes: Mapping[str, np.ndarray], overlays: Optional[Mapping[str, np.ndarray]] = None,
                 axis=None, cmaps: Optional[Mapping[str, str]] = None, title: str = "",
                 orientation: Optional[str] = None, **options) -> SliceViewer:
    """Show named volumes side by side with a slice slider.

    Parameters
    ----------
    volumes : dict name -> array ``(d1, d2, d3)``
        Size-1 batch/channel axes are dropped. Volumes of the same shape share a
        slider; each is scaled to its own min-max.
    overlays : dict name -> label ``(d1, d2, d3)``, optional
        A label drawn in yellow over the volume of the same name, with an
        opacity slider. The viewer opens on the slice with the most of it
        (without overlays: the middle slice).
    axis : {0, 1, 2}, "axial", "coronal", "sagittal" or None
        The array axis to slice along first (the live viewer can change it); a
        view name needs ``orientation``. None: axial with an orientation, else 2.
    cmaps : dict name -> matplotlib colour map name, optional
        Default ``gray``; use e.g. ``viridis`` for a displacement magnitude.
    title : str
    orientation : str, optional
        The volumes' 3-letter code (a loader's ``"orientation"``, e.g. ``"LPS"``):
        slices are then shown as radiologists show them (see :func:`plane_for`)
        and labelled with anatomical directions and array axes. The arrays are
        not changed.
    **options
        ``max_frames`` (40) and ``max_bytes`` (1 MB of images) bound the static form.

    Returns
    -------
    SliceViewer
        Displayed by Jupyter as a live widget where widgets work, and as a
        self-contained HTML slider elsewhere (the book, headless runs).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.linspace(0, 1, 8 * 9 * 10).reshape(8, 9, 10)
    >>> label = np.zeros_like(image); label[2:4, 2:4, 6] = 1
    >>> viewer = show_volumes({"image": image}, overlays={"image": label}, orientation="LPS")
    >>> viewer.axis, viewer.opening_index((8, 9, 10))
    (2, 6)
    >>> viewer.frame_indices()[(8, 9, 10)][-1]
    9
    """
    return SliceViewer(volumes, overlays=overlays, axis=axis, cmaps=cmaps, title=title, orientation=orientation,
                       **options)
