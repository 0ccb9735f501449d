"""The data layer: manifest validity, mirror, cache, downloads, errors, loaders, stand-in."""
import csv
import functools
import hashlib
import http.server
import re
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from tutorial_utils import data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty cache and no mirror, whatever the caller's environment says."""
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails, as on a machine with no network."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def http_server(tmp_path):
    """A static file server on the loopback interface, serving tmp_path/'www'."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def entry_for(path: Path, relative: str, urls=(), algorithm="sha256", size=True):
    content = path.read_bytes()
    if algorithm == "sha256":
        digest = hashlib.sha256(content).hexdigest()
    else:
        digest = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    entry = {"path": relative, "hash": f"{algorithm}:{digest}", "urls": list(urls)}
    if size:
        entry["size"] = len(content)
    return entry


# ---------------------------------------------------------------- the manifest itself
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
                ok, why = data._check_file(path, entry)
                assert ok, f"{path}: {why}"
                checked += 1
    assert checked == 40  # 2 h5 files and 38 lung masks; the 38 lung CT images are not mirrored


def test_gitsha1_matches_git(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert data.file_hash(path, "gitsha1") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


# ---------------------------------------------------------------- fetching
@pytest.mark.parametrize("name, count", [("hnct", 1), ("promise12", 1)])
def test_fetch_from_mirror(isolated, monkeypatch, mirror_dir, name, count):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    paths = data.fetch(name)
    assert len(paths) == count
    for relative, path in paths.items():
        assert path == mirror_dir / relative
    assert not (isolated / "cache").exists(), "mirror files are used in place, not copied"


def test_fetch_lung_masks_from_mirror(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    masks = [e["path"] for e in data.load_manifest()["datasets"]["paired_ct_lung"]["files"] if "_labels/" in e["path"]]
    assert len(data.fetch("paired_ct_lung", files=masks, progress=False)) == 38


def test_tampered_mirror_copy_is_rejected_and_not_cached(isolated, monkeypatch, mirror_dir, no_network):
    fake_mirror = isolated / "mirror"
    (fake_mirror / "hnct").mkdir(parents=True)
    tampered = bytearray((mirror_dir / "hnct/demo.h5").read_bytes())
    tampered[5000] ^= 0xFF
    (fake_mirror / "hnct/demo.h5").write_bytes(bytes(tampered))
    monkeypatch.setenv(data.MIRROR_ENV, str(fake_mirror))
    with pytest.warns(UserWarning, match="does not match"):
        with pytest.raises(data.DataUnavailableError) as error:
            data.fetch("hnct", progress=False)
    message = str(error.value)
    assert "REJECTED" in message and "expected sha256 36a67372" in message
    assert not (isolated / "cache" / "hnct" / "demo.h5").exists()
    assert (fake_mirror / "hnct/demo.h5").exists(), "a mirror is never modified"
    # a second, good mirror after the bad one is used
    monkeypatch.setenv(data.MIRROR_ENV, f"{fake_mirror}:{mirror_dir}")
    with pytest.warns(UserWarning):
        assert data.fetch("hnct")["hnct/demo.h5"] == mirror_dir / "hnct/demo.h5"


def test_no_network_no_mirror_error_names_file_sources_and_variable(isolated, no_network):
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_file(data.load_manifest()["datasets"]["hnct"]["files"][0], retries=0, backoff=0)
    message = str(error.value)
    assert "hnct/demo.h5" in message
    assert "raw.githubusercontent.com" in message and "cdn.jsdelivr.net" in message
    assert data.MIRROR_ENV in message
    assert "ConnectionError" in message  # why each URL failed is said


def test_real_lung_images_offline_raise_not_fall_back(isolated, monkeypatch, mirror_dir, no_network):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    monkeypatch.setattr(data, "fetch_file", functools.partial(data.fetch_file, retries=0, backoff=0))
    with pytest.raises(data.DataUnavailableError, match=r"paired_ct_lung/valid/fixed_images/case_008\.nii\.gz"):
        data.load_lung_pairs("valid", size=(24, 24, 26))


def test_download_verifies_caches_atomically_and_retries_next_url(isolated, http_server, mirror_dir):
    root, base = http_server
    source = mirror_dir / "promise12/demo2.h5"
    (root / "good").mkdir()
    shutil.copy(source, root / "good" / "demo2.h5")
    (root / "bad").mkdir()
    (root / "bad" / "demo2.h5").write_bytes(b"not the file" * 1000)
    entry = entry_for(
        source, "promise12/demo2.h5",
        urls=[f"{base}/missing/demo2.h5", f"{base}/bad/demo2.h5", f"{base}/good/demo2.h5"],
        algorithm="gitsha1", size=False,
    )
    path = data.fetch_file(entry, progress=False, retries=1, backoff=0)
    cached = isolated / "cache" / "promise12" / "demo2.h5"
    assert path == cached and cached.read_bytes() == source.read_bytes()
    assert not list(cached.parent.glob("*.part")), "no partial files are left behind"
    # the cached copy is used (and verified) without touching the network
    (root / "good" / "demo2.h5").unlink()
    assert data.fetch_file(entry, progress=False) == cached


def test_truncated_cache_is_detected_and_replaced(isolated, http_server, mirror_dir):
    root, base = http_server
    source = mirror_dir / "hnct/demo.h5"
    shutil.copy(source, root / "demo.h5")
    entry = entry_for(source, "hnct/demo.h5", urls=[f"{base}/demo.h5"])
    cached = isolated / "cache" / "hnct" / "demo.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(source.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="Deleting the cached"):
        path = data.fetch_file(entry, progress=False)
    assert path.read_bytes() == source.read_bytes()
    report = data.verify_cache({"datasets": {"x": {"files": [entry]}}})
    assert report == {"hnct/demo.h5": "ok"}


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError) as error:
        data.fetch("brain_mri")
    assert "brain_mri" in str(error.value) and "hnct" in str(error.value) and "paired_ct_lung" in str(error.value)


def test_command_line_list_and_fetch(isolated, monkeypatch, mirror_dir, capsys):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    assert data.main(["list"]) == 0
    assert "paired_ct_lung_standin" in capsys.readouterr().out
    assert data.main(["fetch", "hnct", "promise12"]) == 0
    assert "1 files verified" in capsys.readouterr().out
    assert data.main(["verify"]) == 0


# ---------------------------------------------------------------- loaders
def test_head_neck_loader(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    ct = data.load_head_neck_ct()
    assert ct["image"].shape == (128, 128, 37) and ct["image"].dtype == np.float32
    assert ct["image"].min() == 0.0 and ct["image"].max() == 1.0
    assert ct["labels"].shape == (128, 128, 37, 2) and set(np.unique(ct["labels"])) == {0.0, 1.0}
    raw = data.load_head_neck_ct(normalise=False)["image"]
    assert raw.min() == -1024 and raw.max() == 2022


def test_prostate_loader(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    mr = data.load_prostate_mr()
    for key in ("moving_image", "fixed_image", "moving_label", "fixed_label"):
        assert mr[key].shape == (32, 128, 128) and mr[key].dtype == np.float32
    assert mr["fixed_label"].sum() > 1000


def test_lung_standin_is_deterministic_labelled_and_uses_real_masks(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    first = data.load_lung_pairs("test", size=(48, 48, 52), standin=True)
    again = data.load_lung_pairs("test", size=(48, 48, 52), standin=True)
    assert first.is_standin and first.name == "paired_ct_lung_standin" and "STAND-IN" in first.description
    assert first.cases == ["case_011", "case_012"]
    assert first.moving_images.shape == (2, 48, 48, 52) and first.fixed_labels.shape == (2, 48, 48, 52)
    np.testing.assert_array_equal(first.moving_images, again.moving_images)
    assert first.spacing == (7.0, 5.0, 7.0)
    # the images are CT-like: lungs darker than the body around them, air darkest
    lung = first.fixed_labels[0] > 0.5
    assert first.fixed_images[0][lung].mean() < 0.3
    assert not np.array_equal(first.moving_images[0], first.moving_images[1])
    with pytest.raises(ValueError, match="stand-in"):
        data.fetch("paired_ct_lung_standin")


# ---------------------------------------------------------------- user paths, integrity
@pytest.mark.parametrize("where", [".", "book/chapters"])
def test_relative_mirror_means_the_same_folder_from_root_and_chapters(isolated, monkeypatch, mirror_dir, where):
    relative = Path(__import__("os").path.relpath(mirror_dir, data.path_base()))
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


def test_missing_mirror_message_shows_absolute_folder_and_hint(isolated, monkeypatch, no_network):
    monkeypatch.setenv(data.MIRROR_ENV, "../no/such/mirror")
    monkeypatch.chdir(REPO / "book" / "chapters")
    entry = data.load_manifest()["datasets"]["hnct"]["files"][0]
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_file(entry, retries=0, backoff=0)
    assert not isinstance(error.value, data.DataIntegrityError), "nothing was found, nothing tampered"
    message = str(error.value)
    folder = REPO.parent / "no" / "such" / "mirror"
    assert f"mirror {folder / 'hnct/demo.h5'}: not there" in message
    assert "'../no/such/mirror'" in message and "that folder does not exist" in message
    assert f"resolved against {REPO}" in message


def test_tampered_mirror_alone_raises_integrity_error(isolated, monkeypatch, mirror_dir, no_network):
    fake = isolated / "mirror" / "hnct"
    fake.mkdir(parents=True)
    content = bytearray((mirror_dir / "hnct/demo.h5").read_bytes())
    content[100] ^= 0x01
    (fake / "demo.h5").write_bytes(bytes(content))
    monkeypatch.setenv(data.MIRROR_ENV, str(isolated / "mirror"))
    entry = data.load_manifest()["datasets"]["hnct"]["files"][0]
    with pytest.warns(UserWarning), pytest.raises(data.DataIntegrityError, match="expected sha256 36a67372"):
        data.fetch_file(entry, retries=0, backoff=0)
    with pytest.raises(data.DataIntegrityError, match="expected sha256"):
        data.verify_file(fake / "demo.h5", entry)
    assert data.verify_file(mirror_dir / "hnct/demo.h5", entry) == mirror_dir / "hnct/demo.h5"


def test_tampered_cache_and_bad_download_raise_integrity_error(isolated, http_server, mirror_dir):
    root, base = http_server
    source = mirror_dir / "hnct/demo.h5"
    (root / "demo.h5").write_bytes(b"wrong bytes" * 100)
    entry = entry_for(source, "hnct/demo.h5", urls=[f"{base}/demo.h5"])
    cached = isolated / "cache" / "hnct" / "demo.h5"
    cached.parent.mkdir(parents=True)
    tampered = bytearray(source.read_bytes())
    tampered[-1] ^= 0x01  # same size: only the hash can tell
    cached.write_bytes(bytes(tampered))
    with pytest.warns(UserWarning, match="Deleting the cached"):
        with pytest.raises(data.DataIntegrityError) as error:
            data.fetch_file(entry, progress=False, retries=0)
    message = str(error.value)
    assert "REJECTED and deleted" in message and "downloaded content has size 1100 bytes" in message
    assert not cached.exists() and not list(cached.parent.glob("*.part"))


def test_temporary_file_is_removed_on_error(tmp_path):
    final = tmp_path / "sub" / "file.bin"
    with pytest.raises(RuntimeError):
        with data._temporary_file(final) as part:
            part.write_bytes(b"partial")
            raise RuntimeError("download broke")
    assert not list(final.parent.iterdir())


def test_data_and_viz_do_not_import_tensorflow():
    import subprocess
    import sys

    code = "import tutorial_utils.data, tutorial_utils.viz, sys; assert 'tensorflow' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr


def test_loaders_declare_orientation(isolated, monkeypatch, mirror_dir):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    assert data.load_head_neck_ct()["orientation"] == "LPS"
    assert data.load_prostate_mr()["orientation"] == "SPL"
    assert data.load_lung_pairs("valid", size=(24, 24, 26), standin=True).orientation == "LPS"


def test_head_neck_orientation_agrees_with_landmarks(isolated, monkeypatch, mirror_dir):
    """The stated "LPS": the spinal cord lies posterior (larger d2) to the airway, the
    brainstem superior (larger d3) to the cord, and the couch behind the head (at large
    d2, where nothing lies in front of the face). Left-right: see the loader's comment."""
    from scipy import ndimage

    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    ct = data.load_head_neck_ct(normalise=False)
    assert ct["orientation"][1:] == "PS"
    body = ct["image"] > -300
    cord = np.argwhere(ct["labels"][..., 10, 1] > 0.5).mean(0)
    parts, count = ndimage.label(ndimage.binary_fill_holes(body[..., 10]))
    neck = parts == 1 + np.argmax(ndimage.sum(np.ones_like(parts), parts, range(1, count + 1)))
    airway = np.argwhere(neck & (ct["image"][..., 10] < -600)).mean(0)
    assert cord[1] > airway[1] + 5
    brainstem = np.argwhere(ct["labels"][..., 0] > 0.5).mean(0)
    assert brainstem[2] > np.argwhere(ct["labels"][..., 1] > 0.5).mean(0)[2] + 10
    head = body[..., 30]  # a head slice: the skull is mid-image, the couch well behind it
    assert head[:, 96:].sum() > 100 and head[:, :32].sum() == 0
