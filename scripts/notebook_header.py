"""Write each chapter's first two cells from the one repository URL in book/_config.yml.

Cell 1 (markdown, tag "header-badge"): the "Open in Colab" badge.
Cell 2 (code, tag "header-setup"): installs tutorial_utils on Colab, pinned to
this book's version (the git tag v<version>), checks it locally, reports the GPU.

Usage:
  python scripts/notebook_header.py            # rewrite the headers in book/chapters
  python scripts/notebook_header.py --check    # exit 1 if any header is stale (CI)
  python scripts/notebook_header.py --notebooks DIR --colab-path PATH   # e.g. the student edition
"""
import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

REPO = Path(__file__).resolve().parents[1]


def settings():
    config = yaml.safe_load((REPO / "book" / "_config.yml").read_text())
    url = config["repository"]["url"].rstrip("/")
    branch = config["repository"].get("branch", "main")
    match = re.match(r"https://github\.com/([^/]+/[^/]+)$", url)
    if not match:
        sys.exit(f"repository.url in book/_config.yml must be https://github.com/OWNER/NAME, got {url}")
    version = re.search(r'__version__ = "([^"]+)"', (REPO / "tutorial_utils" / "__init__.py").read_text()).group(1)
    return url, match.group(1), branch, version


def badge_cell(owner_repo, branch, colab_path):
    link = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{colab_path}"
    source = f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata["tags"] = ["header-badge"]
    return cell


SETUP = '''# Set-up. On Colab: install the course package, pinned to this book's version.
# Locally: check that it is installed (see the README). Then report the hardware.
import importlib.util
import subprocess
import sys

# written by scripts/notebook_header.py from book/_config.yml:
REPOSITORY = "{url}"
VERSION = "{version}"
on_colab = "google.colab" in sys.modules
if on_colab and importlib.util.find_spec("tutorial_utils") is None:
    package = f"tutorial_utils @ git+{{REPOSITORY}}@v{{VERSION}}"
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [package], check=True)
if importlib.util.find_spec("tutorial_utils") is None:
    raise ModuleNotFoundError(
        "tutorial_utils is not installed: run `pip install -e .[cpu]` in the "
        "repository (see its README), then restart the kernel."
    )

import tutorial_utils  # imports TensorFlow without its start-up chatter
import tensorflow as tf
from tutorial_utils.config import describe_mode

gpus = tf.config.list_physical_devices("GPU")
gpu = gpus[0].name if gpus else "none (CPU)"
version = tutorial_utils.__version__
print(f"tutorial_utils {{version}}, TensorFlow {{tf.__version__}}, GPU: {{gpu}}")
print(describe_mode())'''


def setup_cell(url, version):
    cell = nbformat.v4.new_code_cell(SETUP.format(url=url, version=version))
    cell.metadata["tags"] = ["header-setup", "hide-input"]
    return cell


def apply(notebook_path: Path, colab_path: str, check: bool) -> bool:
    """Rewrite (or check) one notebook's header; return True if it was up to date."""
    url, owner_repo, branch, version = settings()
    notebook = nbformat.read(notebook_path, as_version=4)
    wanted = [badge_cell(owner_repo, branch, colab_path), setup_cell(url, version)]
    cells = notebook.cells
    tags = [c.metadata.get("tags", []) for c in cells[:2]]
    has_header = len(cells) >= 2 and "header-badge" in tags[0] and "header-setup" in tags[1]
    current = cells[:2] if has_header else []
    up_to_date = has_header and all(
        a.source == b.source and a.metadata.get("tags") == b.metadata.get("tags") for a, b in zip(current, wanted)
    )
    if not check and not up_to_date:
        notebook.cells = wanted + (cells[2:] if has_header else cells)
        nbformat.write(notebook, notebook_path)
    return up_to_date


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--notebooks", type=Path, default=REPO / "book" / "chapters")
    parser.add_argument("--colab-path", default="book/chapters", help="folder of the notebooks in the repository")
    args = parser.parse_args()
    stale = []
    for path in sorted(args.notebooks.glob("*.ipynb")):
        if not apply(path, f"{args.colab_path}/{path.name}", args.check):
            stale.append(path.name)
    if args.check and stale:
        sys.exit(f"stale notebook headers: {stale}; run python scripts/notebook_header.py")
    print(("checked " if args.check else "wrote ") + f"headers of {args.notebooks}")


if __name__ == "__main__":
    main()
