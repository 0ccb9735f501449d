"""viz.orientation: slices shown as radiologists expect, in every figure and the viewer."""

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
