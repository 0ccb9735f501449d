"""Verified fetching: mirror, else cache, else download; and the data errors.

Every file-system state a shared (classroom) cache or mirror can be in ends in a
verified file or in :class:`DataUnavailableError` / :class:`DataIntegrityError`
whose message names every place tried, what went wrong there, and what to do;
never in a raw ``OSError``:

- a mirror copy that is missing, a folder, unreadable or corrupted is skipped
  (with a note; mirrors are never modified) and the next source is tried;
- a cached copy that is corrupted (zero-length or truncated included) is moved
  aside and deleted, then downloaded again; if it cannot be deleted (a read-only
  cache) the download is still tried and the error says the cache cannot be
  written and to set ``TUTORIAL_DATA_CACHE``; a good copy in a read-only cache is
  used as it is;
- a download goes to a fresh ``<name>.<random>.part`` file (created with the
  user's umask, so others sharing the cache can read it), is verified, and only
  then atomically renamed onto its final name, so a partial, tampered or stale
  ``.part`` file is never used and never blocks anything; two processes fetching
  the same file each verify their own download and the last rename wins (both
  copies are the same verified bytes); if a rename fails but the final name now
  holds a verified copy (another process won), that copy is used;
- a cache folder that cannot be created or written (permissions, a file where
  the folder should be, a full disk: ``ENOSPC`` while downloading) stops the
  downloads at once, leaves no partial file, and says so.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import time
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from .manifest import (CACHE_ENV, MIRROR_ENV, cache_dir, check_file, dataset, load_manifest, mirror_settings,
                       path_base)

__all__ = ["DataUnavailableError", "DataIntegrityError", "verify_file", "fetch_file", "fetch", "verify_cache"]


class DataUnavailableError(RuntimeError):
    """No source could provide a verified copy of a file."""


class DataIntegrityError(DataUnavailableError):
    """A file's content does not match the size or hash in the manifest.

    Raised by :func:`verify_file`, and by :func:`fetch_file` when the only copies
    it found (mirror, cache or download) failed verification: a subclass of
    :class:`DataUnavailableError`, since no verified copy is available either.
    """


def verify_file(path: os.PathLike, entry: dict) -> Path:
    """``path`` if its size and hash match the manifest ``entry``.

    Raises
    ------
    DataIntegrityError
        When they do not; the message gives the size or hash found and expected.
    OSError
        When the file cannot be read.
    """
    ok, why = check_file(path, entry)
    if not ok:
        raise DataIntegrityError(f"{path}: {why}")
    return Path(path)


# --------------------------------------------------------------------------
# file-system primitives, safe in a folder other processes share
# --------------------------------------------------------------------------
#: errno values of an OSError that mean the local disk or folder, not the network, failed.
_LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


def _describe(error: OSError) -> str:
    """``"PermissionError: Permission denied: '/path'"``: the type, the reason, the path."""
    reason = error.strerror or str(error) or "no reason given"
    where = f": {str(error.filename)!r}" if error.filename else ""
    return f"{type(error).__name__}: {reason}{where}"


def _examine(path: Path, entry: dict) -> Tuple[str, str, Optional[os.stat_result]]:
    """``(state, why, stat)`` of a candidate copy, never raising an OSError. ``state`` is
    ``"ok"``, ``"missing"`` (dangling links included), ``"mismatch"`` (size or hash
    wrong; ``why`` says which) or ``"unusable"`` (a folder, not a regular file, or
    unreadable; ``why`` says which)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing", "not there" + (" (a dangling symbolic link)" if os.path.islink(path) else ""), None
    except OSError as error:
        return "unusable", f"cannot be read ({_describe(error)})", None
    if stat.S_ISDIR(info.st_mode):
        return "unusable", "is a folder where the file should be", info
    if not stat.S_ISREG(info.st_mode):
        return "unusable", "is not a regular file", info
    try:
        ok, why = check_file(path, entry)
    except OSError as error:
        return "unusable", f"cannot be read ({_describe(error)})", info
    return ("ok", "", info) if ok else ("mismatch", why, info)


