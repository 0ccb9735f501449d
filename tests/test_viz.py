"""viz.py: the slice viewer's sliders and static form, and the shared plots."""
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tutorial_utils import viz  # noqa: E402

RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


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


def static_data(html):
    """The frames and slice indices the static viewer's script reads."""
    return json.loads(re.search(r'<script type="application/json" class="tu-slice-data">(.*?)</script>',
                                html, re.S).group(1))


def test_static_html_has_expected_frames_and_stays_in_budget():
    volume = RNG.random((64, 64, 40))
    viewer = viz.show_volumes({"a": volume, "b": volume * 2}, max_frames=20)
    html = viewer.to_html()
    assert html.count("src=\"data:image/png;base64,") == 2  # one visible image per panel
    payload = static_data(html)
    assert [len(frames) for frames in payload["frames"]] in ([20, 20], [21, 21])  # + the opening slice
    assert 20 in payload["slices"][0]
    assert payload["slices"][0][0] == 0 and payload["slices"][0][-1] == 39
    assert "http://" not in html and "https://" not in html, "nothing loaded from the network"
    assert "addEventListener" in html, "the script from the template is inlined"
    tight = viz.show_volumes({"noise": RNG.random((128, 128, 64))}, max_bytes=200_000).to_html()
    assert len(tight) < 260_000
    count = len(static_data(tight)["slices"][0])
    assert 2 <= count < 40


