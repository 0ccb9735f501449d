"""metrics.py against brute-force NumPy/SciPy references and analytic cases."""
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from tutorial_utils import metrics, warp

RNG = np.random.default_rng(7)


def ball(shape, centre, radius):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return (np.linalg.norm(grid - np.array(centre), axis=-1) <= radius).astype(np.float32)


def test_binary_dice_cases():
    label = ball((20, 20, 20), (10, 10, 10), 5)
    assert metrics.binary_dice(label, label) == 1.0
    assert metrics.binary_dice(label, np.zeros_like(label)) == 0.0
    shifted = np.roll(label, 3, axis=0)
    expected = 2 * np.sum(label * shifted) / (label.sum() + shifted.sum())
    assert metrics.binary_dice(label, shifted) == pytest.approx(expected)


def brute_force_hausdorff(a, b, percentile, spacing=(1, 1, 1)):
    from scipy import ndimage

    def surface(mask):
        return np.argwhere(mask & ~ndimage.binary_erosion(mask, border_value=0)) * np.array(spacing)

    sa, sb = surface(a > 0.5), surface(b > 0.5)
    d = cdist(sa, sb)
    return np.percentile(np.concatenate([d.min(1), d.min(0)]), percentile)


@pytest.mark.parametrize("percentile", [95, 100])
def test_hausdorff_matches_brute_force(percentile):
    a = ball((24, 24, 24), (11, 12, 12), 6)
    b = ball((24, 24, 24), (13, 11, 12), 5)
    spacing = (1.75, 1.25, 1.75)
    got = metrics.hausdorff_distance(a, b, percentile, spacing=spacing)
    assert got == pytest.approx(brute_force_hausdorff(a, b, percentile, spacing), rel=1e-6)
    assert metrics.hausdorff_distance(a, a, percentile) == 0.0


def test_centroid_distance_of_a_shift():
    a = ball((30, 30, 30), (10, 12, 14), 4)
    b = ball((30, 30, 30), (13, 12, 10), 4)
    assert metrics.centroid_distance(a, b) == pytest.approx(5.0, abs=1e-6)
    assert metrics.centroid_distance(a, b, spacing=(2, 1, 1)) == pytest.approx(np.hypot(6, 4), abs=1e-6)


def test_jacobian_of_affine_ddf_is_its_determinant_everywhere_including_borders():
    # analytic: u(x) = x A + b has Jacobian I + A at every voxel (no warp module involved)
    rng = np.random.default_rng(4)
    matrix = 0.3 * rng.standard_normal((3, 3))
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in (5, 7, 6)], indexing="ij"), -1)
    ddf = grid @ matrix + rng.standard_normal(3)
    det = metrics.jacobian_determinant(ddf[None])
    assert det.shape == (1, 5, 7, 6)
    np.testing.assert_allclose(det, np.linalg.det(np.eye(3) + matrix), rtol=1e-5)
    np.testing.assert_allclose(metrics.jacobian_determinant(ddf.astype(np.float32)), det[0], rtol=1e-5)
    theta = warp.random_transform_generator(1, 0.2, seed=3)
    ddf = warp.ddf_from_affine(theta, (8, 9, 10)).numpy()
    np.testing.assert_allclose(metrics.jacobian_determinant(ddf), np.linalg.det(theta.numpy()[0, :3]), rtol=1e-4)


