"""The command line: ``python -m tutorial_utils.data list | fetch NAME... | fetch --all | verify``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .fetching import DataUnavailableError, fetch, verify_cache
from .manifest import CACHE_ENV, MIRROR_ENV, cache_dir, load_manifest, mirror_dirs

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils.data",
                                     description="The course's data: a pinned manifest, verified fetching.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the datasets and where files would come from")
    prefetch = commands.add_parser("fetch", help="download (or find in a mirror) and verify datasets")
    prefetch.add_argument("names", nargs="*", help="dataset names (see 'list')")
    prefetch.add_argument("--all", action="store_true", help="every dataset with files")
    commands.add_parser("verify", help="check every cached file against the manifest")
    return parser


def _fetch(names: Sequence[str], manifest: dict) -> int:
    failed = False
    for name in names:
        try:
            paths = fetch(name, manifest=manifest)
            print(f"{name}: {len(paths)} files verified")
        except (DataUnavailableError, ValueError) as error:
            failed = True
            print(f"{name}: FAILED\n{error}", file=sys.stderr)
    return 1 if failed else 0


def _verify(manifest: dict) -> int:
    report = verify_cache(manifest)
    bad = {path: state for path, state in report.items() if state not in ("ok", "missing")}
    present = sum(state == "ok" for state in report.values())
    missing = sum(state == "missing" for state in report.values())
    print(f"{present} cached files verified, {len(bad)} mismatching or unusable, {missing} not cached "
          f"({cache_dir()})")
    for path, state in bad.items():
        print(f"  {path}: {state}")
    return 1 if bad else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m tutorial_utils.data list | fetch NAME... | fetch --all | verify``;
    returns the exit status (0 when everything asked for is verified)."""
    parser = _parser()
    args = parser.parse_args(argv)
    manifest = load_manifest()
    if args.command == "list":
        for name, described in manifest["datasets"].items():
            print(f"{name:24s} {len(described['files']):3d} files  {described['description'][:90]}")
        print(f"\ncache:   {cache_dir()}   (set {CACHE_ENV} to change)")
        print(f"mirrors: {[str(m) for m in mirror_dirs()] or 'none'}   (set {MIRROR_ENV})")
        return 0
    if args.command == "fetch":
        datasets = manifest["datasets"]
        names = [name for name in datasets if datasets[name]["files"]] if args.all else args.names
        if not names:
            parser.error("name at least one dataset, or use --all")
        return _fetch(names, manifest)
    return _verify(manifest)