def test_no_javascript_in_python_sources():
    package = Path(viz.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text()
        for marker in ("addEventListener", "document.", "querySelector", "JSON.parse"):
            assert marker not in text, f"{source.name} holds JavaScript ({marker})"
    assert (package / "templates" / "slice_viewer.js").is_file()


def test_mimebundle_offers_widget_and_static_html():
    bundle = viz.show_volumes({"image": RNG.random((8, 8, 8))})._repr_mimebundle_()
    assert "text/html" in bundle and "tu-slice-viewer" in bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_overlay_colours_are_the_colour_blind_safe_palette():
    pred = np.array([1, 1, 0, 0], float)
    true = np.array([1, 0, 1, 0], float)
    rgb = viz.overlay_rgb(true, pred)  # fixed first
    np.testing.assert_allclose(rgb[0], viz.OVERLAY_COLOURS["true positive"])
    np.testing.assert_allclose(rgb[1], viz.OVERLAY_COLOURS["false positive"])
    np.testing.assert_allclose(rgb[2], viz.OVERLAY_COLOURS["false negative"])
    np.testing.assert_allclose(rgb[3], 0)


def test_static_plots_have_titles_and_labels():
    volume = RNG.random((16, 16, 8))
    ddf = RNG.normal(0, 0.5, (16, 16, 8, 3))
    axes = [
        viz.plot_overlay(fixed_label=volume > 0.4, warped_label=volume > 0.5),
        viz.plot_checkerboard(volume, volume[::-1]),
        viz.plot_difference(volume, volume[::-1]),
        viz.plot_deformed_grid(ddf),
        viz.plot_jacobian(1 + RNG.normal(0, 0.5, (16, 16, 8))),
        viz.plot_loss_curves({"total": [3, 2, 1], "image": [2, 1, 0.5]}),
    ]
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    for fig in [viz.plot_montage(volume), viz.plot_registration_rows(fixed=volume, moving=volume, warped=volume)]:
        assert fig._suptitle is not None and fig._suptitle.get_text()


def test_viewer_refuses_bad_input():
    with pytest.raises(ValueError, match="needs one volume"):
        viz.show_volumes({"batch": RNG.random((2, 4, 4, 4))})
    with pytest.raises(ValueError, match="names no volume"):
        viz.show_volumes({"a": RNG.random((4, 4, 4))}, overlays={"b": RNG.random((4, 4, 4))})


# ---------------------------------------------------------------- orientation
def marker_volume(shape=(10, 12, 14)):
    """An LPS volume with one bright voxel at the patient's anterior-left-superior corner
    (large d1 = left, small d2 = anterior, large d3 = superior)."""
    volume = np.zeros(shape)
    volume[8, 2, 11] = 1.0
    return volume


def bright_pixel(plane2d):
    row, col = np.unravel_index(np.argmax(plane2d), plane2d.shape)
    return row < plane2d.shape[0] / 2, col >= plane2d.shape[1] / 2  # (in top half, in right half)


@pytest.mark.parametrize("view, index, expected", [
    ("axial", 11, (True, True)),     # anterior up, patient's left on the right
    ("coronal", 2, (True, True)),    # superior up, patient's left on the right
    ("sagittal", 8, (True, False)),  # superior up, anterior on the left
])
def test_marker_appears_where_radiologists_expect_it(view, index, expected):
    volume = marker_volume()
    ax = viz.plot_difference(volume, np.zeros_like(volume), axis=view, index=index, orientation="LPS")
    assert bright_pixel(np.asarray(ax.images[0].get_array())) == expected
    ax = viz.plot_slice(volume, axis=view, index=index, orientation="LPS")
    assert bright_pixel(np.asarray(ax.images[0].get_array())) == expected
    viewer = viz.show_volumes({"marker": volume}, axis=view, orientation="LPS")
    from PIL import Image
    import io
    rendered = np.asarray(Image.open(io.BytesIO(viewer.render("marker", index))))
    assert bright_pixel(rendered) == expected


def test_same_anatomy_in_another_array_order_is_shown_the_same():
    lps = marker_volume()
    spl = np.transpose(lps, (2, 1, 0))  # d1 superior, d2 posterior, d3 left (like the prostate MR)
    for view in ("axial", "coronal", "sagittal"):
        a, b = viz.plane_for(view, "LPS"), viz.plane_for(view, "SPL")
        index_a = [8, 2, 11][a.axis]
        index_b = [11, 2, 8][b.axis]
        np.testing.assert_array_equal(a.take(lps, index_a), b.take(spl, index_b))


def test_axis_labels_name_direction_and_array_axis():
    ax = viz.plot_jacobian(np.ones((6, 7, 8)), orientation="LPS")
    assert ax.get_ylabel() == "anterior ↑ (array axis 1)"
    assert ax.get_xlabel() == "patient's left → (array axis 0)"
    assert "axial slice" in ax.get_title() and "(array axis 2)" in ax.get_title()
    ax = viz.plot_overlay(fixed_label=np.ones((6, 7, 8)), warped_label=np.ones((6, 7, 8)),
                          axis="sagittal", orientation="SPL")
    assert ax.get_ylabel() == "superior ↑ (array axis 0)" and ax.get_xlabel() == "posterior → (array axis 1)"
    fig = viz.plot_montage(np.ones((6, 7, 8)), axis="coronal", orientation="LPS")
    assert fig.axes[0].get_ylabel() == "superior ↑ (array axis 2)"
    html = viz.show_volumes({"v": np.ones((6, 7, 8))}, orientation="LPS").to_html()
    assert "anterior ↑ (array axis 1)" in html and "axial slice" in html


def test_deformed_grid_moves_toward_patients_left_on_screen_right():
    ddf = np.zeros((9, 9, 9, 3))
    ddf[..., 0] = 1.5  # every voxel displaced towards the patient's left (d1 is L)
    ax = viz.plot_deformed_grid(ddf, spacing=1, orientation="LPS")
    xs = np.concatenate([line.get_xdata() for line in ax.lines])
    still = np.concatenate([line.get_xdata() for line in viz.plot_deformed_grid(
        np.zeros_like(ddf), spacing=1, orientation="LPS").lines])
    np.testing.assert_allclose(xs, still + 1.5)


def test_bad_orientation_and_view_names_are_refused():
    with pytest.raises(ValueError, match="one of L/R"):
        viz.plane_for("axial", "LLS")
    with pytest.raises(ValueError, match="only together with `orientation=`"):
        viz.plane_for("axial")
    with pytest.raises(ValueError, match="name a view"):
        viz.plane_for("oblique", "LPS")


def test_arrays_are_not_reoriented():
    volume = marker_volume()
    before = volume.copy()
    viz.show_volumes({"v": volume}, orientation="LPS").to_html()
    np.testing.assert_array_equal(volume, before)


# ---------------------------------------------------------------- opening slice
def test_viewers_open_on_the_slice_with_most_structure():
    image = RNG.random((10, 12, 14))
    label = np.zeros((10, 12, 14))
    label[3:6, 3:6, 9] = 1
    label[4, 4, 3] = 1
    viewer = viz.show_volumes({"image": image, "other": image}, overlays={"image": label})
    assert viewer.sliders == [] and viewer.widget is not None
    assert [s.value for s in viewer.sliders] == [9]
    html = viewer.to_html()
    assert re.search(r'value="(\d+)" data-group="0"', html) and \
        static_data(html)["slices"][0][int(re.search(r'value="(\d+)" data-group="0"', html).group(1))] == 9
    plain = viz.show_volumes({"image": image})
    assert plain.opening_index((10, 12, 14)) == 7 and [s.value for s in plain.widget and plain.sliders] == [7]
    ax = viz.plot_overlay(fixed_label=label, warped_label=label)
    assert "slice 9" in ax.get_title()
    assert "slice 9" in viz.plot_slice(image, label=label).get_title()
    assert "slice 7" in viz.plot_slice(image).get_title()
    # changing the view reopens on the most structure along the new axis
    controls = viewer.widget.children[0].children
    controls[0].value = 0
    assert viewer.sliders[0].value == 4


# ---------------------------------------------------------------- the static form in a browser
def test_static_viewer_works_in_a_browser():
    """Two viewers on one page (as in a chapter): each slider moves only its own images,
    the read-out shows the slice index, and no script fails. Needs Chromium."""
    import shutil

    executable = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                       if shutil.which(n)), None)
    if executable is None:
        pytest.skip("no Chromium on this machine")
    sync_api = pytest.importorskip("playwright.sync_api")
    label = np.zeros((10, 12, 14))
    label[3:6, 3:6, 9] = 1
    first = viz.show_volumes({"a": RNG.random((10, 12, 14)), "b": RNG.random((10, 12, 14))},
                             overlays={"a": label}, orientation="LPS")
    second = viz.show_volumes({"c": RNG.random((6, 7, 8))})
    page_html = f"<html><body>{first.to_html()}{second.to_html()}</body></html>"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_content(page_html)
        viewers = page.query_selector_all(".tu-slice-viewer")
        assert len(viewers) == 2
        slider = viewers[0].query_selector("input[type=range]")
        assert viewers[0].query_selector("[data-readout='0']").text_content() == "9", "opens on the label"
        before = [img.get_attribute("src") for img in page.query_selector_all("img")]
        slider.evaluate("s => { s.value = 0; s.dispatchEvent(new Event('input', {bubbles: true})); }")
        after = [img.get_attribute("src") for img in page.query_selector_all("img")]
        assert after[0] != before[0] and after[1] != before[1], "both panels of the first viewer follow"
        assert after[2] == before[2], "the second viewer is left alone"
        assert viewers[0].query_selector("[data-readout='0']").text_content() == "0"
        browser.close()
    assert not errors, errors


