"""The labelled lung stand-in: CT-like volumes synthesised from the REAL lung masks,
for machines that cannot fetch the lung CT images. Never chosen automatically
(:func:`tutorial_utils.config.lung_standin` reads the switch); always labelled."""
from __future__ import annotations

import zlib

import numpy as np

from ..config import LUNG_STANDIN_ENV

__all__ = ["standin_ct_from_mask", "describe_lung_source"]


def standin_ct_from_mask(lung_mask: np.ndarray, case: str) -> np.ndarray:
    """A CT-like STAND-IN volume (Hounsfield-like units) built from a real lung mask.

    ``lung_mask``: ``(d1, d2, d3)``, lung where > 0.5; returns float32 of the same
    shape. Deterministic for a given mask and case id. Air outside the body (-1000),
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


def describe_lung_source(standin: bool) -> str:
    """One line saying what the lung images are: for the stand-in, that they are
    synthetic, that results from them say nothing about real CT, and how to switch
    back; the line for banners and for :attr:`LungPairs.description`.

    Raises TypeError unless ``standin`` is a bool.

    >>> describe_lung_source(False)
    'Real paired lung CT (Learn2Reg 2020 task 2): inspiration (fixed) and expiration (moving) of each patient.'
    >>> describe_lung_source(True).startswith("STAND-IN DATA")
    True
    """
    if not isinstance(standin, (bool, np.bool_)):
        raise TypeError(f"`standin` is {standin!r} ({type(standin).__name__}); it needs to be True or False.")
    if not standin:
        return ("Real paired lung CT (Learn2Reg 2020 task 2): inspiration (fixed) and expiration (moving) "
                "of each patient.")
    return ("STAND-IN DATA: synthetic CT-like images built from the real lung masks, NOT real CT; numbers and "
            "figures from it say nothing about real lung registration. For the real CT, unset "
            f"{LUNG_STANDIN_ENV} (or set it to 0) and rerun.")
