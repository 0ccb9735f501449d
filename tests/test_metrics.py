"""metrics.py against brute-force NumPy/SciPy references and analytic cases."""
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
    """u_1 = -a x_1^2: the Jacobian determinant is 1 - 2 a x_1 (analytic)."""
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
    # det = 1 - 0.14 x1 <= 0 for x1 = 8 .. 11 (of 12); interior (margin 2): x1 = 8, 9 of 2 .. 9
    assert result["folding_whole"] == pytest.approx(4 / 12)
    assert result["folding_interior"] == pytest.approx(2 / 8)
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
