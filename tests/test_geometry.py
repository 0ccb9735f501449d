"""geometry.py: ITK physical geometry <-> the course's voxels, checked against SimpleITK's own
index <-> point mapping and transforms, and against nibabel's orientation codes."""
import subprocess
import sys

import numpy as np
from rotations import rotation_about
import pytest

from tutorial_utils import geometry
from tutorial_utils.geometry import Geometry

sitk = pytest.importorskip("SimpleITK")
nibabel = pytest.importorskip("nibabel")

RNG = np.random.default_rng(5)


FIXED = {"spacing": (0.8, 1.1, 1.5), "origin": (5.0, -3.0, 2.0), "direction": rotation_about((1, 2, 3), 25)}
MOVING = {"spacing": (1.2, 0.9, 1.0), "origin": (1.0, -6.0, -1.0), "direction": rotation_about((-2, 1, 0.5), 15)}
FIXED_SHAPE, MOVING_SHAPE = (12, 11, 10), (10, 12, 11)


def sitk_image(shape, spec):
    """A SimpleITK image of a course (d1, d2, d3) shape, geometry set with SimpleITK's own API."""
    image = sitk.GetImageFromArray(np.zeros(shape, np.float32))
    image.SetSpacing(spec["spacing"])
    image.SetOrigin(spec["origin"])
    image.SetDirection(tuple(np.ravel(spec["direction"])))
    return image


def sitk_voxel(image, point):
    """SimpleITK's continuous index of a physical point, in the course's order."""
    return np.asarray(image.TransformPhysicalPointToContinuousIndex(tuple(map(float, point))))[::-1]


def test_module_imports_neither_tensorflow_nor_itk():
    code = ("import tutorial_utils.geometry, sys; "
            "assert not {'tensorflow', 'itk', 'SimpleITK'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_index_and_point_agree_with_simpleitk():
    image = sitk_image(FIXED_SHAPE, FIXED)
    index = RNG.uniform(-2, 12, (20, 3))
    points = geometry.index_to_physical(index, FIXED)
    expected = [image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, i[::-1]))) for i in index]
    np.testing.assert_allclose(points, expected, atol=1e-10)
    np.testing.assert_allclose(geometry.physical_to_index(points, image), index, atol=1e-10)


def test_geometry_from_images_and_dicts_is_the_same_value():
    image = sitk_image(FIXED_SHAPE, FIXED)
    from_image, from_dict = geometry.as_geometry(image), geometry.as_geometry(FIXED)
    np.testing.assert_allclose(from_image.direction, from_dict.direction, atol=1e-15)
    assert from_image.spacing == FIXED["spacing"] and from_image.origin == FIXED["origin"]
    assert Geometry(**from_dict.as_dict()) == from_dict
    assert geometry.as_geometry(None) == Geometry()
    itk = pytest.importorskip("itk")
    itk_image = itk.GetImageFromArray(np.zeros(FIXED_SHAPE, np.float32))
    itk_image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(FIXED["direction"])))
    np.testing.assert_allclose(geometry.as_geometry(itk_image).direction, FIXED["direction"], atol=1e-15)


@pytest.mark.parametrize("direction", [
    np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.eye(3)[[2, 0, 1]], np.diag([1.0, -1.0, -1.0])[[1, 2, 0]],
    rotation_about((1, 2, 3), 25), rotation_about((0, 0, 1), 40) @ np.diag([-1.0, 1.0, 1.0]),
    rotation_about((3, -1, 2), 70),
])  # a sheared direction is refused (test_a_direction_that_is_not_a_rotation_is_refused)
def test_orientation_code_agrees_with_nibabel(direction):
    """nibabel's code is for ITK's (x, y, z) axes (its array order); the course's is reversed."""
    spacing = np.array([0.7, 1.3, 2.5])
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(spacing)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    expected = "".join(nibabel.aff2axcodes(ras))[::-1]
    assert geometry.orientation_code({"spacing": spacing, "direction": direction}) == expected


def test_orientation_code_is_one_the_viewer_takes():
    from tutorial_utils.viz import check_orientation

    code = Geometry(direction=tuple(map(tuple, rotation_about((1, 1, 0), 50)))).orientation
    assert check_orientation(code) == code


def test_theta_agrees_with_simpleitk_affine_transform():
    """An ITK AffineTransform with a centre, mapped by SimpleITK, gives the voxel map theta says."""
    matrix = rotation_about((1, -1, 2), 12) @ np.diag([1.1, 0.9, 1.05])
    transform = sitk.AffineTransform(tuple(matrix.ravel()), (2.0, -1.0, 3.0), (4.0, 1.0, -2.0))
    fixed_image, moving_image = sitk_image(FIXED_SHAPE, FIXED), sitk_image(MOVING_SHAPE, MOVING)
    centre, translation = np.array(transform.GetCenter()), np.array(transform.GetTranslation())
    theta = geometry.theta_from_physical_affine(matrix, centre + translation - matrix @ centre,
                                                fixed_geometry=FIXED, moving_geometry=MOVING)[0]
    index = RNG.uniform(0, 10, (15, 3))
    expected = [sitk_voxel(moving_image, transform.TransformPoint(
        fixed_image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, i[::-1]))))) for i in index]
    np.testing.assert_allclose(np.c_[index, np.ones(15)] @ theta, expected, atol=1e-9)


