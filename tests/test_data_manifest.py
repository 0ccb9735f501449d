"""tutorial_utils.data.manifest: the manifest's validity, file hashes, the mirror and
cache folders (relative paths), and the manifest found by an installed package."""
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_utils import data
from data_fixtures import REPO, isolated  # noqa: F401  (a fixture)


def test_manifest_is_valid():
    manifest = data.load_manifest()
    seen = set()
    for name, dataset in manifest["datasets"].items():
        for key in ("description", "citation", "licence"):
            assert dataset.get(key), f"{name} lacks {key}"
        if dataset.get("standin_for"):
            assert "STAND-IN" in dataset["description"] and not dataset["files"]
            continue
        assert dataset["files"], name
        for entry in dataset["files"]:
            assert entry["path"] not in seen, f"duplicate {entry['path']}"
            seen.add(entry["path"])
            assert re.fullmatch(r"(sha256:[0-9a-f]{64}|gitsha1:[0-9a-f]{40})", entry["hash"]), entry
            assert len(entry["urls"]) >= 2, "a pinned GitHub URL and at least one independent mirror"
            assert len(set(entry["urls"])) == len(entry["urls"])
            for url in entry["urls"]:
                assert entry["commit"] in url and re.search(r"[0-9a-f]{40}", url), f"{url} is not pinned"
                assert "/master/" not in url and "/paired_ct_lung/" not in url.split(entry["commit"])[0]
            assert any("raw.githubusercontent.com" in u for u in entry["urls"])
            assert any("github" not in u.split("/")[2] for u in entry["urls"]), "an independent mirror"
    assert "Zenodo" in manifest["datasets"]["paired_ct_lung"]["citation"]
    assert "10.5281/zenodo.3835682" in manifest["datasets"]["paired_ct_lung"]["citation"]
    assert "Litjens" in manifest["datasets"]["promise12"]["citation"]
    assert "Vallieres" in manifest["datasets"]["hnct"]["citation"]


def test_manifest_agrees_with_upstream_listing(upstream_tsv):
    manifest = data.load_manifest()
    entries = {e["path"]: e for d in manifest["datasets"].values() for e in d["files"]}
    rows = list(csv.DictReader(open(upstream_tsv), delimiter="\t"))
    assert set(entries) == {row["path"] for row in rows}
    for row in rows:
        entry = entries[row["path"]]
        assert entry["commit"] == row["upstream_commit"]
        expected = row["sha256"] if row["sha256"] not in ("", "-") else row["git_blob_sha1"]
        assert entry["hash"].split(":")[1] == expected


def test_packaged_manifest_is_the_repository_manifest():
    packaged = REPO / "tutorial_utils" / "data_manifest.yaml"
    assert packaged.read_bytes() == (REPO / "data_manifest.yaml").read_bytes()


def test_mirror_files_match_their_hashes(mirror_dir):
    manifest = data.load_manifest()
    checked = 0
    for dataset in manifest["datasets"].values():
        for entry in dataset["files"]:
            path = mirror_dir / entry["path"]
            if path.exists():
                ok, why = data.check_file(path, entry)
                assert ok, f"{path}: {why}"
                checked += 1
    assert checked == 40  # 2 h5 files and 38 lung masks; the 38 lung CT images are not mirrored


def test_gitsha1_matches_git(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert data.file_hash(path, "gitsha1") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_check_file_says_size_then_hash(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    good = {"hash": "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "size": 3}  # FIPS 180-2
    assert data.check_file(path, good) == (True, "")
    assert "size 3 bytes, expected 4" in data.check_file(path, {**good, "size": 4})[1]
    assert "expected sha256 00" in data.check_file(path, {"hash": "sha256:" + "0" * 64})[1]


@pytest.mark.parametrize("where", [".", "book/chapters"])
def test_relative_mirror_means_the_same_folder_from_root_and_chapters(isolated, monkeypatch, mirror_dir, where):
    relative = Path(os.path.relpath(mirror_dir, data.path_base()))
    assert not relative.is_absolute()
    monkeypatch.setenv(data.MIRROR_ENV, str(relative))
    monkeypatch.chdir(REPO / where)
    # compared after resolving symlinks on both sides: `shared` may be a link
    assert [path.resolve() for path in data.mirror_dirs()] == [mirror_dir.resolve()]
    assert data.mirror_dirs()[0].is_absolute()
    found = data.fetch("hnct")["hnct/demo.h5"]
    assert found.resolve() == (mirror_dir / "hnct/demo.h5").resolve()


def test_relative_cache_is_absolute_and_independent_of_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV, "some/cache")
    monkeypatch.chdir(tmp_path)
    first = data.cache_dir()
    monkeypatch.chdir(REPO / "book")
    assert first == data.cache_dir() == data.path_base() / "some" / "cache"
    assert first.is_absolute()


def test_installed_package_finds_its_manifest_and_runs_from_another_folder(tmp_path):
    """A non-editable install (the symlinked manifest copied as a file), run outside the checkout."""
    pytest.importorskip("setuptools")
    source, target = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "data_manifest.yaml"):  # a copy: setuptools writes into it
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "tutorial_utils", source / "tutorial_utils", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert (source / "tutorial_utils" / "data_manifest.yaml").is_symlink()
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", "--target", str(target), str(source)],
                             capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    manifest = target / "tutorial_utils" / "data_manifest.yaml"
    assert manifest.is_file() and not manifest.is_symlink()
    assert manifest.read_bytes() == (REPO / "data_manifest.yaml").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(target), data.CACHE_ENV: str(tmp_path / "cache")}
    env.pop(data.MIRROR_ENV, None)
    listed = subprocess.run([sys.executable, "-m", "tutorial_utils.data", "list"], capture_output=True, text=True,
                            cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "paired_ct_lung_standin" in listed.stdout and str(tmp_path / "cache") in listed.stdout
    where = subprocess.run([sys.executable, "-c", "from tutorial_utils import data; print(data.__file__, "
                            "data.path_base())"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert where.stdout.split() == [str(target / "tutorial_utils" / "data" / "__init__.py"), str(tmp_path)]
