"""viz.figures: the static plots' colours, labels and conventions."""

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


def test_deformed_grid_moves_toward_patients_left_on_screen_right():
    ddf = np.zeros((9, 9, 9, 3))
    ddf[..., 0] = 1.5  # every voxel displaced towards the patient's left (d1 is L)
    ax = viz.plot_deformed_grid(ddf, spacing=1, orientation="LPS")
    xs = np.concatenate([line.get_xdata() for line in ax.lines])
    still = np.concatenate([line.get_xdata() for line in viz.plot_deformed_grid(
        np.zeros_like(ddf), spacing=1, orientation="LPS").lines])
    np.testing.assert_allclose(xs, still + 1.5)


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
