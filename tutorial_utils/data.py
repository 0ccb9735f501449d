"""The course's data: a pinned manifest, verified fetching, and loaders.

Where files come from, in order:

1. **Local mirrors**: directories named in the environment variable
   ``TUTORIAL_DATA_MIRROR`` (several separated by ``os.pathsep``, i.e. ``:`` on
   Linux/macOS), each laid out like the upstream repository
   (``hnct/demo.h5``, ``paired_ct_lung/train/...``). A mirror file is used in place,
   never copied or modified, and only if its hash matches.
2. **The cache**: ``TUTORIAL_DATA_CACHE`` or, by default, the per-user cache
   directory (``~/.cache/tutorial-utils`` on Linux). Cached files are verified
   every time they are used.
3. **The network**: every URL of the file in turn (the commit-pinned GitHub URL,
   then independent mirrors), each with retries and a timeout. A download goes to
   a temporary ``.part`` file, is verified, and only then renamed onto its final
   name, so a partial or tampered file never sits under the final name.

A hash mismatch anywhere rejects that copy (deleting it if it is ours) and moves
on to the next source; when every source fails, the error says what was tried
(:class:`DataIntegrityError` if a copy was found but did not match,
:class:`DataUnavailableError` otherwise).

**Relative paths.** A relative path in ``TUTORIAL_DATA_MIRROR`` or
``TUTORIAL_DATA_CACHE`` is resolved against the *repository root* (the folder
holding ``pyproject.toml`` and ``data_manifest.yaml`` above this package), not
against the working directory, so ``../shared/data/example-data`` names the same
folder whether Python runs in the repository root or in ``book/chapters``. For an
installed copy of ``tutorial_utils`` (no repository around it) the base is the
working directory when the data layer is first used. See :func:`path_base` and
:func:`resolve_user_path`; every message shows the absolute paths searched.

**Orientation.** Each loader says what its array axes mean in ``"orientation"``
(nibabel's convention: the letter is the direction each axis *increases* toward,
``L``/``R`` left/right, ``P``/``A`` posterior/anterior, ``S``/``I``
superior/inferior). It comes from the NIfTI affine where there is one and is
stated in the loader for the HDF5 files. Arrays are never reoriented;
:mod:`tutorial_utils.viz` uses the code to show standard radiological views.

Why pooch: its ``HTTPDownloader`` is a small, well-kept download primitive with
a progress bar and timeouts. Its own ``retrieve`` cannot verify git blob SHA-1
hashes (the only hash upstream publishes for the lung CT images), so the
verification, the mirror lookup and the atomic rename are done here.

Command line: ``python -m tutorial_utils.data list | fetch NAME... | fetch --all | verify``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import yaml

__all__ = [
    "MIRROR_ENV",
    "CACHE_ENV",
    "DataUnavailableError",
    "DataIntegrityError",
    "load_manifest",
    "list_datasets",
    "fetch",
    "fetch_file",
    "verify_file",
    "path_base",
    "resolve_user_path",
    "cache_dir",
    "mirror_dirs",
    "verify_cache",
    "file_hash",
    "load_head_neck_ct",
    "load_prostate_mr",
    "LungPairs",
    "load_lung_pairs",
    "main",
]

MIRROR_ENV = "TUTORIAL_DATA_MIRROR"
CACHE_ENV = "TUTORIAL_DATA_CACHE"
STANDIN_NAME = "paired_ct_lung_standin"
_MANIFEST_NAME = "data_manifest.yaml"


class DataUnavailableError(RuntimeError):
    """No source could provide a verified copy of a file."""


class DataIntegrityError(DataUnavailableError):
    """A file's content does not match the size or hash in the manifest.

    Raised by :func:`verify_file`, and by :func:`fetch_file` when the only copies
    it found (mirror, cache or download) failed verification: a subclass of
    :class:`DataUnavailableError`, since no verified copy is available either.
    """


# --------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------
def _manifest_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / _MANIFEST_NAME, here.parent / _MANIFEST_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{_MANIFEST_NAME} not found next to {here}; reinstall tutorial_utils.")


@lru_cache(maxsize=None)
def _load_manifest_cached(path: str) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def load_manifest(path: Optional[os.PathLike] = None) -> dict:
    """The parsed ``data_manifest.yaml`` (the repository's, unless ``path`` is given)."""
    return _load_manifest_cached(str(path or _manifest_path()))


def list_datasets(manifest: Optional[dict] = None) -> List[str]:
    """Names of the datasets in the manifest, stand-ins included."""
    return list((manifest or load_manifest())["datasets"])


def _dataset(name: str, manifest: dict) -> dict:
    datasets = manifest["datasets"]
    if name not in datasets:
        raise ValueError(
            f"Unknown dataset {name!r}. Known datasets: {', '.join(datasets)}."
        )
    return datasets[name]


# --------------------------------------------------------------------------
# hashes
# --------------------------------------------------------------------------
def file_hash(path: os.PathLike, algorithm: str) -> str:
    """Hex digest of a file: ``"sha256"`` of its bytes, or ``"gitsha1"``, the git
    blob SHA-1 (SHA-1 of ``b"blob <size>\\0"`` followed by the bytes)."""
    path = Path(path)
    if algorithm == "sha256":
        digest = hashlib.sha256()
    elif algorithm == "gitsha1":
        digest = hashlib.sha1()
        digest.update(b"blob %d\0" % path.stat().st_size)
    else:
        raise ValueError(f"Unknown hash algorithm {algorithm!r}; the manifest uses 'sha256' or 'gitsha1'.")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_file(path: Path, entry: dict) -> Tuple[bool, str]:
    """(ok, why-not) for a candidate copy of a manifest entry."""
    size = entry.get("size")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return False, f"size {actual_size} bytes, expected {size} bytes (truncated or wrong file)"
    algorithm, expected = entry["hash"].split(":", 1)
    actual = file_hash(path, algorithm)
    if actual != expected:
        return False, f"{algorithm} {actual}, expected {algorithm} {expected}"
    return True, ""


# --------------------------------------------------------------------------
# where files live
# --------------------------------------------------------------------------
_ROOT_MARKERS = ("pyproject.toml", "data_manifest.yaml")


@lru_cache(maxsize=None)
def path_base() -> Path:
    """The folder that relative ``TUTORIAL_DATA_MIRROR``/``TUTORIAL_DATA_CACHE`` paths
    are resolved against (found once per session).

    The repository root when ``tutorial_utils`` is imported from a checkout (the
    folder above the package holding ``pyproject.toml`` and ``data_manifest.yaml``),
    so ``../shared/data/example-data`` means the same folder from the repository
    root and from ``book/chapters``; otherwise (an installed package) the working
    directory at the first call.

    >>> path_base().is_absolute()
    True
    """
    root = Path(__file__).resolve().parent.parent
    if all((root / marker).is_file() for marker in _ROOT_MARKERS):
        return root
    return Path.cwd().resolve()


def resolve_user_path(value: os.PathLike) -> Path:
    """An absolute path for a path a user set: ``~`` expanded, a relative path
    joined to :func:`path_base` (never to the current working directory).

    >>> resolve_user_path("/data/mirror")
    PosixPath('/data/mirror')
    >>> resolve_user_path("mirror") == path_base() / "mirror"
    True
    """
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else path_base() / path))


