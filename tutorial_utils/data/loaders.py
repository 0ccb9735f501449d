"""The loaders: head-and-neck CT, prostate MR and the lung CT pairs, as arrays with
their orientation (see :mod:`tutorial_utils.data`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .fetching import DataIntegrityError, fetch
from .manifest import dataset, load_manifest
from .standin import describe_lung_source, standin_ct_from_mask

__all__ = ["load_head_neck_ct", "load_prostate_mr", "LungPairs", "load_lung_pairs",
           "HEAD_NECK_ORIENTATION", "PROSTATE_ORIENTATION", "LUNG_SIZE", "LUNG_SPACING"]


def _min_max(volume: np.ndarray) -> np.ndarray:
    volume = volume.astype(np.float32)
    low, high = float(volume.min()), float(volume.max())
    return (volume - low) / (high - low) if high > low else np.zeros_like(volume)


def _robust_rescale(volume: np.ndarray) -> np.ndarray:
    """Clip to the 0.5th-99.5th percentiles, then rescale to [0, 1]: a few extreme
    voxels (scanner padding, metal) cannot squeeze the tissue contrast."""
    low, high = np.percentile(volume, [0.5, 99.5])
    return _min_max(np.clip(volume.astype(np.float32), low, high))


# The HDF5 files carry no affine, so their orientation was determined by looking at
# slices rendered to PNG (scripts are not kept; repeat with matplotlib in a minute).
# hnct/demo.h5, image[:, :, k]: the couch lies at large d2 and the spine/cord sits
# on the couch side, so d2 runs anterior -> posterior (P); the cord (label channel
# 1) fills slices 0-20 with lungs in slices 0-8 and the brainstem (channel 0) and
# skull top come at slices 21-36, so d3 runs inferior -> superior (S); in the
# chest slices 0-4 the descending aorta sits beside the spine at large d1, and the
# aorta descends on the patient's left, so d1 runs right -> left (L). "LPS" is also
# what a DICOM series read as (column, row, slice) gives.
HEAD_NECK_ORIENTATION = "LPS"
# promise12/demo2.h5, image0/image1[k]: the rectum lies at large d2 and the pubic
# bone at small d2, so d2 runs anterior -> posterior (P); the bladder fills the
# highest slices (28-31) and the pelvic floor the lowest, so d1 runs inferior ->
# superior (S). Left-right cannot be read off this near-symmetric anatomy: d3 is
# taken as L, what the MetaImage/DICOM convention gives for an array read as
# (slice, row, column) - that is the one assumption in this code.
PROSTATE_ORIENTATION = "SPL"


def load_head_neck_ct(normalise: bool = True) -> Dict[str, np.ndarray]:
    """The head-and-neck CT and its two labels.

    Returns
    -------
    dict with
        ``image``: ``(128, 128, 37)`` float32; axial slices along d3. Min-max
        rescaled to ``[0, 1]`` if ``normalise`` (the default), else Hounsfield units.
        ``labels``: ``(128, 128, 37, 2)`` float32 in {0, 1}; channel 0 the
        brainstem (slices 21-26, towards the head), channel 1 the spinal cord
        (slices 0-20, a thin column down the neck).
        ``label_names``: ``("brainstem", "spinal cord")``.
        ``orientation``: ``"LPS"`` (d1 toward the patient's left, d2 posterior,
        d3 superior).
    """
    import h5py

    path = fetch("hnct", progress=True)["hnct/demo.h5"]
    with h5py.File(path, "r") as handle:
        image = np.asarray(handle["image"], dtype=np.float32)
        labels = np.asarray(handle["label"], dtype=np.float32)
    return {
        "image": _min_max(image) if normalise else image,
        "labels": labels,
        "label_names": ("brainstem", "spinal cord"),
        "orientation": HEAD_NECK_ORIENTATION,
    }


def load_prostate_mr(normalise: bool = True) -> Dict[str, np.ndarray]:
    """Two patients' prostate MR (PROMISE12) with prostate masks.

    Patient 0 is the moving image, patient 1 the fixed one, as in the original tutorial.

    Returns
    -------
    dict with
        ``moving_image``, ``fixed_image``: ``(32, 128, 128)`` float32; axial
        slices along d1. Each min-max rescaled to ``[0, 1]`` if ``normalise``,
        else the scanner's raw intensities.
        ``moving_label``, ``fixed_label``: ``(32, 128, 128)`` float32 in {0, 1}.
        ``orientation``: ``"SPL"`` (d1 superior, d2 posterior, d3 toward the
        patient's left).
    """
    import h5py

    path = fetch("promise12", progress=True)["promise12/demo2.h5"]
    with h5py.File(path, "r") as handle:
        arrays = {key: np.asarray(handle[key], dtype=np.float32) for key in ("image0", "image1", "label0", "label1")}
    prepare = _min_max if normalise else (lambda volume: volume)
    return {
        "moving_image": prepare(arrays["image0"]),
        "fixed_image": prepare(arrays["image1"]),
        "moving_label": arrays["label0"],
        "fixed_label": arrays["label1"],
        "orientation": PROSTATE_ORIENTATION,
    }


@dataclass
class LungPairs:
    """Paired lung CT volumes for one split.

    Attributes
    ----------
    moving_images, fixed_images : ndarray ``(pairs, d1, d2, d3)`` float32 in [0, 1]
        Expiration (moving) and inspiration (fixed) CT, each clipped to its 0.5th-99.5th
        intensity percentiles and rescaled to [0, 1].
    moving_labels, fixed_labels : ndarray ``(pairs, d1, d2, d3)`` float32 in {0, 1}
        Lung masks (always the real ones).
    cases : list of str
        Case ids, e.g. ``"case_001"``.
    spacing : tuple of float
        Voxel size in mm along (d1, d2, d3) after any resampling.
    orientation : str
        What the array axes mean (nibabel convention), from the NIfTI affine:
        ``"LPS"`` for these files (the same for the stand-in, built on the masks).
    is_standin : bool
        True when the images are the synthetic stand-in, not real CT.
    description : str (read-only)
        A line to print beside anything shown from it:
        :func:`~tutorial_utils.data.describe_lung_source` of ``is_standin``.
    """

    moving_images: np.ndarray
    fixed_images: np.ndarray
    moving_labels: np.ndarray
    fixed_labels: np.ndarray
    cases: List[str]
    spacing: Tuple[float, float, float]
    orientation: str
    is_standin: bool

    @property
    def description(self) -> str:
        return describe_lung_source(self.is_standin)

    def __len__(self) -> int:
        return len(self.cases)


LUNG_SIZE = (192, 192, 208)
LUNG_SPACING = (1.75, 1.25, 1.75)


def _resize(volume: np.ndarray, size: Sequence[int], label: bool) -> np.ndarray:
    from scipy import ndimage

    if tuple(volume.shape) == tuple(size):
        return volume.astype(np.float32)
    factors = [target / current for target, current in zip(size, volume.shape)]
    resized = ndimage.zoom(volume.astype(np.float32), factors, order=1, grid_mode=True, mode="nearest")
    return (resized > 0.5).astype(np.float32) if label else resized.astype(np.float32)



def load_lung_pairs(
    split: str = "train",
    size: Optional[Sequence[int]] = None,
    standin: bool = False,
    progress: bool = True,
) -> LungPairs:
    """Inspiration/expiration lung CT pairs with lung masks for one split.

    Parameters
    ----------
    split : {"train", "valid", "test"}
        16, 1 and 2 pairs.
    size : sequence of 3 int, optional
        Resample every volume to this ``(d1, d2, d3)`` (trilinear; masks
        re-thresholded at 0.5). ``(96, 96, 104)`` is half of the original
        ``(192, 192, 208)``. Default: the original size.
    standin : bool
        Use the synthetic stand-in images (``paired_ct_lung_standin``) built from
        the real masks instead of the real CT. Never chosen automatically: with
        ``standin=False`` and no way to get the real images, this raises
        :class:`DataUnavailableError`. A notebook passes
        ``standin=config.lung_standin()`` (the ``TUTORIAL_LUNG_STANDIN`` switch).

    Returns
    -------
    LungPairs
    """
    import nibabel

    if not isinstance(standin, (bool, np.bool_)):
        raise TypeError(f"`standin` is {standin!r} ({type(standin).__name__}); it needs to be True or False "
                        "(read the environment with tutorial_utils.config.lung_standin()).")
    if split not in ("train", "valid", "test"):
        raise ValueError(f"`split` is {split!r}; it needs to be 'train', 'valid' or 'test'.")
    manifest = load_manifest()
    entries = [entry for entry in dataset("paired_ct_lung", manifest)["files"]
               if entry["path"].startswith(f"paired_ct_lung/{split}/")]
    kinds = ("fixed_labels", "moving_labels") if standin else (
        "fixed_images", "fixed_labels", "moving_images", "moving_labels")
    wanted = [entry["path"] for entry in entries if entry["path"].split("/")[2] in kinds]
    paths = fetch("paired_ct_lung", files=wanted, manifest=manifest, progress=progress)
    cases = sorted({Path(path).name.replace(".nii.gz", "") for path in wanted})
    target = tuple(int(s) for s in size) if size is not None else LUNG_SIZE
    if len(target) != 3 or min(target) < 8:
        raise ValueError(f"`size` is {size}; it needs three sizes of at least 8 voxels.")

    codes = set()

    def read(kind: str, case: str) -> np.ndarray:
        volume = nibabel.load(str(paths[f"paired_ct_lung/{split}/{kind}/{case}.nii.gz"]))
        codes.add("".join(nibabel.aff2axcodes(volume.affine)))
        return np.asarray(volume.dataobj)

    arrays = {kind: [] for kind in ("moving_images", "fixed_images", "moving_labels", "fixed_labels")}
    for case in cases:
        for side in ("moving", "fixed"):
            label = _resize(read(f"{side}_labels", case), target, label=True)
            if standin:
                image = standin_ct_from_mask(label, f"{case}/{side}")
            else:
                image = _resize(read(f"{side}_images", case), target, label=False)
            arrays[f"{side}_images"].append(_robust_rescale(image))
            arrays[f"{side}_labels"].append(label)
    spacing = tuple(float(s * o / t) for s, o, t in zip(LUNG_SPACING, LUNG_SIZE, target))
    if len(codes) != 1:
        raise DataIntegrityError(f"the {split} volumes disagree on their orientation: {sorted(codes)}.")
    return LungPairs(
        **{key: np.stack(value) for key, value in arrays.items()},
        cases=cases, spacing=spacing, orientation=codes.pop(), is_standin=bool(standin),
    )
