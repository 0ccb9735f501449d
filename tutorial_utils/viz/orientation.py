"""Which way is up: orientation codes and how a slice is put on the screen.

Give ``orientation=`` (a loader's 3-letter code, e.g. ``"LPS"``) and every figure
and the viewer show standard radiological views - axial: anterior up, the
patient's left on the image's right; coronal: superior up, patient's left on the
right; sagittal: superior up, anterior on the left (as ITK-SNAP and 3D Slicer
show them) - with each image axis labelled by its anatomical direction and its
array axis, e.g. "anterior ↑ (array axis 1)". ``axis`` may then name the view
(``"axial"``, ``"coronal"``, ``"sagittal"``). Only the display is flipped and
transposed (:class:`Plane`); arrays are never reoriented. Without an orientation,
slices are shown in array order, labelled by array axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ._common import _slice

__all__ = ["ANATOMY", "VIEWS", "check_orientation", "Plane", "plane_for", "opening_slice"]

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
