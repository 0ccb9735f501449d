"""register.pyramid: Gaussian and smoothing pyramids, field upsampling, against SciPy/scikit-image."""
import numpy as np
import pytest
from scipy import ndimage

from tutorial_utils import register

RNG = np.random.default_rng(5)


def smooth_volume(shape, sigma=2.0):
    volume = ndimage.gaussian_filter(RNG.standard_normal(shape), sigma)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)[None]


def test_gaussian_pyramid_matches_scipy_reference_isotropic():
    # skimage.transform.pyramid_gaussian cannot repeat the edge voxel (its one `mode`
    # goes to both ndimage and numpy.pad), so the reference is scipy_reduce below:
    # skimage's recipe (sigma 2f/6, linear resize with centres aligned) with the
    # package's one border rule.
    volume = RNG.random((20, 33, 16))
    ours = register.gaussian_pyramid(volume, 3, downscale=2)
    expected = [volume]
    for _ in range(2):
        expected.insert(0, scipy_reduce(expected[0], (2, 2, 2)))
    assert [level.shape for level in ours] == [level.shape for level in expected]
    for level, reference in zip(ours, expected):
        np.testing.assert_allclose(level, reference, atol=1e-5)


def scipy_reduce(volume, factors):
    """One anisotropic pyramid level by SciPy only: Gaussian, then linear sampling at
    the coarse voxel centres ``(q + 0.5) f - 0.5`` (edges clamped)."""
    sigma = [2 * f / 6 if f > 1 else 0 for f in factors]
    smoothed = ndimage.gaussian_filter(volume, sigma, mode="nearest")
    axes = [(np.arange(int(np.ceil(s / f))) + 0.5) * (s / np.ceil(s / f)) - 0.5
            for s, f in zip(volume.shape, factors)]
    coordinates = np.stack(np.meshgrid(*axes, indexing="ij"))
    return ndimage.map_coordinates(smoothed, coordinates, order=1, mode="nearest")


def test_gaussian_pyramid_anisotropic_matches_scipy_and_keeps_batch():
    volume = RNG.random((2, 8, 24, 30))
    pyramid = register.gaussian_pyramid(volume, 3, downscale=(1, 2, 2))
    assert [p.shape for p in pyramid] == [(2, 8, 6, 8), (2, 8, 12, 15), (2, 8, 24, 30)]
    np.testing.assert_array_equal(pyramid[-1], volume.astype(np.float32))
    for b in range(2):
        middle = scipy_reduce(volume[b], (1, 2, 2))
        np.testing.assert_allclose(pyramid[1][b], middle, atol=1e-5)
        np.testing.assert_allclose(pyramid[0][b], scipy_reduce(middle, (1, 2, 2)), atol=1e-5)


def affine_ddf_centres(linear, shift, size, ratio):
    """The DDF, in voxels of a grid of ``size``, of the transform that maps physical
    points (voxel centres ``(p + 0.5) * ratio`` of a unit grid) by ``y = x A + t``."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in size],
                                indexing="ij"), axis=-1)
    physical = (grid + 0.5) / ratio
    moved = physical @ linear + shift
    return (moved * ratio - 0.5 - grid)[None]


def test_upsample_field_keeps_an_affine_field_affine():
    linear = np.eye(3) + RNG.uniform(-0.1, 0.1, (3, 3))
    shift = RNG.uniform(-1, 1, 3)
    coarse_size, fine_size = (8, 6, 10), (8, 12, 20)
    coarse = affine_ddf_centres(linear, shift, coarse_size, np.array(coarse_size, float))
    fine = affine_ddf_centres(linear, shift, fine_size, np.array(fine_size, float))
    np.testing.assert_allclose(register.upsample_field(coarse, fine_size), fine, atol=1e-4)


def test_upsample_field_interior_matches_skimage_resize():
    from skimage.transform import resize

    coarse = RNG.standard_normal((1, 5, 7, 6, 3))
    fine = register.upsample_field(coarse, (5, 14, 12))
    for c, ratio in enumerate((1.0, 2.0, 2.0)):
        expected = ratio * resize(coarse[0, ..., c], (5, 14, 12), order=1, mode="edge",
                                  anti_aliasing=False)
        # the two differ only where resize clamps and we extrapolate: the outer half voxel
        np.testing.assert_allclose(fine[0, :, 1:-1, 1:-1, c], expected[:, 1:-1, 1:-1], atol=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: register.gaussian_pyramid(np.zeros((4, 4)), 2), "`volume` has shape"),
        (lambda: register.gaussian_pyramid(np.zeros((4, 4, 4)), 0), "`levels` is 0"),
        (lambda: register.gaussian_pyramid(np.zeros((4, 4, 4)), 2, 0.5), "`downscale` is"),
        (lambda: register.upsample_field(np.zeros((1, 4, 4, 4)), (8, 8, 8)), "`field` has shape"),
        (lambda: register.upsample_field(np.zeros((1, 4, 4, 4, 3)), (2, 8, 8)), "`size` is"),
    ],
)
def test_pyramid_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("size, levels, downscale", [
    ((32, 128, 128), 3, (1, 2, 2)), ((17, 33, 9), 3, 2.0), ((40, 40, 40), 4, 1.5), ((8, 8, 8), 1, 2)])
def test_pyramid_sizes_are_the_sizes_of_gaussian_pyramid(size, levels, downscale):
    built = register.gaussian_pyramid(np.zeros(size, np.float32), levels, downscale)
    assert register.pyramid_sizes(size, levels, downscale) == [level.shape for level in built]