def cache_dir() -> Path:
    """The cache directory, absolute: ``$TUTORIAL_DATA_CACHE`` (see
    :func:`resolve_user_path`) or the per-user cache."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return resolve_user_path(configured)
    import pooch

    return Path(pooch.os_cache("tutorial-utils")).resolve()


def _mirror_settings() -> List[Tuple[str, Path]]:
    configured = os.environ.get(MIRROR_ENV, "")
    return [(part, resolve_user_path(part)) for part in configured.split(os.pathsep) if part.strip()]


def mirror_dirs() -> List[Path]:
    """Mirror directories named in ``$TUTORIAL_DATA_MIRROR``, absolute (may be empty)."""
    return [path for _, path in _mirror_settings()]


def verify_file(path: os.PathLike, entry: dict) -> Path:
    """``path`` if its size and hash match the manifest ``entry``.

    Raises
    ------
    DataIntegrityError
        When they do not; the message gives the size or hash found and expected.
    """
    ok, why = _check_file(Path(path), entry)
    if not ok:
        raise DataIntegrityError(f"{path}: {why}")
    return Path(path)


@contextmanager
def _temporary_file(final: Path) -> Iterator[Path]:
    """A fresh ``<name>.<random>.part`` file beside ``final``, deleted on exit unless
    the caller moved it onto ``final`` (an atomic rename on one file system)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=final.name + ".", suffix=".part", dir=final.parent)
    os.close(handle)
    part = Path(name)
    try:
        yield part
    finally:
        part.unlink(missing_ok=True)