def quadratic_ddf(size, a):
    """u_1 = -a x_1^2: the Jacobian determinant is 1 - 2 a x_1 (analytic); its forward
    (backward) difference gives 1 - a (2 x_1 + 1) (1 - a (2 x_1 - 1))."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in size], indexing="ij"), -1)
    ddf = np.zeros(size + (3,))
    ddf[..., 0] = -a * grid[..., 0] ** 2
    return ddf


def test_jacobian_of_quadratic_field_and_folding_match_analytic_values():
    size, a = (12, 6, 6), 0.1
    ddf = quadratic_ddf(size, a)
    det = metrics.jacobian_determinant(ddf)
    # second-order differences are exact for a quadratic, the outer planes included
    expected = np.broadcast_to((1 - 2 * a * np.arange(12.0))[:, None, None], size)
    np.testing.assert_allclose(det, expected, atol=1e-5)  # borders included
    assert metrics.folding_fraction(ddf) == pytest.approx(7 / 12)  # x1 = 5 .. 11
    assert metrics.folding_fraction(ddf, margin=2) == pytest.approx(5 / 8)  # x1 = 5 .. 9 of 2 .. 9
    assert metrics.folding_fraction(np.zeros((1, 5, 5, 5, 3))) == 0.0


def test_label_metrics_take_any_numeric_dtype():
    a = ball((16, 16, 16), (7, 8, 8), 4)
    b = ball((16, 16, 16), (9, 8, 7), 4)
    expected = metrics.binary_dice(a, b), metrics.hausdorff_distance(a, b), metrics.centroid_distance(a, b)
    assert expected[0] == pytest.approx(2 * np.sum(a * b) / (a.sum() + b.sum()))
    for dtype in [bool, np.uint8, np.int16, np.float64]:
        fa, fb = a.astype(dtype), b.astype(dtype)
        got = metrics.binary_dice(fa, fb), metrics.hausdorff_distance(fa, fb), metrics.centroid_distance(fa, fb)
        assert got == pytest.approx(expected)


def test_evaluate_registration_matches_independent_computations():
    size = (12, 10, 10)
    fixed = np.zeros(size, np.float32)
    fixed[3:8, 2:8, 3:7] = 1
    moving = np.zeros(size, np.float32)
    moving[4:10, 3:8, 2:7] = 1
    ddf = quadratic_ddf(size, 0.07) + np.array([0.0, 0.3, -0.2])
    result = metrics.evaluate_registration(ddf[None], fixed_label=fixed, moving_label=moving)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in size], indexing="ij"), -1)
    warped = ndimage.map_coordinates(moving.astype(float), np.moveaxis(grid + ddf, -1, 0), order=1, mode="constant")
    expected_dice = 2 * np.sum((fixed > 0.5) & (warped > 0.5)) / ((fixed > 0.5).sum() + (warped > 0.5).sum())
    assert set(result) == {"dice", "hd95", "folding_whole", "folding_interior"}
    assert all(isinstance(value, float) for value in result.values())
    assert result["dice"] == pytest.approx(expected_dice)
    assert result["hd95"] == pytest.approx(brute_force_hausdorff(fixed, warped, 95))
    # forward differences of u1 = -0.07 x1^2 give det = 1 - 0.07 (2 x1 + 1) <= 0 for x1 = 7 .. 11
    # (backward ones only from x1 = 8): 5 of 12; interior (margin 2): x1 = 7, 8, 9 of 2 .. 9
    assert result["folding_whole"] == pytest.approx(5 / 12)
    assert result["folding_interior"] == pytest.approx(3 / 8)
    same = metrics.evaluate_registration(np.zeros(size + (3,)), fixed_label=fixed[None, ..., None], moving_label=fixed)
    assert same == {"dice": 1.0, "hd95": 0.0, "folding_whole": 0.0, "folding_interior": 0.0}


def test_affine_residual_zero_for_exact_inverse_and_grows_otherwise():
    true = warp.random_transform_generator(1, 0.2, seed=4).numpy()[0]
    matrix = np.eye(4)
    matrix[:, :3] = true
    inverse = np.linalg.inv(matrix)[:, :3]  # row-vector convention: x_h @ M, so inverse is M^-1
    mean, worst = metrics.affine_residual(inverse, true, (16, 16, 8))
    assert mean < 1e-3 and worst < 1e-3
    mean_id, worst_id = metrics.affine_residual(warp.identity_affine(), true, (16, 16, 8))
    # independent: with the identity estimate the residual is |[x 1] @ theta_true - x|
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in (16, 16, 8)], indexing="ij"), -1)
    moved = np.concatenate([grid, np.ones(grid.shape[:-1] + (1,))], -1) @ true.astype(np.float64)
    distance = np.linalg.norm(moved - grid, axis=-1)
    assert (mean_id, worst_id) == pytest.approx((distance.mean(), distance.max()), rel=1e-4)
    assert metrics.affine_residual(inverse.astype(np.float32), true.astype(np.float64), [16, 16, 8]) == \
        pytest.approx((mean, worst), abs=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.binary_dice(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4))), "`fixed` has shape (1, 4, 4, 4)"),
        (lambda: metrics.binary_dice(np.zeros((4, 4, 4)), np.zeros((4, 4, 5))), "same grid"),
        (lambda: metrics.jacobian_determinant(np.zeros((4, 4, 4, 2))), "`ddf` has shape (4, 4, 4, 2)"),
        (lambda: metrics.jacobian_determinant(np.zeros((4, 2, 4, 3))), "at least 3 voxels per axis"),
        (lambda: metrics.jacobian_determinant(np.full((4, 4, 4, 3), np.nan)), "non-finite"),
        (lambda: metrics.binary_dice(np.zeros((4, 4, 4)), np.full((4, 4, 4), 255)), "`warped` has values in [255, 255]"),
        (lambda: metrics.hausdorff_distance(np.arange(64.0).reshape(4, 4, 4), np.zeros((4, 4, 4))), "(label == k)"),
        (lambda: metrics.centroid_distance(np.zeros((4, 4, 4)), -np.ones((4, 4, 4))), "`warped` has values in [-1, -1]"),
        (lambda: metrics.binary_dice(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), threshold=0), "`threshold` is 0"),
        (lambda: metrics.folding_fraction(np.zeros((4, 4, 4, 3)), margin=-1), "`margin` is -1"),
        (lambda: metrics.affine_residual(np.full((4, 3), np.nan), np.zeros((4, 3)), (4, 4, 4)), "non-finite"),
        (lambda: metrics.affine_residual(np.zeros((4, 3)), np.zeros((4, 3)), (4, 4)), "`grid_size` is (4, 4)"),
        (lambda: metrics.evaluate_registration(np.zeros((6, 6, 6, 3)), fixed_label=np.zeros((6, 6, 5)),
                                               moving_label=np.zeros((6, 6, 6))), "`fixed_label` has shape (6, 6, 5)"),
        (lambda: metrics.evaluate_registration(np.zeros((6, 6, 6, 3)), fixed_label=np.zeros((6, 6, 6)),
                                               moving_label=np.full((6, 6, 6), 2.0)), "`moving_label` has values in [2, 2]"),
        (lambda: metrics.affine_residual(np.zeros((3, 3)), np.zeros((4, 3)), (4, 4, 4)), "`theta_estimated` has shape (3, 3)"),
    ],
)
def test_wrong_input_gets_clear_error(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


# ---------------------------------------------------------------- folding: every one-sided combination (#22)
def loop_one_sided_determinants(ddf):
    """Float64 per-voxel loop: det(I + D u) for each of the 8 forward/backward choices,
    the missing neighbour at a border replaced by the other one-sided difference."""
    d1, d2, d3, _ = ddf.shape
    sizes = (d1, d2, d3)
    out = np.empty((8, d1, d2, d3))
    for index in np.ndindex(d1, d2, d3):
        for k, combo in enumerate(itertools.product((1, -1), repeat=3)):
            jac = np.eye(3)
            for axis, step in enumerate(combo):
                here = np.array(index)
                there = here.copy()
                there[axis] += step
                if not 0 <= there[axis] < sizes[axis]:
                    step = -step
                    there[axis] = here[axis] + step
                diff = (ddf[tuple(there)] - ddf[tuple(here)]) * step
                jac[:, axis] += diff
            out[(k,) + index] = np.linalg.det(jac)
    return out


def checkerboard_ddf(size=(8, 8, 8), amplitude=0.6):
    """An odd-even oscillation: invisible to central differences away from the border."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1)
    sign = (-1.0) ** grid.sum(-1)
    ddf = np.zeros(size + (3,))
    ddf[..., 0] = amplitude * sign
    return ddf


