"""tutorial_utils.points against independent references: closed-form affine inverses,
ITK's own point mapping (itk.DisplacementFieldTransform), hand-computed landmarks
and distances, and SciPy's centre of mass on the course's labels."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tutorial_utils import points
from tutorial_utils.results import RegistrationResult

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------
# references written here, in NumPy float64, not with the package
# --------------------------------------------------------------------------
def grid(shape):
    return np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)


def rotation(angles):
    """A rotation matrix (row-vector convention) from three angles, float64."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def scaled_rotation():
    """``(A, t)`` with ``A = diag(s) R``: p -> p A + t; inverse q = (p - t) R^T diag(1/s)."""
    scales = np.array([1.08, 0.94, 1.03])
    turn = rotation([0.07, -0.05, 0.09])
    return np.diag(scales) @ turn, np.array([0.6, -0.9, 0.4]), (scales, turn)


def smooth_ddf(shape):
    """A smooth nonlinear field, displacements under a voxel, |grad u| < 1."""
    x = grid(shape)
    return np.stack([0.8 * np.sin(x[..., 1] / 3) + 0.3 * np.cos(x[..., 2] / 4),
                     0.5 * np.cos(x[..., 0] / 2.5) * np.sin(x[..., 2] / 5),
                     0.6 * np.sin((x[..., 0] + x[..., 1]) / 4)], axis=-1)


@pytest.fixture(scope="module")
def itk():
    return pytest.importorskip("itk")


def itk_transform(itk, ddf):
    """ITK's DisplacementFieldTransform of a course DDF: unit geometry, ITK (x, y, z) = (d3, d2, d1)."""
    image = itk.image_from_array(np.ascontiguousarray(ddf[..., ::-1], dtype=np.float64), is_vector=True)
    transform = itk.DisplacementFieldTransform[itk.D, 3].New()
    transform.SetDisplacementField(image)
    return transform


def itk_map(transform, coordinates):
    return np.array([list(transform.TransformPoint([float(v) for v in p[::-1]]))[::-1] for p in coordinates])


