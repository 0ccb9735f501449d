"""What the figures, the slice viewer and the notice share: input checks, the
label colour, and the package's HTML/JavaScript templates."""
from __future__ import annotations

import importlib.resources
import string
from functools import lru_cache
from typing import Optional

import numpy as np

#: Colour of a label drawn over an image (Okabe-Ito yellow #F0E442): colour-blind safe.
LABEL_COLOUR = (0.941, 0.894, 0.259)


def _volume(array, name: str) -> np.ndarray:
    """``array`` as one float32 volume ``(d1, d2, d3)``; size-1 axes dropped, else a ValueError naming ``name``."""
    volume = np.asarray(array, dtype=np.float32)
    volume = np.squeeze(volume)
    if volume.ndim != 3:
        raise ValueError(
            f"`{name}` has shape {np.shape(array)}; it needs one volume (d1, d2, d3) "
            "(a batch or channel axis of size 1 is dropped)."
        )
    return volume


def _slice(volume: np.ndarray, axis: int, index: Optional[int]) -> np.ndarray:
    """Slice ``index`` (default the middle) of ``volume`` along array ``axis``, in array order."""
    if axis not in (0, 1, 2):
        raise ValueError(f"`axis` is {axis}; it needs to be 0, 1 or 2 (d1, d2, d3).")
    index = volume.shape[axis] // 2 if index is None else int(index)
    if not 0 <= index < volume.shape[axis]:
        raise ValueError(f"slice {index} is outside 0..{volume.shape[axis] - 1} along axis {axis}.")
    return np.take(volume, index, axis=axis)


@lru_cache(maxsize=None)
def _template(name: str) -> string.Template:
    """A static file of ``tutorial_utils/templates`` (HTML or JavaScript), read once."""
    text = importlib.resources.files("tutorial_utils").joinpath("templates").joinpath(name).read_text(encoding="utf-8")
    return string.Template(text)
