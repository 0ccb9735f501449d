"""tutorial_utils.data.standin: the lung stand-in is deterministic, built on the real
masks, CT-like, and always labelled (describe_lung_source)."""
import numpy as np
import pytest

from tutorial_utils import config, data
from data_fixtures import isolated  # noqa: F401  (a fixture)


def test_lung_standin_is_deterministic_labelled_and_uses_real_masks(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    first = data.load_lung_pairs("test", size=(48, 48, 52), standin=True)
    again = data.load_lung_pairs("test", size=(48, 48, 52), standin=True)
    assert first.is_standin and first.description == data.describe_lung_source(True)
    assert first.cases == ["case_011", "case_012"]
    assert first.moving_images.shape == (2, 48, 48, 52) and first.fixed_labels.shape == (2, 48, 48, 52)
    np.testing.assert_array_equal(first.moving_images, again.moving_images)
    assert first.spacing == (7.0, 5.0, 7.0)  # 1.75 mm * 192 / 48, 1.25 mm * 192 / 48, 1.75 mm * 208 / 52
    # the images are CT-like: lungs darker than the body around them, air darkest
    lung = first.fixed_labels[0] > 0.5
    assert first.fixed_images[0][lung].mean() < 0.3
    assert not np.array_equal(first.moving_images[0], first.moving_images[1])
    with pytest.raises(ValueError, match="stand-in"):
        data.fetch("paired_ct_lung_standin")


def test_standin_ct_is_ct_like_in_hounsfield_units():
    mask = np.zeros((24, 24, 24), np.float32)
    mask[6:18, 6:12, 6:18] = 1
    volume = data.standin_ct_from_mask(mask, "case/x")
    assert volume.shape == mask.shape and volume.dtype == np.float32
    assert volume[0, 0, 0] == -1000.0  # air far from the body
    assert -900 < np.median(volume[mask > 0.5]) < -700  # lung parenchyma
    np.testing.assert_array_equal(volume, data.standin_ct_from_mask(mask, "case/x"))


def test_describe_lung_source_says_what_it_is_and_how_to_switch():
    line = data.describe_lung_source(True)
    assert line.startswith("STAND-IN DATA") and "NOT real CT" in line and "nothing about real" in line
    assert config.LUNG_STANDIN_ENV in line and "\n" not in line
    real = data.describe_lung_source(False)
    assert "Real paired lung CT" in real and "STAND-IN" not in real and "\n" not in real
    assert data.describe_lung_source(np.bool_(True)) == line
    with pytest.raises(TypeError, match=r"`standin` is '1'"):
        data.describe_lung_source("1")


def test_lung_pairs_description_follows_is_standin():
    shape = (1, 8, 8, 8)
    pairs = data.LungPairs(*(np.zeros(shape, np.float32) for _ in range(4)), cases=["c"], spacing=(1.0,) * 3,
                           orientation="LPS", is_standin=False)
    assert pairs.description == data.describe_lung_source(False) and len(pairs) == 1
