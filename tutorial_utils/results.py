"""What a registration returns, and the comparison table every chapter prints.

Every registration function of the package (:mod:`tutorial_utils.register`)
and every adapter of an established tool (:mod:`tutorial_utils.classical`)
returns one :class:`RegistrationResult`; a chapter's comparison is a list of
rows (a method's name, its result's seconds, the task's scores) given to
:func:`comparison_table`, which renders the same table in chapters 3-5 and in
the benchmark. NumPy only (no TensorFlow).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["RegistrationResult", "ComparisonTable", "comparison_table", "compare"]


@dataclass
class RegistrationResult:
    """The result of one registration: a transform, how it was reached, how long it took.

    Exactly one of ``theta`` and ``ddf`` describes the transform (an affine
    method sets ``theta``; a nonrigid one sets ``ddf``, affine part included).
    Both follow the package's convention: the transform maps fixed-grid voxels
    into the moving image, ``warped = warp.warp(moving, ddf)``.

    Attributes
    ----------
    method : str
        Short name, e.g. ``"register_affine"`` or ``"elastix affine + B-spline"``.
    seconds : float
        Wall time of the whole call (pre-processing and compilation included), s.
    theta : ndarray ``(1, 4, 3)`` float32, or None
        Affine in voxels (``warp.warp_grid``'s convention).
    ddf : ndarray ``(1, d1, d2, d3, 3)`` float32, or None
        Displacements in voxels on the fixed grid.
    history : dict of str -> list of float
        One entry per recorded step (``"level"``: the pyramid level of each,
        0 = coarsest); empty for tools that report none.
    iterations : int
        Optimisation steps actually run, all levels together (0 if unknown).
    level_seconds : list of float
        Wall time per pyramid level, coarsest first (empty if not measured).
    details : dict
        Anything else a method reports (e.g. elastix's parameter map).
    """

    method: str
    seconds: float
    theta: Optional[np.ndarray] = None
    ddf: Optional[np.ndarray] = None
    history: Dict[str, List[float]] = field(default_factory=dict)
    iterations: int = 0
    level_seconds: List[float] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.theta is None) == (self.ddf is None):
            raise ValueError(
                f"RegistrationResult({self.method!r}) needs exactly one of `theta` (an affine) "
                "and `ddf` (a displacement field)."
            )
        if self.theta is not None:
            self.theta = np.asarray(self.theta, np.float32).reshape(1, 4, 3)
        if self.ddf is not None:
            ddf = np.asarray(self.ddf, np.float32)
            ddf = ddf[None] if ddf.ndim == 4 else ddf
            if ddf.ndim != 5 or ddf.shape[0] != 1 or ddf.shape[-1] != 3:
                raise ValueError(
                    f"RegistrationResult({self.method!r}): `ddf` has shape {np.shape(self.ddf)}; "
                    "it needs (1, d1, d2, d3, 3)."
                )
            self.ddf = ddf

    def displacement(self, grid_size: Sequence[int]) -> np.ndarray:
        """The transform as a DDF ``(1, d1, d2, d3, 3)`` in voxels on a grid of ``grid_size``.

        For an affine result, :func:`tutorial_utils.affine.ddf_from_affine` (float64, then float32).

        Raises
        ------
        ValueError
            If the result holds a DDF on another grid.
        """
        size = tuple(int(s) for s in grid_size)
        if self.ddf is not None:
            if self.ddf.shape[1:4] != size:
                raise ValueError(
                    f"{self.method}: the DDF is on a grid of {self.ddf.shape[1:4]}, not {size}."
                )
            return self.ddf
        from .affine import ddf_from_affine

        return ddf_from_affine(self.theta.astype(np.float64), size).astype(np.float32)


def _format(value) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


class ComparisonTable:
    """Rows of ``{column: value}`` shown as text (``print``) and HTML (a notebook).

    Build it with :func:`comparison_table`. ``rows`` keeps the numbers as given;
    ``column(name)`` returns one column as a list.
    """

    def __init__(self, rows: Sequence[Mapping[str, object]], columns: Sequence[str], title: str):
        self.rows = [dict(row) for row in rows]
        self.columns = list(columns)
        self.title = title

    def column(self, name: str) -> list:
        return [row.get(name) for row in self.rows]

    def _cells(self) -> List[List[str]]:
        return [[_format(row.get(column)) for column in self.columns] for row in self.rows]

    def __str__(self) -> str:
        cells = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        line = lambda values: "  ".join(v.rjust(w) if i else v.ljust(w)  # noqa: E731
                                        for i, (v, w) in enumerate(zip(values, widths)))
        body = [line(self.columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
        return "\n".join(([self.title] if self.title else []) + body)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in self._cells())
        caption = f"<caption>{self.title}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return str(self)


def comparison_table(rows: Sequence[Mapping[str, object]], columns: Optional[Sequence[str]] = None,
                     title: str = "") -> ComparisonTable:
    """One table of methods: each row a dict such as ``{"method": ..., "seconds": ..., "dice": ...}``.

    Parameters
    ----------
    rows : sequence of mappings
        One per method; missing entries show as ``-``.
    columns : sequence of str, optional
        Column order; default: the keys in order of first appearance.
    title : str

    Returns
    -------
    ComparisonTable
        Printed as aligned text; shown as an HTML table in a notebook.

    Examples
    --------
    >>> print(comparison_table([{"method": "identity", "dice": 0.5}, {"method": "a", "dice": 0.91234}]))
    method     dice
    --------  -----
    identity  0.500
    a         0.912
    """
    if columns is None:
        columns = []
        for row in rows:
            columns += [key for key in row if key not in columns]
    return ComparisonTable(rows, columns, title)


def compare(runs: Mapping[str, RegistrationResult], score: Callable[[RegistrationResult], Mapping[str, object]],
            title: str = "", per: str = "") -> ComparisonTable:
    """The comparison table of several registrations of one task: method, seconds, the task's scores.

    Parameters
    ----------
    runs : mapping name -> RegistrationResult
        In the order the rows should appear.
    score : callable
        ``score(result) -> {column: value}``, the task's metrics, e.g.
        ``lambda r: metrics.evaluate_registration(r.displacement(shape), fixed_label=..., moving_label=...)``.
    title : str
    per : str
        Appended to the seconds column's name, e.g. ``" per pair"``.

    Returns
    -------
    ComparisonTable with columns ``method``, ``seconds`` and the scores' keys.
    """
    rows = [{"method": name, "seconds" + per: result.seconds, **score(result)} for name, result in runs.items()]
    return comparison_table(rows, title=title)
