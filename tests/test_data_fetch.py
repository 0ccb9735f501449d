"""tutorial_utils.data.fetching: mirror, cache, downloads (from a loopback server),
and the errors that say what was tried. Hostile file systems: test_data_filesystem.py."""
import functools
import shutil
import sys

import pytest

from tutorial_utils import data
from data_fixtures import REPO, entry_for, http_server, isolated, no_network  # noqa: F401  (fixtures)


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
    # then each URL is tried as usual (no network here), without the 1 + 2 s backoff between
    # tries: 9 s of waiting that this test does not check
    fetching = sys.modules[data.fetch_file.__module__]
    monkeypatch.setattr(fetching, "fetch_file", functools.partial(fetching.fetch_file, backoff=0))
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
    fetching = __import__("tutorial_utils.data.fetching", fromlist=["fetch_file"])
    monkeypatch.setattr(fetching, "fetch_file", functools.partial(fetching.fetch_file, retries=0, backoff=0))
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
    assert sorted(p.name for p in cached.parent.iterdir()) == ["demo.h5"], "nothing set aside is left"


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError) as error:
        data.fetch("brain_mri")
    assert "brain_mri" in str(error.value) and "hnct" in str(error.value) and "paired_ct_lung" in str(error.value)


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
    assert not list(cached.parent.iterdir()), "no cached, set-aside or partial file is left"
