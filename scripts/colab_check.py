"""Run a chapter the way Colab does, in a Python that has TensorFlow and Jupyter
but not tutorial_utils. Called by scripts/test_colab.sh, which prepares that
Python (a virtual environment), a stand-in `google.colab`, and git settings
that send the set-up cell's repository URL to a local clone tagged v<version>.

Checks, in this order:
1. the chapter runs unchanged (quick mode) through its set-up cell, which must
   install tutorial_utils from REPOSITORY at tag v<VERSION>;
2. what got installed: tutorial_utils <version> from that tag's commit, with its
   data manifest, the classical-registration libraries, and the runtime's own
   TensorFlow left in place (no `cpu`/`gpu` extra on Colab);
3. the data layer's default source: with no mirror set, it fetches each file from
   the manifest's first URL (the network is replaced by a copy from the mirror,
   so the check needs no internet).

Usage (inside that Python): python colab_check.py NOTEBOOK --commit SHA --version V
    --manifest REPO/tutorial_utils/data_manifest.yaml --tensorflow 2.16.2
"""
import argparse
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def run_notebook(path: Path, kernel: str, timeout: int) -> list:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    workdir = Path(tempfile.mkdtemp(prefix="colab-content-"))  # Colab's /content: no repository
    client = NotebookClient(notebook, kernel_name=kernel, timeout=timeout,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    shutil.rmtree(workdir, ignore_errors=True)
    setup = notebook.cells[1]
    assert "header-setup" in setup.metadata.get("tags", []), "cell 2 is not the set-up cell"
    return [o.get("text", "") for o in setup.outputs if o.get("output_type") == "stream"]


def check_install(commit: str, version: str, tensorflow: str, printed: list) -> None:
    dist = importlib.metadata.distribution("tutorial_utils")
    assert dist.version == version, f"installed tutorial_utils {dist.version}, expected {version}"
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    vcs = direct.get("vcs_info", {})
    assert vcs.get("vcs") == "git", f"not installed from git: {direct}"
    assert vcs.get("requested_revision") == f"v{version}", f"installed from revision {vcs}, expected tag v{version}"
    assert vcs.get("commit_id") == commit, f"installed commit {vcs.get('commit_id')}, expected {commit}"
    import tutorial_utils

    assert "site-packages" in tutorial_utils.__file__, f"tutorial_utils imported from {tutorial_utils.__file__}"
    assert (Path(tutorial_utils.__file__).parent / "data_manifest.yaml").is_file(), "manifest not packaged"
    import tensorflow as tf

    assert tf.__version__ == tensorflow, f"the set-up cell replaced the runtime's TensorFlow by {tf.__version__}"
    for name in ("skimage", "itk"):
        __import__(name)  # the classical-registration chapters need them on Colab too
    text = "".join(printed)
    assert f"tutorial_utils {version}, TensorFlow {tensorflow}" in text, f"set-up cell printed {text!r}"


def check_default_data_source(manifest_path: Path, mirror: Path) -> int:
    """With no mirror, every file comes from its manifest's first URL."""
    import pooch
    import yaml
    from tutorial_utils import data

    expected = yaml.safe_load(manifest_path.read_text())
    assert data.load_manifest() == expected, "the installed manifest differs from the repository's"
    requested = []

    def offline_download(self, url, output_file, pooch_instance, check_only=False):
        requested.append(url)
        relative = url.split(f"/{entry['commit']}/", 1)[1]
        shutil.copyfile(mirror / relative, output_file)

    os.environ.pop(data.MIRROR_ENV, None)
    os.environ[data.CACHE_ENV] = tempfile.mkdtemp(prefix="colab-cache-")
    pooch.HTTPDownloader.__call__ = offline_download
    checked = 0
    for name, dataset in expected["datasets"].items():
        for entry in dataset["files"]:
            if not (mirror / entry["path"]).is_file():
                continue  # e.g. the lung CT images, which the mirror lacks
            requested.clear()
            local = data.fetch_file(entry, progress=False)
            assert requested == [entry["urls"][0]], f"{entry['path']}: fetched {requested}"
            assert entry["urls"][0].startswith("https://") and str(mirror) not in str(local)
            checked += 1
    assert checked, "no manifest file is in the mirror"
    return checked


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--tensorflow", required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--kernel", default="colab-check")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    assert "google.colab" not in sys.modules
    mirror = Path(os.environ["TUTORIAL_DATA_MIRROR"])
    printed = run_notebook(args.notebook, args.kernel, args.timeout)
    print(f"colab: {args.notebook.name} ran; set-up cell said: {''.join(printed).strip()}")
    check_install(args.commit, args.version, args.tensorflow, printed)
    print(f"colab: installed tutorial_utils {args.version} from tag v{args.version} ({args.commit[:10]})")
    checked = check_default_data_source(args.manifest, mirror)
    print(f"colab: with no mirror, {checked} data files come from their manifest URLs")


if __name__ == "__main__":
    main()
