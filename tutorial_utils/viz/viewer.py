"""The slice viewer: named volumes side by side with a slice slider.

:func:`show_volumes` gives a live slider (ipywidgets core widgets only, so it
works in JupyterLab, classic Notebook and Colab) and, in the same output, a
self-contained HTML slider over pre-rendered slices for places where no kernel
runs (the published book, a notebook executed headless in CI). Jupyter front-ends
show the widget; static renderers show the HTML. The static form's HTML and
JavaScript are files in ``tutorial_utils/templates``.

With ``orientation=`` slices are shown as radiologists show them (see
:func:`~tutorial_utils.viz.orientation.plane_for`); the arrays are never changed.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
from typing import Dict, List, Mapping, Optional, Tuple

import matplotlib
import numpy as np

from ._common import LABEL_COLOUR, _template, _volume
from .orientation import VIEWS, Plane, check_orientation, opening_slice, plane_for

__all__ = ["show_volumes", "SliceViewer"]

_VIEWER_IDS = itertools.count()
Shape = Tuple[int, int, int]


def _to_rgb(plane: np.ndarray, cmap: str, limits: Tuple[float, float]) -> np.ndarray:
    """``plane`` scaled from ``limits`` to [0, 1] and coloured by the matplotlib map ``cmap``: ``plane.shape + (3,)``."""
    low, high = limits
    scaled = np.clip((plane - low) / (high - low if high > low else 1.0), 0, 1)
    return matplotlib.colormaps[cmap](scaled)[..., :3]


def _png(rgb: np.ndarray, scale: int) -> bytes:
    """PNG bytes of a grey ``(rows, cols)`` or RGB ``(rows, cols, 3)`` image in [0, 1], each pixel ``scale`` times."""
    from PIL import Image

    array = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(array)
    if scale != 1:
        image = image.resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)  # 5x faster than optimize=True, ~5 % larger
    return buffer.getvalue()


class SliceViewer:
    """Side-by-side volumes with a slice slider; see :func:`show_volumes`.

    Attributes
    ----------
    panels : dict name -> ndarray ``(d1, d2, d3)``
    overlays : dict name -> ndarray ``(d1, d2, d3)``
        A label drawn over the panel of the same name.
    sliders : list of ipywidgets.IntSlider
        One per distinct volume shape: same-shaped panels share a slider
        (empty until :attr:`widget` is first built).
    axis : int
        The array axis sliced along first.
    orientation : str or None
        The volumes' 3-letter code; with it slices are shown as radiologists show them.
    """

    def __init__(self, volumes: Mapping[str, np.ndarray], overlays: Optional[Mapping[str, np.ndarray]] = None,
                 axis=None, cmaps: Optional[Mapping[str, str]] = None, title: str = "",
                 max_frames: int = 40, max_bytes: int = 1_000_000, scale: Optional[int] = None,
                 orientation: Optional[str] = None):
        if not volumes:
            raise ValueError("`volumes` is empty; give at least one named volume.")
        self.orientation = check_orientation(orientation) if orientation is not None else None
        self.axis = plane_for(axis, self.orientation).axis
        self.panels: Dict[str, np.ndarray] = {name: _volume(v, name) for name, v in volumes.items()}
        self.overlays = self._checked_overlays(overlays or {})
        self.cmaps = {name: (cmaps or {}).get(name, "gray") for name in self.panels}
        self.limits = {name: (float(v.min()), float(v.max())) for name, v in self.panels.items()}
        self.shapes: List[Shape] = list(dict.fromkeys(v.shape for v in self.panels.values()))
        self.opacity = 0.4
        self.title = title
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        largest = max(max(v.shape) for v in self.panels.values())
        self.scale = scale if scale is not None else max(1, 256 // largest)
        self._widget = None
        self.sliders = []

    def _checked_overlays(self, overlays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        checked = {name: _volume(v, f"overlays[{name!r}]") for name, v in overlays.items()}
        for name, label in checked.items():
            if name not in self.panels:
                raise ValueError(f"overlay {name!r} names no volume; volumes are {list(self.panels)}.")
            if label.shape != self.panels[name].shape:
                raise ValueError(f"overlay {name!r} has shape {label.shape} but its volume has {self.panels[name].shape}.")
        return checked

    # -- how slices look
    def plane(self, axis: Optional[int] = None) -> Plane:
        """How slices along ``axis`` (default: the viewer's) are shown."""
        return plane_for(self.axis if axis is None else axis, self.orientation)

    def opening_index(self, shape: Shape, axis: Optional[int] = None) -> int:
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
        """The slider (shape group) a panel follows."""
        return self.shapes.index(self.panels[name].shape)

    def _axes_text(self, axis: Optional[int] = None) -> str:
        plane = self.plane(axis)
        if plane.view is None:
            return f"down: {plane.row_label}; right: {plane.col_label}"
        return f"up: {plane.row_label}; right: {plane.col_label}"

    def _width(self, name: str, axis: Optional[int] = None) -> int:
        """Screen width of a panel's image in pixels."""
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
        return [(f"{view} (array axis {plane_for(view, self.orientation).axis})",
                 plane_for(view, self.orientation).axis) for view in VIEWS]

    def _build_widget(self):
        """The ipywidgets form of the viewer: view choice, sliders, opacity, images."""
        import ipywidgets as widgets

        self._make_controls(widgets)
        for slider in self.sliders:
            slider.observe(self._redraw, names="value")
        self._opacity.observe(self._redraw, names="value")
        self._axis_choice.observe(self._change_axis, names="value")
        self._redraw()
        controls = [self._axis_choice, *self.sliders] + ([self._opacity] if self.overlays else [])
        panels = [widgets.VBox([widgets.HTML(f"<b>{html.escape(name)}</b>"), image])
                  for name, image in self._images.items()]
        header = [widgets.HTML(f"<h4>{html.escape(self.title)}</h4>")] if self.title else []
        return widgets.VBox(header + [widgets.HBox(controls), self._axes_label, widgets.HBox(panels)])

    def _make_controls(self, widgets) -> None:
        """The live form's widgets: view choice, one slider per shape, opacity, one image per panel."""
        self._axis_choice = widgets.Dropdown(options=self._axis_options(), value=self.axis, description="view",
                                             layout=widgets.Layout(width="260px"))
        self.sliders = [
            widgets.IntSlider(value=self.opening_index(shape), min=0, max=shape[self.axis] - 1,
                              description="slice" if len(self.shapes) == 1 else f"slice {i + 1}",
                              continuous_update=True)
            for i, shape in enumerate(self.shapes)
        ]
        self._opacity = widgets.FloatSlider(value=self.opacity, min=0.0, max=1.0, step=0.05,
                                            description="label opacity")
        self._images = {name: widgets.Image(format="png", layout=widgets.Layout(width=f"{self._width(name)}px"))
                        for name in self.panels}
        self._axes_label = widgets.HTML(html.escape(self._axes_text()))

    def _redraw(self, *_) -> None:
        """Show every panel's slice at its slider, along the chosen axis, at the chosen opacity."""
        for name, image in self._images.items():
            slider = self.sliders[self._group(name)]
            image.value = self.render(name, slider.value, self._axis_choice.value, self._opacity.value)

    def _change_axis(self, change) -> None:
        """A new view: new slider ranges, each reopened on its most structure; new widths and axis labels."""
        axis = change["new"]
        for slider, shape in zip(self.sliders, self.shapes):
            slider.max = shape[axis] - 1
            slider.value = self.opening_index(shape, axis)
        for name, image in self._images.items():
            image.layout.width = f"{self._width(name, axis)}px"
        self._axes_label.value = html.escape(self._axes_text(axis))
        self._redraw()

    # -- static form
    def frame_indices(self) -> Dict[Shape, list]:
        """Slice indices pre-rendered for the static form, per volume shape (the opening
        slice always among them)."""
        return {shape: sorted(set(np.linspace(0, shape[self.axis] - 1, min(self.max_frames, shape[self.axis]))
                                  .round().astype(int).tolist()) | {self.opening_index(shape)})
                for shape in self.shapes}

    def _frames(self) -> Tuple[Dict[Shape, list], Dict[str, list]]:
        """Indices and base64 PNG frames, halved until they fit in ``max_bytes``."""
        indices = self.frame_indices()
        while True:
            frames = {name: [base64.b64encode(self.render(name, i)).decode() for i in indices[v.shape]]
                      for name, v in self.panels.items()}
            size = sum(len(f) for group in frames.values() for f in group)
            if size <= self.max_bytes or max(len(i) for i in indices.values()) <= 2:
                return indices, frames
            indices = {shape: sorted(set(index[::2]) | {self.opening_index(shape)})
                       for shape, index in indices.items()}

    def to_html(self) -> str:
        """Self-contained HTML: images as data URIs and a short script (from the
        package's ``templates/``) that swaps them as a slider moves.

        Keeps under ``max_bytes`` by dropping frames evenly when needed; loads
        nothing from the network.
        """
        indices, frames = self._frames()
        start = {shape: indices[shape].index(self.opening_index(shape)) for shape in self.shapes}
        data = json.dumps({"frames": [frames[name] for name in self.panels],
                           "slices": [indices[shape] for shape in self.shapes]}).replace("</", "<\\/")
        uid = "tu-viewer-" + hashlib.sha1(data.encode()).hexdigest()[:12] + f"-{next(_VIEWER_IDS)}"
        return _template("slice_viewer.html").substitute(
            uid=uid, frame_count=max(len(i) for i in indices.values()), sliders=self._sliders_html(indices, start),
            panels=self._panels_html(frames, start),
            title=f"<div><b>{html.escape(self.title)}</b></div>" if self.title else "",
            axes=html.escape(self._axes_text()), data=data, script=_template("slice_viewer.js").template)

    def _sliders_html(self, indices: Dict[Shape, list], start: Dict[Shape, int]) -> str:
        """The static form's range inputs, one per shape group, each on its opening frame."""
        plane = self.plane()
        along = f"{plane.view} slice" if plane.view else "slice"
        return "".join(_template("slice_viewer_slider.html").substitute(
            label=(along if len(self.shapes) == 1 else f"{along} {group + 1}") + f" (array axis {self.axis})",
            last=len(indices[shape]) - 1, value=start[shape], group=group, shown=indices[shape][start[shape]])
            for group, shape in enumerate(self.shapes))

    def _panels_html(self, frames: Dict[str, list], start: Dict[Shape, int]) -> str:
        """The static form's images, one per panel, each showing its group's opening frame."""
        return "".join(_template("slice_viewer_panel.html").substitute(
            name=html.escape(name), group=self._group(name), width=self._width(name),
            frame=frames[name][start[volume.shape]]) for name, volume in self.panels.items())

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": f"SliceViewer({', '.join(self.panels)}; static slider below when no widgets)",
                  "text/html": self.to_html()}
        try:
            widget_bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude) or {}
        except Exception:  # no ipywidgets or no kernel: the static form is enough
            widget_bundle = {}
        bundle.update({k: v for k, v in widget_bundle.items() if k != "text/plain"})
        return bundle


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