@contextmanager
def _temporary_file(final: Path) -> Iterator[Path]:
    """A fresh, empty ``<name>.<random>.part`` file beside ``final`` (its folder
    created if needed), removed on exit unless the caller moved it onto ``final``.

    Created with ``os.open(O_CREAT | O_EXCL, 0o666)``: a name no other process
    uses, and the user's umask applies (``tempfile.mkstemp`` would make it
    readable by its owner only, which breaks a cache shared by a class).
    Raises OSError if the folder or the file cannot be created.
    """
    os.makedirs(final.parent, exist_ok=True)
    while True:
        part = final.with_name(f"{final.name}.{secrets.token_hex(6)}.part")
        try:
            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # another process drew the same name: draw again
            continue
    try:
        yield part
    finally:
        with suppress(OSError):  # already renamed, or the folder became read-only
            os.unlink(part)


def _same_file(path: Path, seen: os.stat_result) -> bool:
    """Whether ``path`` is still the file ``seen`` (same device and inode; True if it cannot be told)."""
    try:
        info = os.stat(path)
    except OSError:
        return True
    return (info.st_dev, info.st_ino) == (seen.st_dev, seen.st_ino)


def _discard(path: Path, entry: dict, seen: os.stat_result) -> Tuple[str, Optional[Path]]:
    """Delete the rejected cached copy at ``path`` (the file ``seen`` by stat), safely
    against another process that replaced it with a verified copy meanwhile:
    ``(what happened, the path if it now holds a verified copy)``."""
    aside = path.with_name(f"{path.name}.{secrets.token_hex(6)}.rejected")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return "already removed by another process", None
    except OSError as error:
        return f"could not be deleted ({_describe(error)})", None
    if not _same_file(aside, seen) and _examine(aside, entry)[0] == "ok":
        with suppress(OSError):  # another process's verified copy: put it back
            os.replace(aside, path)
            return "replaced meanwhile by another process's verified copy", path
    with suppress(OSError):
        os.unlink(aside)
    return "deleted", None


def _download(url: str, target: Path, timeout: float, progress: bool) -> None:
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    downloader(url, str(target), None)


# --------------------------------------------------------------------------
# the sources, in order
# --------------------------------------------------------------------------
@dataclass
class _Attempts:
    """What each source said, for the final error message."""

    lines: List[str] = field(default_factory=list)
    integrity_failed: bool = False
    cache_problem: str = ""

    def add(self, line: str, integrity: bool = False) -> None:
        self.lines.append(line)
        self.integrity_failed |= integrity


def _from_mirrors(entry: dict, attempts: _Attempts) -> Optional[Path]:
    """The first mirror copy that verifies; mirrors are read, never modified."""
    for setting, mirror in mirror_settings():
        candidate = mirror / entry["path"]
        state, why, _ = _examine(candidate, entry)
        if state == "ok":
            return candidate
        if state == "missing":
            where = (f"the folder exists but has no {entry['path']}" if os.path.isdir(mirror)
                     else "that folder does not exist")
            attempts.add(f"mirror {candidate}: {why} ({MIRROR_ENV} entry {setting!r} is {mirror}; {where})")
        elif state == "mismatch":
            attempts.add(f"mirror {candidate}: {why}: REJECTED", integrity=True)
            warnings.warn(f"Ignoring mirror file {candidate}: {why}: its content does not match the manifest.")
        else:
            attempts.add(f"mirror {candidate}: {why}: skipped")
            warnings.warn(f"Skipping mirror file {candidate}: it {why}.")
    return None


def _from_cache(entry: dict, attempts: _Attempts) -> Optional[Path]:
    """The cached copy if it verifies; a copy that does not is deleted if it can be."""
    cached = cache_dir() / entry["path"]
    state, why, info = _examine(cached, entry)
    if state == "ok":
        return cached
    if state == "mismatch":
        warnings.warn(f"Deleting the cached {cached}: {why}: it does not match the manifest; fetching again.")
        what, recovered = _discard(cached, entry, info)
        attempts.add(f"cache {cached}: {why}: REJECTED and {what}", integrity=recovered is None)
        return recovered
    if state == "unusable":
        attempts.add(f"cache {cached}: {why}")
    return None


def _install(part: Path, cached: Path, entry: dict) -> Path:
    """Rename the verified ``part`` onto ``cached`` (atomic on one file system); if
    that fails but ``cached`` now holds a verified copy (another process's), use it."""
    try:
        os.replace(part, cached)
    except OSError:
        if _examine(cached, entry)[0] != "ok":
            raise
    return cached