def _download(url: str, target: Path, timeout: float, progress: bool) -> None:
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    downloader(url, str(target), None)


@dataclass
class _Attempts:
    """What each source said, for the final error message."""

    lines: List[str] = field(default_factory=list)
    integrity_failed: bool = False

    def add(self, line: str, integrity: bool = False) -> None:
        self.lines.append(line)
        self.integrity_failed |= integrity


def _from_mirrors(entry: dict, attempts: _Attempts) -> Optional[Path]:
    """The first mirror copy that verifies; mirrors are read, never modified."""
    for setting, mirror in _mirror_settings():
        candidate = mirror / entry["path"]
        if not candidate.is_file():
            where = (f"the folder exists but has no {entry['path']}" if mirror.is_dir()
                     else "that folder does not exist")
            attempts.add(f"mirror {candidate}: not there ({MIRROR_ENV} entry {setting!r} "
                         f"is {mirror}; {where})")
            continue
        try:
            return verify_file(candidate, entry)
        except DataIntegrityError as error:
            attempts.add(f"mirror {error}: REJECTED", integrity=True)
            warnings.warn(f"Ignoring mirror file {error}: its content does not match the manifest.")
    return None


def _from_cache(entry: dict, attempts: _Attempts) -> Optional[Path]:
    """The cached copy if it verifies; a copy that does not is deleted."""
    cached = cache_dir() / entry["path"]
    if not cached.is_file():
        return None
    try:
        return verify_file(cached, entry)
    except DataIntegrityError as error:
        attempts.add(f"cache {error}: REJECTED and deleted", integrity=True)
        warnings.warn(f"Deleting the cached {error}: it does not match the manifest; fetching again.")
        cached.unlink()
    return None


def _download_verified(entry: dict, attempts: _Attempts, *, progress: bool, retries: int,
                       timeout: float, backoff: float) -> Optional[Path]:
    """Each URL in turn, with retries, into a temporary file that is renamed onto the
    cache path only once it verifies."""
    cached = cache_dir() / entry["path"]
    for url in entry.get("urls", []):
        for attempt in range(retries + 1):
            with _temporary_file(cached) as part:
                try:
                    _download(url, part, timeout, progress)
                except Exception as error:  # network errors come in many types
                    reason = str(error).splitlines()[0][:200] if str(error) else ""
                    attempts.add(f"{url} (try {attempt + 1}): {type(error).__name__}: {reason}")
                    if attempt < retries:
                        time.sleep(backoff * (2 ** attempt))
                    continue
                try:
                    verify_file(part, entry)
                except DataIntegrityError as error:
                    why = str(error).split(": ", 1)[1]
                    attempts.add(f"{url}: REJECTED, downloaded content has {why}", integrity=True)
                    break  # the same URL would give the same wrong bytes; try the next one
                os.replace(part, cached)
                return cached
    return None


