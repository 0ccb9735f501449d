"""viz.py: the slice viewer's sliders and static form, and the shared plots."""
import re

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tutorial_utils import viz  # noqa: E402

RNG = np.random.default_rng(3)


def test_slider_ranges_match_volumes_and_same_shapes_share_one():
    viewer = viz.show_volumes(
        {"moving": RNG.random((10, 12, 14)), "fixed": RNG.random((10, 12, 14)), "ddf |u|": RNG.random((5, 6, 7))},
        axis=2,
    )
    widget = viewer.widget
    assert widget is not None
    assert len(viewer.sliders) == 2
    assert [s.max for s in viewer.sliders] == [13, 6]
    assert [s.value for s in viewer.sliders] == [7, 3]


def test_shared_slider_moves_every_panel_of_its_shape():
    moving = np.zeros((6, 6, 8))
    fixed = np.zeros((6, 6, 8))
    for k in range(8):
        moving[..., k] = k
        fixed[..., k] = 7 - k
    viewer = viz.show_volumes({"moving": moving, "fixed": fixed})
    panels = viewer.widget.children[-1].children
    images = [panel.children[1] for panel in panels]
    before = [image.value for image in images]
    viewer.sliders[0].value = 1
    after = [image.value for image in images]
    assert all(b != a for b, a in zip(before, after)), "both panels follow the one slider"
    assert after[0] == viewer.render("moving", 1) and after[1] == viewer.render("fixed", 1)


def test_axis_change_updates_slider_range():
    viewer = viz.show_volumes({"image": RNG.random((10, 20, 30))}, axis=2)
    controls = viewer.widget.children[0].children
    axis_choice, slider = controls[0], controls[1]
    assert slider.max == 29
    axis_choice.value = 0
    assert slider.max == 9 and slider.value <= 9


def test_static_html_has_expected_frames_and_stays_in_budget():
    volume = RNG.random((64, 64, 40))
    viewer = viz.show_volumes({"a": volume, "b": volume * 2}, overlays={"a": volume > 0.5}, max_frames=20)
    html = viewer.to_html()
    assert html.count("src=\"data:image/png;base64,") == 2  # one visible image per panel
    frames = re.search(r"var frames=(\[.*?\]\]);", html).group(1)
    assert frames.count('"') // 2 == 2 * 20
    assert "http://" not in html and "https://" not in html, "nothing loaded from the network"
    tight = viz.show_volumes({"noise": RNG.random((128, 128, 64))}, max_bytes=200_000).to_html()
    assert len(tight) < 260_000
    count = len(re.search(r"var slices=\[(\[.*?\])\]", tight).group(1).split(","))
    assert 2 <= count < 40


def test_mimebundle_offers_widget_and_static_html():
    bundle = viz.show_volumes({"image": RNG.random((8, 8, 8))})._repr_mimebundle_()
    assert "text/html" in bundle and "tu-slice-viewer" in bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_overlay_colours_are_the_colour_blind_safe_palette():
    pred = np.array([1, 1, 0, 0], float)
    true = np.array([1, 0, 1, 0], float)
    rgb = viz.overlay_rgb(pred, true)
    np.testing.assert_allclose(rgb[0], viz.OVERLAY_COLOURS["true positive"])
    np.testing.assert_allclose(rgb[1], viz.OVERLAY_COLOURS["false positive"])
    np.testing.assert_allclose(rgb[2], viz.OVERLAY_COLOURS["false negative"])
    np.testing.assert_allclose(rgb[3], 0)


def test_static_plots_have_titles_and_labels():
    volume = RNG.random((16, 16, 8))
    ddf = RNG.normal(0, 0.5, (16, 16, 8, 3))
    axes = [
        viz.plot_overlay(volume > 0.5, volume > 0.4),
        viz.plot_checkerboard(volume, volume[::-1]),
        viz.plot_difference(volume, volume[::-1]),
        viz.plot_deformed_grid(ddf),
        viz.plot_jacobian(1 + RNG.normal(0, 0.5, (16, 16, 8))),
        viz.plot_loss_curves({"total": [3, 2, 1], "image": [2, 1, 0.5]}),
    ]
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    for fig in [viz.plot_montage(volume), viz.plot_registration_rows(volume, volume, volume)]:
        assert fig._suptitle is not None and fig._suptitle.get_text()


def test_viewer_refuses_bad_input():
    with pytest.raises(ValueError, match="needs one volume"):
        viz.show_volumes({"batch": RNG.random((2, 4, 4, 4))})
    with pytest.raises(ValueError, match="names no volume"):
        viz.show_volumes({"a": RNG.random((4, 4, 4))}, overlays={"b": RNG.random((4, 4, 4))})