def _try_url(url: str, cached: Path, entry: dict, attempts: _Attempts, label: str,
             timeout: float, progress: bool) -> Tuple[str, Optional[Path]]:
    """One download of ``url``: ``("done", path)``, ``("retry", None)`` after a network
    error, ``("next", None)`` after a wrong download; a local OSError (the cache
    folder or the ``.part`` file cannot be created, written or renamed) propagates."""
    with _temporary_file(cached) as part:
        try:
            _download(url, part, timeout, progress)
        except Exception as error:  # network errors come in many types
            if isinstance(error, OSError) and error.errno in _LOCAL_ERRNOS:
                raise
            reason = str(error).splitlines()[0][:200] if str(error) else ""
            attempts.add(f"{label}: {type(error).__name__}: {reason}")
            return "retry", None
        state, why, _ = _examine(part, entry)
        if state != "ok":
            attempts.add(f"{url}: REJECTED, downloaded content has {why}", integrity=True)
            return "next", None  # the same URL would give the same wrong bytes
        return "done", _install(part, cached, entry)


def _download_verified(entry: dict, attempts: _Attempts, *, progress: bool, retries: int,
                       timeout: float, backoff: float) -> Optional[Path]:
    """Each URL in turn, with retries, into a temporary file that is renamed onto the
    cache path only once it verifies. Stops at the first local file-system error."""
    cached = cache_dir() / entry["path"]
    if os.path.isdir(cached):
        attempts.cache_problem = f"{cached} is a folder where the file should be; remove it"
        attempts.add(f"downloads: skipped, there is a folder at {cached} where they would be saved")
        return None
    for url in entry.get("urls", []):
        for attempt in range(retries + 1):
            try:
                outcome, path = _try_url(url, cached, entry, attempts, f"{url} (try {attempt + 1})",
                                         timeout, progress)
            except OSError as error:
                attempts.add(f"{url}: not saved, the cache cannot be written ({_describe(error)}); "
                             "no partial file was left")
                attempts.cache_problem = _describe(error)
                return None
            if outcome == "done":
                return path
            if outcome == "next":
                break
            if attempt < retries:
                time.sleep(backoff * (2 ** attempt))
    return None


def _unavailable(relative: str, attempts: _Attempts) -> DataUnavailableError:
    tried = "\n  - ".join(attempts.lines) if attempts.lines else "(no mirror set, nothing cached, no URLs)"
    kind = DataIntegrityError if attempts.integrity_failed else DataUnavailableError
    cache_advice = (
        f"The cache folder {cache_dir()} cannot be used ({attempts.cache_problem}). Set {CACHE_ENV} to a "
        f"folder you can write, with free space, e.g.\n  export {CACHE_ENV}=$HOME/tutorial-data-cache\n"
        if attempts.cache_problem else ""
    )
    return kind(
        f"Could not get a verified copy of {relative}.\nSources tried:\n  - {tried}\n{cache_advice}"
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
        If no source had the file at all, or the cache cannot be written (then the
        message says so and to set ``TUTORIAL_DATA_CACHE``). Both messages list every
        source tried (absolute paths) and what went wrong with each. File-system
        errors never escape as a raw OSError (see the module docstring).
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
    """Verified local copies of a dataset's files (see :func:`fetch_file`).

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

    Raises
    ------
    ValueError
        For an unknown dataset or file, or a stand-in (built locally, not fetched).
    """
    manifest = manifest or load_manifest()
    described = dataset(name, manifest)
    if described.get("standin_for"):
        raise ValueError(
            f"{name!r} is a stand-in built on your machine, not a set of files; load it with "
            f"load_lung_pairs(..., standin=True)."
        )
    entries = described["files"]
    if files is not None:
        wanted = set(files)
        unknown = wanted - {entry["path"] for entry in entries}
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not files of dataset {name!r}.")
        entries = [entry for entry in entries if entry["path"] in wanted]
    return {entry["path"]: fetch_file(entry, progress=progress) for entry in entries}


def verify_cache(manifest: Optional[dict] = None) -> Dict[str, str]:
    """Check every cached file against the manifest.

    Returns ``{relative path: "ok" | "missing" | "MISMATCH: ..." | "UNUSABLE: ..."}``
    (``UNUSABLE``: a folder, not a regular file, or unreadable); nothing is deleted
    (a mismatching file is replaced on its next fetch). Stray ``.part`` files of
    interrupted downloads are neither used nor reported.
    """
    manifest = manifest or load_manifest()
    report = {}
    for described in manifest["datasets"].values():
        for entry in described["files"]:
            state, why, _ = _examine(cache_dir() / entry["path"], entry)
            report[entry["path"]] = {"ok": "ok", "missing": "missing"}.get(state) or f"{state.upper()}: {why}"
    return report