def test_checkerboard_folds_although_central_differences_say_it_does_not():
    ddf = checkerboard_ddf()
    central = metrics.jacobian_determinant(ddf)[2:-2, 2:-2, 2:-2]
    assert central.min() > 0  # the old definition: no folding inside
    loop = loop_one_sided_determinants(ddf)
    expected = np.mean(np.any(loop <= 0, axis=0))
    assert expected > 0.5
    assert metrics.folding_fraction(ddf) == pytest.approx(expected)
    assert metrics.folding_fraction(ddf, margin=2) == pytest.approx(np.mean(np.any(loop <= 0, 0)[2:-2, 2:-2, 2:-2]))
    assert metrics.folding_fraction(ddf, margin=2) > 0  # was 0.0 with central differences


def test_folding_matches_a_per_voxel_loop_on_a_random_field():
    ddf = 0.45 * RNG.standard_normal((6, 5, 7, 3))
    loop = loop_one_sided_determinants(ddf)
    assert metrics.folding_fraction(ddf) == pytest.approx(np.mean(np.any(loop <= 0, axis=0)))
    assert metrics.folding_fraction(ddf, margin=1) == pytest.approx(np.mean(np.any(loop <= 0, axis=0)[1:-1, 1:-1, 1:-1]))


def test_smooth_affine_and_reflected_fields_fold_nowhere_or_everywhere():
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in (7, 8, 9)], indexing="ij"), -1)
    smooth = np.stack([0.8 * np.sin(grid[..., 1] / 3.0), 0.5 * np.cos(grid[..., 2] / 4.0), 0 * grid[..., 0]], -1)
    assert metrics.folding_fraction(smooth) == 0.0
    matrix = np.array([[0.2, 0.1, 0.0], [-0.1, -0.3, 0.05], [0.0, 0.1, 0.4]])
    assert np.linalg.det(np.eye(3) + matrix) > 0
    assert metrics.folding_fraction(grid @ matrix + [1.0, -2.0, 0.5]) == 0.0
    reflected = np.zeros_like(grid)
    reflected[..., 0] = 6.0 - 2.0 * grid[..., 0]  # x1 -> 6 - x1: det -1 everywhere
    assert metrics.folding_fraction(reflected) == 1.0


