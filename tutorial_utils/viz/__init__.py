"""Plots, the slice viewer and notice boxes the chapters share.

One concern per module; every public name is importable from here
(``viz.plot_slice(...)``, ``viz.show_volumes(...)``):

- :mod:`~tutorial_utils.viz.orientation`  which way is up: orientation codes
  (``"LPS"``), :class:`Plane`, :func:`plane_for`, :func:`opening_slice`
- :mod:`~tutorial_utils.viz.figures`      the static matplotlib figures (``plot_*``,
  :func:`overlay_rgb`)
- :mod:`~tutorial_utils.viz.viewer`       the slice viewer, :func:`show_volumes`: a live
  widget and a self-contained HTML slider (its HTML/JavaScript lives in
  ``tutorial_utils/templates``)
- :mod:`~tutorial_utils.viz.notices`      :func:`notice`, a colour-blind-safe warning box

Figures and the viewer take plain ``(d1, d2, d3)`` NumPy arrays (a DDF
``(d1, d2, d3, 3)``, in voxels). Give ``orientation=`` (a loader's 3-letter code)
to see standard radiological views, each image axis labelled by its anatomical
direction and array axis; arrays are never reoriented. Without it, slices are
shown in array order. Colours are from the Okabe-Ito palette (colour-blind safe).
"""
from ._common import LABEL_COLOUR  # noqa: F401  (importable as before, not in __all__)
from .figures import (OVERLAY_COLOURS, overlay_rgb, plot_checkerboard, plot_deformed_grid, plot_difference,
                      plot_grid_3d, plot_jacobian, plot_loss_curves, plot_montage, plot_overlay,
                      plot_registration_rows, plot_slice, plot_training_schematic)
from .notices import NOTICE_KINDS, Notice, notice
from .orientation import ANATOMY, VIEWS, Plane, check_orientation, opening_slice, plane_for
from .viewer import SliceViewer, show_volumes

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
    "notice",
    "Notice",
    "NOTICE_KINDS",
]
