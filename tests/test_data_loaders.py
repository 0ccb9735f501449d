"""tutorial_utils.data.loaders: shapes, intensities, orientation (against anatomical
landmarks), and no TensorFlow."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tutorial_utils import data
from data_fixtures import REPO, isolated  # noqa: F401  (a fixture)


def test_head_neck_loader(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    ct = data.load_head_neck_ct()
    assert ct["image"].shape == (128, 128, 37) and ct["image"].dtype == np.float32
    assert ct["image"].min() == 0.0 and ct["image"].max() == 1.0
    assert ct["labels"].shape == (128, 128, 37, 2) and set(np.unique(ct["labels"])) == {0.0, 1.0}
    raw = data.load_head_neck_ct(normalise=False)["image"]
    assert raw.min() == -1024 and raw.max() == 2022


def test_prostate_loader(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    mr = data.load_prostate_mr()
    for key in ("moving_image", "fixed_image", "moving_label", "fixed_label"):
        assert mr[key].shape == (32, 128, 128) and mr[key].dtype == np.float32
    assert mr["fixed_label"].sum() > 1000


def test_data_and_viz_do_not_import_tensorflow():
    code = "import tutorial_utils.data, tutorial_utils.viz, sys; assert 'tensorflow' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr


def test_loaders_declare_orientation(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    assert data.load_head_neck_ct()["orientation"] == "LPS"
    assert data.load_prostate_mr()["orientation"] == "SPL"
    assert data.load_lung_pairs("valid", size=(24, 24, 26), standin=True).orientation == "LPS"


def test_head_neck_orientation_agrees_with_landmarks(isolated, monkeypatch, mirror_dir):
    """The stated "LPS": the spinal cord lies posterior (larger d2) to the airway, the
    brainstem superior (larger d3) to the cord, and the couch behind the head (at large
    d2, where nothing lies in front of the face). Left-right: see the loader's comment."""
    from scipy import ndimage

    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    ct = data.load_head_neck_ct(normalise=False)
    assert ct["orientation"][1:] == "PS"
    body = ct["image"] > -300
    cord = np.argwhere(ct["labels"][..., 10, 1] > 0.5).mean(0)
    parts, count = ndimage.label(ndimage.binary_fill_holes(body[..., 10]))
    neck = parts == 1 + np.argmax(ndimage.sum(np.ones_like(parts), parts, range(1, count + 1)))
    airway = np.argwhere(neck & (ct["image"][..., 10] < -600)).mean(0)
    assert cord[1] > airway[1] + 5
    brainstem = np.argwhere(ct["labels"][..., 0] > 0.5).mean(0)
    assert brainstem[2] > np.argwhere(ct["labels"][..., 1] > 0.5).mean(0)[2] + 10
    head = body[..., 30]  # a head slice: the skull is mid-image, the couch well behind it
    assert head[:, 96:].sum() > 100 and head[:, :32].sum() == 0



def test_lung_loader_refuses_a_non_bool_standin(isolated):
    with pytest.raises(TypeError, match=r"`standin` is '1' \(str\).*lung_standin"):
        data.load_lung_pairs("test", standin="1")
