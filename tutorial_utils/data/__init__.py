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

What a shared (classroom) cache or mirror can hold (read-only folders, corrupted,
zero-length or unreadable copies, stale ``.part`` files, a folder where a file
should be, two processes downloading at once, a full disk) and what each ends in:
see :mod:`tutorial_utils.data.fetching`.

Modules, one concern each (everything public is importable from
``tutorial_utils.data`` itself):

- :mod:`~tutorial_utils.data.manifest`  the manifest, file hashes, the mirror and cache folders
- :mod:`~tutorial_utils.data.fetching`  verified fetching and the data errors
- :mod:`~tutorial_utils.data.loaders`   the loaders and :class:`LungPairs`
- :mod:`~tutorial_utils.data.standin`   the labelled lung stand-in and :func:`describe_lung_source`
- :mod:`~tutorial_utils.data.cli`       the command line:
  ``python -m tutorial_utils.data list | fetch NAME... | fetch --all | verify``
"""
from .cli import main
from .fetching import DataIntegrityError, DataUnavailableError, fetch, fetch_file, verify_cache, verify_file
from .loaders import (HEAD_NECK_ORIENTATION, LUNG_SIZE, LUNG_SPACING, PROSTATE_ORIENTATION, LungPairs,
                      load_head_neck_ct, load_lung_pairs, load_prostate_mr)
from .manifest import (CACHE_ENV, MIRROR_ENV, cache_dir, check_file, file_hash, load_manifest, mirror_dirs,
                       path_base, resolve_user_path)
from .standin import describe_lung_source, standin_ct_from_mask

__all__ = [
    "MIRROR_ENV",
    "CACHE_ENV",
    "DataUnavailableError",
    "DataIntegrityError",
    "load_manifest",
    "fetch",
    "fetch_file",
    "verify_file",
    "check_file",
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
    "standin_ct_from_mask",
    "describe_lung_source",
    "HEAD_NECK_ORIENTATION",
    "PROSTATE_ORIENTATION",
    "LUNG_SIZE",
    "LUNG_SPACING",
    "main",
]
