"""viz.viewer: the slice viewer's sliders, live widget and static form."""
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


def static_data(html):
    """The frames and slice indices the static viewer's script reads."""
    return json.loads(re.search(r'<script type="application/json" class="tu-slice-data">(.*?)</script>',
                                html, re.S).group(1))


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


def test_mimebundle_offers_widget_and_static_html():
    bundle = viz.show_volumes({"image": RNG.random((8, 8, 8))})._repr_mimebundle_()
    assert "text/html" in bundle and "tu-slice-viewer" in bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_viewer_refuses_bad_input():
    with pytest.raises(ValueError, match="needs one volume"):
        viz.show_volumes({"batch": RNG.random((2, 4, 4, 4))})
    with pytest.raises(ValueError, match="names no volume"):
        viz.show_volumes({"a": RNG.random((4, 4, 4))}, overlays={"b": RNG.random((4, 4, 4))})


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