def test_grid_3d_draws_every_grid_line_through_the_moved_points():
    ddf = RNG.normal(0, 0.3, (4, 5, 6, 3)).astype(np.float32)
    ax = viz.plot_grid_3d(ddf, orientation="LPS")
    grey, blue = ax.lines
    xs, ys, zs = blue.get_data_3d()
    drawn = np.stack([xs, ys, zs], -1)
    drawn = drawn[~np.isnan(drawn[:, 0])]
    assert len(drawn) == 3 * 4 * 5 * 6  # every point once per axis-aligned line through it
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij"), -1)
    expected = np.unique(np.round((grid + ddf).reshape(-1, 3), 6), axis=0)
    np.testing.assert_allclose(np.unique(np.round(drawn, 6), axis=0), expected)
    assert "patient's left" in ax.get_xlabel()


def test_fixed_and_moving_are_keyword_only_and_fixed_comes_first():
    fixed = np.zeros((4, 5, 6)); fixed[1, 1, 3] = 1
    warped = np.zeros((4, 5, 6)); warped[2, 2, 3] = 1
    with pytest.raises(TypeError):
        viz.plot_overlay(warped, fixed)
    with pytest.raises(TypeError):
        viz.plot_registration_rows(fixed, fixed, fixed)
    ax = viz.plot_overlay(fixed_label=fixed, warped_label=warped, index=3)
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown[1, 1], viz.OVERLAY_COLOURS["false negative"])  # fixed only
    np.testing.assert_allclose(shown[2, 2], viz.OVERLAY_COLOURS["false positive"])  # warped only
    fig = viz.plot_registration_rows(fixed=fixed, moving=warped, warped=warped, indices=[3])
    assert [a.get_title().split(",")[0] for a in fig.axes] == ["fixed", "moving", "warped moving"]
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), fixed[:, :, 3])
