"""``python -m tutorial_utils.register FIXED MOVING --out DIR``: register two files in mm.

The command line of :func:`tutorial_utils.register.files.register_files` (the
appendix chapter "Your own images" explains the files and how to open them in
3D Slicer and ITK-SNAP)::

    python -m tutorial_utils.register fixed.nii.gz moving.nii.gz --out results \\
        [--fixed-label F] [--moving-label M] [--spacing MM] [--quick] [--no-affine] [--force]

Exit codes: 0 done; 2 bad input (a missing or unreadable file, a non-3-D
image, a label on another grid, a degenerate geometry, existing outputs
without ``--force``), with a one-line error on stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .files import register_files

__all__ = ["main", "build_parser", "summary"]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of mm") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of mm")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its ``--help`` is the command's documentation)."""
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils.register",
        description="Register MOVING to FIXED (affine, then nonrigid) in millimetres on an isotropic "
                    "grid; write affine.tfm, ddf.nii.gz (ITK displacement field, fixed mm -> moving mm), "
                    "warped_moving.nii.gz, warped_moving_label.nii.gz and report.json, which 3D Slicer "
                    "and ITK-SNAP open.")
    parser.add_argument("fixed", help="the fixed image (NIfTI, NRRD, MHA, or a DICOM folder)")
    parser.add_argument("moving", help="the moving image")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--fixed-label", metavar="F", help="label map on the fixed image's grid")
    parser.add_argument("--moving-label", metavar="M", help="label map on the moving image's grid")
    parser.add_argument("--spacing", type=_positive, metavar="MM",
                        help="registration voxel size in mm (default: the fixed image's finest spacing)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations: a first look")
    parser.add_argument("--no-affine", action="store_true",
                        help="skip the affine stage: start from the scanner's placement (two patients)")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def summary(report: dict, relative_to=None) -> str:
    """A few lines: grid, time, Dice before/after (with labels), folding, the files.

    ``relative_to``: a folder; the files are then shown relative to it.

    >>> print(summary({"grid": {"spacing_mm": 1.0, "shape": [2, 3, 4]}, "mode": "quick",
    ...                "seconds": {"affine": 1.0}, "folding_percent": 0.0, "files": {"ddf": "d.nii.gz"}}))
    registered on a 1 mm isotropic grid of (2, 3, 4) voxels (quick settings) in 1.0 s
    folding: 0.000 % of voxels
    files:
      ddf           d.nii.gz
    """
    grid = report["grid"]
    lines = [f"registered on a {grid['spacing_mm']:g} mm isotropic grid of {tuple(grid['shape'])} voxels "
             f"({report['mode']} settings) in {sum(report['seconds'].values()):.1f} s"]
    if "dice_after" in report:
        hd95 = {when: report[f"hd95_mm_{when}"] for when in ("before", "after")}
        lines.append(f"Dice {report['dice_before']:.3f} -> {report['dice_after']:.3f}, HD95 "
                     + " -> ".join("n/a" if v is None else f"{v:.1f} mm" for v in hd95.values())
                     + " (fixed image's frame)")
    lines.append(f"folding: {report['folding_percent']:.3f} % of voxels")
    lines.append("files:")
    for key, path in report["files"].items():
        shown = path if relative_to is None else os.path.relpath(path, relative_to)
        lines.append(f"  {key:13s} {shown}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; return its exit code (0, or 2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = register_files(args.fixed, args.moving, args.out, fixed_label=args.fixed_label,
                                moving_label=args.moving_label, spacing=args.spacing,
                                quick=args.quick, affine=not args.no_affine, force=args.force, progress=not args.no_progress)
    except (OSError, ValueError) as error:  # FileNotFoundError, FileExistsError are OSErrors
        print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0