def test_physical_affine_of_theta_maps_like_theta_in_simpleitk():
    theta = np.concatenate([rotation_about((2, 1, 1), 8) * 1.05, [[1.5, -2.0, 0.5]]])
    matrix, translation = geometry.physical_affine_from_theta(theta, fixed_geometry=FIXED, moving_geometry=MOVING)
    transform = sitk.AffineTransform(tuple(matrix.ravel()), tuple(translation))
    fixed_image, moving_image = sitk_image(FIXED_SHAPE, FIXED), sitk_image(MOVING_SHAPE, MOVING)
    index = RNG.uniform(0, 10, (15, 3))
    mapped = [sitk_voxel(moving_image, transform.TransformPoint(
        fixed_image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, i[::-1]))))) for i in index]
    np.testing.assert_allclose(mapped, np.c_[index, np.ones(15)] @ theta, atol=1e-9)


def test_ddf_and_field_agree_with_simpleitk_displacement_field_transform():
    field = RNG.normal(0, 2.0, FIXED_SHAPE + (3,))  # mm, ITK (x, y, z)
    fixed_image, moving_image = sitk_image(FIXED_SHAPE, FIXED), sitk_image(MOVING_SHAPE, MOVING)
    field_image = sitk.GetImageFromArray(field, isVector=True)
    field_image.CopyInformation(fixed_image)
    transform = sitk.DisplacementFieldTransform(field_image)
    ddf = geometry.ddf_from_physical_field(field, fixed_geometry=FIXED, moving_geometry=MOVING)[0]
    for index in [(0, 0, 0), (3, 7, 2), (11, 10, 9), (5, 0, 8)]:
        point = fixed_image.TransformIndexToPhysicalPoint(index[::-1])
        expected = sitk_voxel(moving_image, transform.TransformPoint(point))
        np.testing.assert_allclose(np.asarray(index) + ddf[index], expected, atol=1e-4)  # float32 DDF
    back = geometry.physical_field_from_ddf(ddf, fixed_geometry=FIXED, moving_geometry=MOVING)
    np.testing.assert_allclose(back, field, atol=1e-5)


@pytest.mark.parametrize("spec, message", [
    ({"spacing": (1, 1)}, r"`g\['spacing'\]` is \[1.0, 1.0\]; it needs 3 finite numbers"),
    ({"spacing": (1, 0, 1)}, "the spacing must be positive"),
    ({"direction": np.zeros((3, 3))}, "direction invertible"),
    ({"size": (1, 1, 1)}, "`g` is .*it needs a Geometry"),
    ("LPS", "`g` is 'LPS'"),
])
def test_bad_geometry_is_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        geometry.as_geometry(spec, "g")


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"`theta` has shape \(3, 3\)"):
        geometry.physical_affine_from_theta(np.eye(3), fixed_geometry=None, moving_geometry=None)
    with pytest.raises(ValueError, match=r"`field` has shape \(4, 4, 3\)"):
        geometry.ddf_from_physical_field(np.zeros((4, 4, 3)), fixed_geometry=None, moving_geometry=None)
    with pytest.raises(ValueError, match=r"`ddf` has shape \(2, 4, 4, 4, 3\)"):
        geometry.physical_field_from_ddf(np.zeros((2, 4, 4, 4, 3)), fixed_geometry=None, moving_geometry=None)
    with pytest.raises(ValueError, match=r"`index` has shape \(2,\)"):
        geometry.index_to_physical([1, 2], None)


def test_a_direction_that_is_not_a_rotation_is_refused():
    """A sheared direction was accepted and then silently replaced by the closest
    rotation when written to NIfTI; it is refused, naming the geometry."""
    import pytest

    from tutorial_utils.geometry import Geometry, as_geometry

    with pytest.raises(ValueError, match="not orthonormal"):
        as_geometry({"direction": ((2, 0, 0), (0, 1, 0), (0.5, 0, 1))}, "fixed_geometry")
    with pytest.raises(ValueError, match="not orthonormal"):
        Geometry(direction=((1, 0, 0), (0, 1, 0), (0.5, 0, 1)))
    flipped = as_geometry({"direction": ((-1, 0, 0), (0, 1, 0), (0, 0, 1))}, "g")  # a reflection is fine
    assert flipped.direction[0][0] == -1