def test_evaluate_registration_warps_labels_as_warp_warp_does():
    size = (10, 9, 11)
    moving = ball(size, (4, 5, 5), 3)
    ddf = 1.5 * RNG.standard_normal(size + (3,))
    ddf[..., 0] += 2.5  # some locations leave the volume: 0 there
    expected = warp.warp(moving[None], ddf[None].astype(np.float32)).numpy()[0]
    np.testing.assert_allclose(metrics.warp_label(moving, ddf.astype(np.float32)), expected, atol=1e-6)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in size], indexing="ij"), -1)
    scipy_warped = ndimage.map_coordinates(moving.astype(float), np.moveaxis(grid + ddf, -1, 0), order=1, mode="constant")
    np.testing.assert_allclose(metrics.warp_label(moving, ddf), scipy_warped, atol=1e-6)


def test_evaluate_pairs_is_evaluate_registration_per_pair():
    size = (10, 10, 10)
    fixed = np.stack([ball(size, (5, 5, 5), 3), ball(size, (4, 5, 6), 2)])
    moving = np.stack([ball(size, (6, 5, 5), 3), np.zeros(size, np.float32)])  # second: empty -> hd95 nan
    ddfs = 0.3 * RNG.standard_normal((2,) + size + (3,))
    scores = metrics.evaluate_pairs(ddfs, fixed, moving, spacing=(2.0, 1.0, 1.0))
    for i in range(2):
        single = metrics.evaluate_registration(ddfs[i], fixed_label=fixed[i], moving_label=moving[i],
                                               spacing=(2.0, 1.0, 1.0))
        for key, value in single.items():
            np.testing.assert_equal(scores["per_pair"][key][i], value)
    assert np.isnan(scores["per_pair"]["hd95"][1])
    assert scores["mean"]["hd95"] == scores["per_pair"]["hd95"][0]
    assert scores["mean"]["dice"] == pytest.approx(np.mean(scores["per_pair"]["dice"]))
    with pytest.raises(ValueError, match="`fixed_labels` has shape"):
        metrics.evaluate_pairs(ddfs, fixed[:1], moving)


def test_hd95_in_millimetres_with_spacing():
    size = (12, 12, 12)
    fixed, moving = ball(size, (5, 6, 6), 3), ball(size, (7, 6, 6), 3)
    result = metrics.evaluate_registration(np.zeros(size + (3,)), fixed_label=fixed, moving_label=moving,
                                           spacing=(2.5, 1.0, 1.0))
    assert result["hd95"] == pytest.approx(brute_force_hausdorff(fixed, moving, 95, (2.5, 1.0, 1.0)))


def test_numpy_modules_do_not_import_tensorflow():
    code = ("import sys, tutorial_utils.metrics, tutorial_utils.fields, tutorial_utils.affine, "
            "tutorial_utils.results; assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("spacing", [(0, 1, 1), (-1, 1, 1), (np.nan, 1, 1), (1, 1), (1, 1, 1, 1)])
def test_distances_refuse_a_meaningless_spacing(spacing):
    """A zero, negative or non-finite voxel size (or a wrong count) would give a wrong
    distance silently (0 for a zero spacing): each raises, naming `spacing`."""
    label = np.zeros((6, 6, 6))
    label[1:5, 1:5, 1:5] = 1
    moved = np.roll(label, 1, axis=0)
    with pytest.raises(ValueError, match="`spacing`"):
        metrics.hausdorff_distance(label, moved, 95.0, spacing=spacing)
    with pytest.raises(ValueError, match="`spacing`"):
        metrics.centroid_distance(label, moved, spacing=spacing)
    with pytest.raises(ValueError, match="`spacing`"):
        metrics.evaluate_registration(np.zeros((6, 6, 6, 3)), fixed_label=label, moving_label=moved,
                                      spacing=spacing)