# --------------------------------------------------------------------------
# affines
# --------------------------------------------------------------------------
def test_affine_forward_is_the_row_vector_product():
    rng = np.random.default_rng(1)
    theta = np.concatenate([np.eye(3) + 0.1 * rng.normal(size=(3, 3)), rng.normal(size=(1, 3))])
    p = rng.uniform(0, 20, (7, 3))
    expected = np.concatenate([p, np.ones((7, 1))], axis=1) @ theta
    np.testing.assert_allclose(points.map_points(p, theta), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(points.map_points(p, theta[None]), expected, rtol=0, atol=1e-12)


def test_affine_inverse_is_the_closed_form_inverse():
    matrix, shift, (scales, turn) = scaled_rotation()
    theta = np.concatenate([matrix, shift[None]])
    p = np.random.default_rng(2).uniform(-5, 30, (9, 3))
    expected = (p - shift) @ turn.T @ np.diag(1.0 / scales)
    mapped, residual = points.map_points(p, theta, direction="moving_to_fixed", return_residual=True)
    np.testing.assert_allclose(mapped, expected, rtol=0, atol=1e-12)
    assert mapped.dtype == np.float64 and residual.shape == (9,) and residual.max() < 1e-12


def test_singular_affine_has_no_inverse():
    theta = np.zeros((4, 3))
    theta[0, 0] = theta[1, 1] = 1.0
    with pytest.raises(ValueError, match="`transform`.*singular"):
        points.map_points([[1.0, 2.0, 3.0]], theta, direction="moving_to_fixed")


# --------------------------------------------------------------------------
# DDFs
# --------------------------------------------------------------------------
def test_ddf_of_an_affine_maps_and_inverts_like_the_affine():
    """Trilinear interpolation reproduces a linear field, so inside the grid the DDF of an affine
    is that affine, and the iterative inverse must converge to the closed-form inverse."""
    shape = (20, 22, 18)
    matrix, shift, (scales, turn) = scaled_rotation()
    x = grid(shape)
    ddf = x @ matrix + shift - x
    p = np.random.default_rng(3).uniform(5, 13, (15, 3))
    np.testing.assert_allclose(points.map_points(p, ddf), p @ matrix + shift, rtol=0, atol=1e-10)
    mapped, residual = points.map_points(p, ddf, direction="moving_to_fixed", tolerance=1e-10,
                                         return_residual=True)
    np.testing.assert_allclose(mapped, (p - shift) @ turn.T @ np.diag(1.0 / scales), rtol=0, atol=1e-9)
    assert residual.max() <= 1e-10


def test_ddf_is_extended_by_its_edge_value_outside():
    """A field linear along d2 only: outside the grid along d1/d3 it keeps the edge value, and
    beyond d2's ends it is the end value (the course's mode="edge" for fields)."""
    shape = (5, 6, 4)
    ddf = np.zeros(shape + (3,))
    ddf[..., 0] = 0.5 * grid(shape)[..., 1] + 1.0
    p = np.array([[-3.0, 2.5, 1.0], [9.0, 2.5, -2.0], [2.0, -4.0, 1.0], [2.0, 40.0, 1.0]])
    expected_u = np.array([0.5 * 2.5 + 1, 0.5 * 2.5 + 1, 1.0, 0.5 * 5 + 1])
    np.testing.assert_allclose(points.map_points(p, ddf)[:, 0], p[:, 0] + expected_u, rtol=0, atol=1e-12)


def test_smooth_ddf_forward_matches_itk_displacement_field_transform(itk):
    shape = (9, 10, 11)
    ddf = smooth_ddf(shape)
    p = np.random.default_rng(4).uniform(0, np.array(shape) - 1, (25, 3))
    expected = itk_map(itk_transform(itk, ddf), p)
    assert np.abs(expected - p).max() > 0.3  # ITK really moved the points
    np.testing.assert_allclose(points.map_points(p, ddf), expected, rtol=0, atol=1e-10)


def test_smooth_ddf_inverse_is_undone_by_itk_forward_mapping(itk):
    """q = map_points(p, moving_to_fixed) must satisfy ITK's T(q) = p (q + u(q) = p in float64)."""
    shape = (9, 10, 11)
    ddf = smooth_ddf(shape)
    p = np.random.default_rng(5).uniform(1.5, np.array(shape) - 2.5, (25, 3))
    q, residual = points.map_points(p, ddf, direction="moving_to_fixed", tolerance=1e-10, return_residual=True)
    np.testing.assert_allclose(itk_map(itk_transform(itk, ddf), q), p, rtol=0, atol=1e-9)
    assert residual.max() <= 1e-10 and np.abs(q - p).max() > 0.3


def test_round_trips_return_the_points():
    shape = (16, 16, 12)
    ddf = smooth_ddf(shape)
    p = np.random.default_rng(6).uniform(2, 9, (30, 3))
    there = points.map_points(p, ddf)
    np.testing.assert_allclose(points.map_points(there, ddf, direction="moving_to_fixed", tolerance=1e-10),
                               p, rtol=0, atol=1e-8)
    back = points.map_points(p, ddf, direction="moving_to_fixed", tolerance=1e-10)
    np.testing.assert_allclose(points.map_points(back, ddf), p, rtol=0, atol=1e-8)


def test_folding_field_inverse_is_reported_not_hidden():
    """u1 = A sin(2 pi x1 / 16) with A 2 pi / 16 = 2.5: 1 + du1/dx1 reaches -1.5, the map folds."""
    shape = (32, 6, 6)
    amplitude = 2.5 * 16 / (2 * np.pi)
    x1 = grid(shape)[..., 0]
    ddf = np.zeros(shape + (3,))
    ddf[..., 0] = amplitude * np.sin(2 * np.pi * x1 / 16)
    assert (1 + np.gradient(ddf[..., 0], axis=0)).min() < 0  # it folds (independent check)
    p = np.stack([np.linspace(4, 28, 25), np.full(25, 2.5), np.full(25, 2.5)], axis=1)
    with pytest.raises(points.InverseNotConvergedError, match="`transform`.*did not converge") as caught:
        points.map_points(p, ddf, direction="moving_to_fixed")
    error = caught.value
    assert isinstance(error, ValueError) and error.points.shape == (25, 3)
    assert error.failed.any() and np.array_equal(error.failed, error.residual > 1e-4)
    ok = ~error.failed  # where it converged, the estimate really is a preimage
    q = error.points[ok]
    u = amplitude * np.sin(2 * np.pi * q[:, 0] / 16)
    np.testing.assert_allclose(q[:, 0] + u, p[ok, 0], atol=1e-3)


def test_registration_result_is_read_like_its_arrays():
    matrix, shift, _ = scaled_rotation()
    theta = np.concatenate([matrix, shift[None]]).astype(np.float32)
    ddf = smooth_ddf((8, 8, 8)).astype(np.float32)
    p = np.array([[2.0, 3.0, 4.0], [5.5, 1.0, 6.0]])
    affine_result = RegistrationResult("a", 0.0, theta=theta)
    field_result = RegistrationResult("b", 0.0, ddf=ddf[None])
    expected = np.concatenate([p, np.ones((2, 1))], 1) @ theta.astype(np.float64)
    np.testing.assert_allclose(points.map_points(p, affine_result), expected, rtol=0, atol=1e-12)
    out = points.map_points(p, field_result)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, points.map_points(p, ddf.astype(np.float64)), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------
# target registration error
# --------------------------------------------------------------------------
def test_classic_mistake_makes_tre_grow_the_right_direction_gives_zero():
    """Moving landmarks are where the transform sends the fixed ones. Mapping the MOVING landmarks
    with the forward field (the mistake) moves them further away; the right directions give ~0."""
    shape = (24, 24, 16)
    ddf = smooth_ddf(shape)
    ddf[..., 0] += 1.5  # a shift too, so the error before registration is clearly non-zero
    fixed = np.random.default_rng(7).uniform(4, 11, (12, 3))
    x = fixed
    u = np.stack([0.8 * np.sin(x[:, 1] / 3) + 0.3 * np.cos(x[:, 2] / 4) + 1.5,
                  0.5 * np.cos(x[:, 0] / 2.5) * np.sin(x[:, 2] / 5),
                  0.6 * np.sin((x[:, 0] + x[:, 1]) / 4)], axis=1)
    moving = fixed + u  # the transform's own formula, not sampled from the grid
    before = np.linalg.norm(moving - fixed, axis=1).mean()
    mistake = np.linalg.norm(points.map_points(moving, ddf) - fixed, axis=1).mean()
    assert mistake > before + 1.0
    right = points.target_registration_error(fixed, moving, ddf)
    other = points.target_registration_error(fixed, moving, ddf, direction="moving_to_fixed")
    assert right["mean"] < 0.05 and other["mean"] < 0.05 and right["units"] == "voxels"


def test_tre_is_the_distance_in_mm_per_point():
    theta = np.concatenate([np.eye(3), [[1.0, 0.0, 0.0]]])
    fixed = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    moving = np.array([[1.0, 3.0, 0.0], [3.0, 2.0, 6.0]])
    tre = points.target_registration_error(fixed, moving, theta, spacing=(3.0, 0.5, 2.0))
    np.testing.assert_allclose(tre["per_point"], [1.5, 8.0])
    assert tre["mean"] == pytest.approx(4.75) and tre["max"] == pytest.approx(8.0) and tre["units"] == "mm"
    inverse = points.target_registration_error(fixed, moving, theta, direction="moving_to_fixed")
    np.testing.assert_allclose(inverse["per_point"], [3.0, 4.0])  # T^-1(m) = m - (1, 0, 0)


def test_tre_pairs_named_landmarks_by_name():
    fixed = {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}
    moving = {"b": [2.0, 2.0, 5.0], "a": [1.0, 1.0, 1.0]}
    tre = points.target_registration_error(fixed, moving, np.concatenate([np.eye(3), np.zeros((1, 3))]))
    assert tre["names"] == ["a", "b"] and tre["per_point"].tolist() == [0.0, 3.0]
    with pytest.raises(ValueError, match="`fixed_points` names"):
        points.target_registration_error(fixed, {"a": [0, 0, 0]}, np.eye(4)[:, :3])


# --------------------------------------------------------------------------
# landmarks
# --------------------------------------------------------------------------
def test_landmarks_of_a_known_shape():
    label = np.zeros((10, 12, 8), np.float32)
    label[2:6, 3:5, 1:7] = 1  # a box ...
    label[6, 4, 4] = 1  # ... with one voxel sticking out along +d1
    marks = points.landmarks_from_label(label, slices=3, slice_axis=2)
    box = np.argwhere(label > 0.5)
    np.testing.assert_allclose(marks["centroid"], box.mean(axis=0))
    np.testing.assert_allclose(marks["d1_max"], [6, 4, 4])
    np.testing.assert_allclose(marks["d1_min"], [2, 3.5, 3.5])
    np.testing.assert_allclose(marks["d3_min"], [3.5, 3.5, 1])
    np.testing.assert_allclose(marks["d3_max"], [3.5, 3.5, 6])
    assert list(marks)[-3:] == ["d3@0.00", "d3@0.50", "d3@1.00"]
    in_slice = np.argwhere(label[:, :, 4] > 0.5).mean(axis=0)  # 1 + 0.5 * 5 = 3.5, half up to slice 4
    np.testing.assert_allclose(marks["d3@0.50"], [in_slice[0], in_slice[1], 4.0])
    assert marks["d3@0.50"].dtype == np.float64


def test_landmarks_follow_a_shift_and_take_anatomical_names():
    label = np.zeros((12, 12, 12))
    label[3:6, 4:9, 2:5] = 1
    label[4, 9, 3] = 1
    shifted = np.roll(label, (2, -1, 3), axis=(0, 1, 2))
    first = points.landmarks_from_label(label, slices=[3, 4])
    second = points.landmarks_from_label(shifted, slices=[6, 7])
    for (name, a), b in zip(first.items(), second.values()):
        np.testing.assert_allclose(b - a, [2, -1, 3], err_msg=name)
    lps = points.landmarks_from_label(label, orientation="LPS")
    spl = points.landmarks_from_label(label, orientation="spl")
    np.testing.assert_allclose(lps["posterior"], first["d2_max"])
    np.testing.assert_allclose(lps["right"], first["d1_min"])
    np.testing.assert_allclose(spl["superior"], first["d1_max"])
    np.testing.assert_allclose(spl["right"], first["d3_min"])


@pytest.mark.parametrize("structure", [0, 1], ids=["brainstem", "spinal cord"])
def test_head_neck_landmarks_agree_with_scipy(structure, mirror_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("TUTORIAL_DATA_CACHE", os.environ.get("TUTORIAL_DATA_CACHE", str(tmp_path)))
    from tutorial_utils import data

    ct = data.load_head_neck_ct()
    label = ct["labels"][..., structure]
    marks = points.landmarks_from_label(label, slices=5, orientation=ct["orientation"])
    np.testing.assert_allclose(marks["centroid"], ndimage.center_of_mass(label > 0.5), atol=1e-9)
    where = np.argwhere(label > 0.5)
    low, high = _anatomy_axes(ct["orientation"])
    for axis in range(3):
        assert marks[low[axis]][axis] == where[:, axis].min() and marks[high[axis]][axis] == where[:, axis].max()
    assert len(marks) == 12


def _anatomy_axes(code):
    names = {"L": "left", "R": "right", "P": "posterior", "A": "anterior", "S": "superior", "I": "inferior"}
    opposite = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
    return [names[opposite[c]] for c in code], [names[c] for c in code]


def test_prostate_landmarks_pair_for_tre(mirror_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("TUTORIAL_DATA_CACHE", os.environ.get("TUTORIAL_DATA_CACHE", str(tmp_path)))
    from tutorial_utils import data

    mr = data.load_prostate_mr()
    fixed = points.landmarks_from_label(mr["fixed_label"], slices=3, slice_axis=0)
    moving = points.landmarks_from_label(mr["moving_label"], slices=3, slice_axis=0)
    identity = np.concatenate([np.eye(3), np.zeros((1, 3))])
    tre = points.target_registration_error(fixed, moving, identity)
    centroid = tre["names"].index("centroid")
    expected = np.linalg.norm(np.subtract(ndimage.center_of_mass(mr["moving_label"] > 0.5),
                                          ndimage.center_of_mass(mr["fixed_label"] > 0.5)))
    assert tre["per_point"][centroid] == pytest.approx(expected)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
IDENTITY = np.concatenate([np.eye(3), np.zeros((1, 3))])


@pytest.mark.parametrize("call, name", [
    (lambda: points.map_points([1.0, 2.0, 3.0], IDENTITY), "`points`"),
    (lambda: points.map_points(np.zeros((4, 2)), IDENTITY), "`points`"),
    (lambda: points.map_points([[1.0, np.nan, 3.0]], IDENTITY), "`points`"),
    (lambda: points.map_points([[1.0, 2.0, 3.0]], np.zeros((2, 4, 3))), "`transform`"),
    (lambda: points.map_points([[1.0, 2.0, 3.0]], np.zeros((5, 5, 3))), "`transform`"),
    (lambda: points.map_points([[1.0, 2.0, 3.0]], np.full((4, 4, 4, 3), np.nan)), "`transform`"),
    (lambda: points.map_points([[1.0, 2.0, 3.0]], IDENTITY, direction="forward"), "`direction`"),
    (lambda: points.map_points([[1.0, 2.0, 3.0]], IDENTITY, tolerance=0), "`tolerance`"),
    (lambda: points.map_points([[1.0, 2.0, 3.0]], IDENTITY, max_iterations=0), "`max_iterations`"),
    (lambda: points.target_registration_error(np.zeros((2, 3)), np.zeros((3, 3)), IDENTITY), "`fixed_points`"),
    (lambda: points.target_registration_error(np.zeros((2, 3)), np.zeros((2, 3)), IDENTITY, spacing=(1, -1, 1)),
     "`spacing`"),
    (lambda: points.target_registration_error(np.zeros((1, 3)), [[0, 0, np.inf]], IDENTITY), "`moving_points`"),
    (lambda: points.target_registration_error(np.zeros((1, 3)), np.zeros((1, 3)), IDENTITY, direction="back"),
     "`direction`"),
    (lambda: points.landmarks_from_label(np.zeros((4, 4, 4))), "`label`"),
    (lambda: points.landmarks_from_label(np.ones((4, 4))), "`label`"),
    (lambda: points.landmarks_from_label(np.full((4, 4, 4), np.nan)), "`label`"),
    (lambda: points.landmarks_from_label(np.ones((4, 4, 4)), orientation="LPL"), "`orientation`"),
    (lambda: points.landmarks_from_label(np.ones((4, 4, 4)), slices=[7]), "`slices`"),
    (lambda: points.landmarks_from_label(np.ones((4, 4, 4)), slices=0), "`slices`"),
    (lambda: points.landmarks_from_label(np.ones((4, 4, 4)), slices=2.5), "`slices`"),
    (lambda: points.landmarks_from_label(np.full((4, 4, 4), 255.0)), "`label`"),
    (lambda: points.landmarks_from_label(np.ones((4, 4, 4)), threshold=1.0), "`threshold`"),
    (lambda: points.landmarks_from_label(np.ones((4, 4, 4)), slice_axis=3), "`slice_axis`"),
    (lambda: points.landmarks_from_label(np.pad(np.ones((2, 2, 2)), 2), slices=[0]), "`slices`"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_module_does_not_import_tensorflow():
    code = "import sys, tutorial_utils.points; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
