"""metrics.py against brute-force NumPy/SciPy references and analytic cases."""
import numpy as np
import pytest
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


def test_jacobian_of_affine_ddf_is_constant_determinant():
    theta = warp.random_transform_generator(1, 0.2, seed=3)
    ddf = warp.ddf_from_affine(theta, (8, 9, 10)).numpy()
    det = metrics.jacobian_determinant(ddf)
    assert det.shape == (1, 8, 9, 10)
    np.testing.assert_allclose(det, np.linalg.det(theta.numpy()[0, :3]), rtol=1e-4)


def test_jacobian_of_quadratic_field_and_folding():
    size = (12, 6, 6)
    grid = warp.get_reference_grid(size).numpy()
    a = 0.1
    ddf = np.zeros(size + (3,), np.float32)
    ddf[..., 0] = -a * grid[..., 0] ** 2  # d/dx1 (x1 + u1) = 1 - 2 a x1
    det = metrics.jacobian_determinant(ddf)
    np.testing.assert_allclose(det[1:-1, 2, 2], 1 - 2 * a * np.arange(1, 11), atol=1e-5)
    assert metrics.folding_fraction(ddf) == pytest.approx(np.mean(det <= 0))
    assert metrics.folding_fraction(np.zeros((1, 5, 5, 5, 3))) == 0.0
    inner = det[2:-2, 2:-2, 2:-2]
    assert metrics.folding_fraction(ddf, margin=2) == pytest.approx(np.mean(inner <= 0))


def test_affine_residual_zero_for_exact_inverse_and_grows_otherwise():
    true = warp.random_transform_generator(1, 0.2, seed=4).numpy()[0]
    matrix = np.eye(4)
    matrix[:, :3] = true
    inverse = np.linalg.inv(matrix)[:, :3]  # row-vector convention: x_h @ M, so inverse is M^-1
    mean, worst = metrics.affine_residual(inverse, true, (16, 16, 8))
    assert mean < 1e-3 and worst < 1e-3
    mean_id, worst_id = metrics.affine_residual(warp.identity_affine(), true, (16, 16, 8))
    assert mean_id > 0.5 and worst_id >= mean_id


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.binary_dice(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4))), "`label_true` has shape (1, 4, 4, 4)"),
        (lambda: metrics.binary_dice(np.zeros((4, 4, 4)), np.zeros((4, 4, 5))), "same grid"),
        (lambda: metrics.jacobian_determinant(np.zeros((4, 4, 4, 2))), "`ddf` has shape (4, 4, 4, 2)"),
        (lambda: metrics.affine_residual(np.zeros((3, 3)), np.zeros((4, 3)), (4, 4, 4)), "`theta_estimated` has shape (3, 3)"),
    ],
)
def test_wrong_input_gets_clear_error(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
