"""The manifest and where files live: ``data_manifest.yaml``, file hashes, and the
mirror and cache folders set by ``TUTORIAL_DATA_MIRROR`` / ``TUTORIAL_DATA_CACHE``."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple

import yaml

__all__ = [
    "MIRROR_ENV", "CACHE_ENV", "load_manifest", "file_hash", "check_file",
    "path_base", "resolve_user_path", "cache_dir", "mirror_dirs", "mirror_settings",
]

MIRROR_ENV = "TUTORIAL_DATA_MIRROR"
CACHE_ENV = "TUTORIAL_DATA_CACHE"
_MANIFEST_NAME = "data_manifest.yaml"
#: The package folder (``tutorial_utils``), this module being ``tutorial_utils/data/manifest.py``.
_PACKAGE = Path(__file__).resolve().parent.parent


def _manifest_path() -> Path:
    """The packaged manifest (``tutorial_utils/data_manifest.yaml``, a symlink in a
    checkout and a copy in an installed package), else the repository's."""
    for candidate in (_PACKAGE / _MANIFEST_NAME, _PACKAGE.parent / _MANIFEST_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{_MANIFEST_NAME} not found in {_PACKAGE} or {_PACKAGE.parent}; reinstall tutorial_utils.")


@lru_cache(maxsize=None)
def _load_manifest_cached(path: str) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def load_manifest(path: Optional[os.PathLike] = None) -> dict:
    """The parsed ``data_manifest.yaml`` (the packaged one, unless ``path`` is given).

    >>> "hnct" in load_manifest()["datasets"]
    True
    """
    return _load_manifest_cached(str(path or _manifest_path()))


def dataset(name: str, manifest: dict) -> dict:
    """The manifest's entry for dataset ``name``, or a ValueError listing the known ones."""
    datasets = manifest["datasets"]
    if name not in datasets:
        raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(datasets)}.")
    return datasets[name]


# --------------------------------------------------------------------------
# hashes
# --------------------------------------------------------------------------
def file_hash(path: os.PathLike, algorithm: str) -> str:
    """Hex digest of a file: ``"sha256"`` of its bytes, or ``"gitsha1"``, the git
    blob SHA-1 (SHA-1 of ``b"blob <size>\\0"`` followed by the bytes; what
    ``git hash-object`` prints, see the git book, "Git Objects").

    Raises ValueError for another ``algorithm``, OSError if the file cannot be read.
    """
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


def check_file(path: os.PathLike, entry: dict) -> Tuple[bool, str]:
    """``(ok, why-not)`` for a candidate copy of a manifest ``entry``: its size (when
    the entry gives one) and hash. Raises OSError if the file cannot be read."""
    path = Path(path)
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
    root = _PACKAGE.parent
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
    :func:`resolve_user_path`) or the per-user cache (``~/.cache/tutorial-utils``
    on Linux). Not created here: :func:`~tutorial_utils.data.fetch_file` creates
    it when it first downloads."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return resolve_user_path(configured)
    import pooch

    return Path(pooch.os_cache("tutorial-utils")).resolve()


def mirror_settings() -> List[Tuple[str, Path]]:
    """``(as written, absolute path)`` for each folder in ``$TUTORIAL_DATA_MIRROR``."""
    configured = os.environ.get(MIRROR_ENV, "")
    return [(part, resolve_user_path(part)) for part in configured.split(os.pathsep) if part.strip()]


def mirror_dirs() -> List[Path]:
    """Mirror directories named in ``$TUTORIAL_DATA_MIRROR``, absolute (may be empty)."""
    return [path for _, path in mirror_settings()]