def _unavailable(relative: str, attempts: _Attempts) -> DataUnavailableError:
    tried = "\n  - ".join(attempts.lines) if attempts.lines else "(no mirror set, nothing cached, no URLs)"
    kind = DataIntegrityError if attempts.integrity_failed else DataUnavailableError
    return kind(
        f"Could not get a verified copy of {relative}.\nSources tried:\n  - {tried}\n"
        f"If you are offline or behind a firewall, copy the upstream files into a folder laid out "
        f"as the upstream repository and point {MIRROR_ENV} at it, e.g.\n"
        f"  export {MIRROR_ENV}=/path/to/example-data\n"
        f"(several folders may be separated by '{os.pathsep}'; a relative path is resolved "
        f"against {path_base()}, not the working directory). Downloads are cached in "
        f"{cache_dir()} (set {CACHE_ENV} to move the cache)."
    )


def fetch_file(
    entry: dict,
    *,
    progress: bool = True,
    retries: int = 2,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Path:
    """A verified local copy of one manifest file entry: mirror, else cache, else download.

    Parameters
    ----------
    entry : dict
        One item of a dataset's ``files`` in the manifest (``path``, ``hash``,
        ``urls``, optional ``size``).
    progress : bool
        Show a progress bar for real downloads.
    retries : int
        Extra attempts per URL after a network failure.
    timeout : float
        Seconds before a stalled connection is given up.
    backoff : float
        Seconds before the first retry, doubling after each.

    Returns
    -------
    pathlib.Path
        The mirror file itself, or the cached copy (absolute).

    Raises
    ------
    DataIntegrityError
        If no source gave a matching copy and at least one copy (mirror, cache or
        download) was found whose size or hash did not match.
    DataUnavailableError
        If no source had the file at all. Both messages list every source tried
        (absolute paths) and what went wrong with each.
    """
    attempts = _Attempts()
    found = _from_mirrors(entry, attempts) or _from_cache(entry, attempts)
    found = found or _download_verified(entry, attempts, progress=progress, retries=retries,
                                        timeout=timeout, backoff=backoff)
    if found is None:
        raise _unavailable(entry["path"], attempts)
    return found


def fetch(
    name: str, *, files: Optional[Iterable[str]] = None, manifest: Optional[dict] = None, progress: bool = True
) -> Dict[str, Path]:
    """Verified local copies of a dataset's files.

    Parameters
    ----------
    name : str
        A dataset name from the manifest, e.g. ``"hnct"``.
    files : iterable of str, optional
        Only these relative paths (default: all of the dataset's files).
    progress : bool
        Show progress bars for real downloads.

    Returns
    -------
    dict
        Relative path (as in the manifest) -> local path.
    """
    manifest = manifest or load_manifest()
    dataset = _dataset(name, manifest)
    if dataset.get("standin_for"):
        raise ValueError(
            f"{name!r} is a stand-in built on your machine, not a set of files; load it with "
            f"load_lung_pairs(..., standin=True)."
        )
    entries = dataset["files"]
    if files is not None:
        wanted = set(files)
        known = {entry["path"] for entry in entries}
        unknown = wanted - known
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not files of dataset {name!r}.")
        entries = [entry for entry in entries if entry["path"] in wanted]
    return {entry["path"]: fetch_file(entry, progress=progress) for entry in entries}


def verify_cache(manifest: Optional[dict] = None) -> Dict[str, str]:
    """Check every cached file against the manifest.

    Returns ``{relative path: "ok" | "missing" | "MISMATCH: ..."}``; nothing is
    deleted (a mismatching file is replaced on its next fetch).
    """
    manifest = manifest or load_manifest()
    report = {}
    for dataset in manifest["datasets"].values():
        for entry in dataset["files"]:
            path = cache_dir() / entry["path"]
            if not path.is_file():
                report[entry["path"]] = "missing"
                continue
            ok, why = _check_file(path, entry)
            report[entry["path"]] = "ok" if ok else f"MISMATCH: {why}"
    return report


# --------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------
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
    name, description : str
        The dataset's name and a line to print beside anything shown from it.
    """

    moving_images: np.ndarray
    fixed_images: np.ndarray
    moving_labels: np.ndarray
    fixed_labels: np.ndarray
    cases: List[str]
    spacing: Tuple[float, float, float]
    orientation: str
    is_standin: bool
    name: str
    description: str = field(default="")

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


def standin_ct_from_mask(lung_mask: np.ndarray, case: str) -> np.ndarray:
    """A CT-like STAND-IN volume (Hounsfield-like units) built from a real lung mask.

    Deterministic for a given mask and case id. Air outside the body (-1000),
    soft tissue in a body shell around the lungs (about 40 with noise), lung
    parenchyma (about -850) and brighter vessel-like blobs inside the lungs.
    It is not a CT image and must never be presented as one.
    """
    from scipy import ndimage

    mask = lung_mask > 0.5
    rng = np.random.default_rng(zlib.crc32(case.encode()) + 20201008)
    margin = 0.12 * min(mask.shape)
    body = ndimage.distance_transform_edt(~mask) <= margin
    volume = np.full(mask.shape, -1000.0, dtype=np.float32)
    tissue = 40.0 + 20.0 * ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)
    volume[body] = tissue[body]
    texture = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.5 * min(mask.shape) / 96.0)
    vessels = texture > np.quantile(texture[mask], 0.9) if mask.any() else np.zeros_like(mask)
    volume[mask] = -850.0 + 30.0 * texture[mask] / (texture.std() + 1e-6)
    volume[mask & vessels] = -150.0
    return volume


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
        :class:`DataUnavailableError`.

    Returns
    -------
    LungPairs
    """
    import nibabel

    if split not in ("train", "valid", "test"):
        raise ValueError(f"`split` is {split!r}; it needs to be 'train', 'valid' or 'test'.")
    manifest = load_manifest()
    entries = [entry for entry in _dataset("paired_ct_lung", manifest)["files"]
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
    name = STANDIN_NAME if standin else "paired_ct_lung"
    description = (
        "STAND-IN DATA: synthetic CT-like images built from the real lung masks, NOT real CT. "
        "Numbers and figures from it say nothing about real lung registration."
        if standin else "Real paired lung CT (Learn2Reg 2020 task 2)."
    )
    return LungPairs(
        **{key: np.stack(value) for key, value in arrays.items()},
        cases=cases, spacing=spacing, orientation=codes.pop(), is_standin=standin, name=name, description=description,
    )


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m tutorial_utils.data list | fetch NAME... | fetch --all | verify``."""
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the datasets and where files would come from")
    prefetch = commands.add_parser("fetch", help="download (or find in a mirror) and verify datasets")
    prefetch.add_argument("names", nargs="*", help="dataset names (see 'list')")
    prefetch.add_argument("--all", action="store_true", help="every dataset with files")
    commands.add_parser("verify", help="check every cached file against the manifest")
    args = parser.parse_args(argv)
    manifest = load_manifest()

    if args.command == "list":
        for name, dataset in manifest["datasets"].items():
            count = len(dataset["files"])
            print(f"{name:24s} {count:3d} files  {dataset['description'][:90]}")
        print(f"\ncache:   {cache_dir()}   (set {CACHE_ENV} to change)")
        print(f"mirrors: {[str(m) for m in mirror_dirs()] or 'none'}   (set {MIRROR_ENV})")
        return 0
    if args.command == "fetch":
        names = [n for n in manifest["datasets"] if manifest["datasets"][n]["files"]] if args.all else args.names
        if not names:
            parser.error("name at least one dataset, or use --all")
        failed = False
        for name in names:
            try:
                paths = fetch(name, manifest=manifest)
                print(f"{name}: {len(paths)} files verified")
            except (DataUnavailableError, ValueError) as error:
                failed = True
                print(f"{name}: FAILED\n{error}", file=sys.stderr)
        return 1 if failed else 0
    report = verify_cache(manifest)
    bad = {path: state for path, state in report.items() if state.startswith("MISMATCH")}
    present = sum(state == "ok" for state in report.values())
    print(f"{present} cached files verified, {len(bad)} mismatching, "
          f"{sum(state == 'missing' for state in report.values())} not cached ({cache_dir()})")
    for path, state in bad.items():
        print(f"  {path}: {state}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
