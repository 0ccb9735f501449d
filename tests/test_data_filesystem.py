"""The data layer on hostile file systems (issue #22, fault 2): every state that users
or processes sharing a cache or mirror can leave behind ends in a verified file or in
DataUnavailableError/DataIntegrityError saying what was tried and what to do; never in
a raw OSError. Root ignores chmod, so permission failures are injected by patching
the os calls (tests/data_fixtures.py: make_read_only)."""
import errno
import os
import shutil
import subprocess
import sys
import threading

import pytest

from tutorial_utils import data
from data_fixtures import REPO, entry_for, http_server, isolated, make_read_only, no_network  # noqa: F401

fetching = sys.modules[data.fetch_file.__module__]  # the module that downloads


@pytest.fixture
def served(isolated, http_server, mirror_dir):
    """The head-and-neck file served on the loopback server: (entry, source file, cached path)."""
    root, base = http_server
    source = mirror_dir / "hnct/demo.h5"
    shutil.copy(source, root / "demo.h5")
    entry = entry_for(source, "hnct/demo.h5", urls=[f"{base}/demo.h5"])
    return entry, source, isolated / "cache" / "hnct" / "demo.h5"


def assert_cache_advice(message, folder):
    assert str(folder) in message and data.CACHE_ENV in message and "cannot be used" in message


# ------------------------------------------------------------------ the two reported cases
@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_cache_no_mirror_gives_documented_error(served, monkeypatch, code):
    """Reported: a raw PermissionError from mkstemp on the .part file."""
    entry, _, cached = served
    cached.parent.mkdir(parents=True)
    make_read_only(monkeypatch, cached.parent.parent, error=code)
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_file(entry, progress=False, retries=0, backoff=0)
    message = str(error.value)
    assert_cache_advice(message, cached.parent.parent)
    assert "hnct/demo.h5" in message and os.strerror(code) in message and "no partial file" in message
    assert not isinstance(error.value, data.DataIntegrityError)
    assert not list(cached.parent.iterdir())


def test_corrupted_copy_in_read_only_cache_gives_integrity_error(served, monkeypatch):
    """Reported: a raw PermissionError from unlink of the rejected cached copy."""
    entry, source, cached = served
    cached.parent.mkdir(parents=True)
    cached.write_bytes(source.read_bytes()[:-1] + b"x")
    make_read_only(monkeypatch, cached.parent.parent)
    with pytest.warns(UserWarning, match="does not match"), pytest.raises(data.DataIntegrityError) as error:
        data.fetch_file(entry, progress=False, retries=0, backoff=0)
    message = str(error.value)
    assert f"cache {cached}" in message and "REJECTED and could not be deleted (PermissionError" in message
    assert_cache_advice(message, cached.parent.parent)
    assert cached.read_bytes() == source.read_bytes()[:-1] + b"x", "left as it was"


# ------------------------------------------------------------------ the cache folder
def test_good_copy_in_read_only_cache_is_used(served, monkeypatch, no_network):
    entry, source, cached = served
    cached.parent.mkdir(parents=True)
    shutil.copy(source, cached)
    make_read_only(monkeypatch, cached.parent.parent)
    assert data.fetch_file(entry, progress=False, retries=0) == cached


def test_cache_parent_not_creatable(served, monkeypatch):
    entry, _, _ = served
    locked = served[2].parents[2] / "locked"
    locked.mkdir()
    monkeypatch.setenv(data.CACHE_ENV, str(locked / "deep" / "cache"))
    make_read_only(monkeypatch, locked)
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_file(entry, progress=False, retries=0)
    assert_cache_advice(str(error.value), locked / "deep" / "cache")
    assert "PermissionError" in str(error.value) and not list(locked.iterdir())


def test_cache_path_is_a_file(served, monkeypatch):
    entry, _, cached = served
    blocker = cached.parents[2] / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(data.CACHE_ENV, str(blocker))
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_file(entry, progress=False, retries=0)
    assert_cache_advice(str(error.value), blocker)
    assert "NotADirectoryError" in str(error.value) and blocker.read_text() == "not a folder"


def test_folder_where_the_cached_file_should_be(served):
    entry, _, cached = served
    (cached / "inside").mkdir(parents=True)
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_file(entry, progress=False, retries=0)
    assert "is a folder where the file should be" in str(error.value)
    assert (cached / "inside").is_dir(), "a user's folder is never deleted"
    assert data.verify_cache({"datasets": {"x": {"files": [entry]}}})["hnct/demo.h5"].startswith("UNUSABLE")


def test_dangling_symlink_where_the_cached_file_should_be(served):
    entry, source, cached = served
    cached.parent.mkdir(parents=True)
    cached.symlink_to(cached.parent / "gone.h5")
    assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert not cached.is_symlink() and cached.read_bytes() == source.read_bytes()


def test_unreadable_cached_copy_is_replaced(served, monkeypatch):
    """Another user's file the process may not read (e.g. mode 0600 in a shared cache)."""
    entry, source, cached = served
    cached.parent.mkdir(parents=True)
    shutil.copy(source, cached)
    real_open, banned = open, cached.stat().st_ino

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.exists(file) and os.stat(file).st_ino == banned:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert cached.stat().st_ino != banned and data.verify_file(cached, entry) == cached


def test_downloaded_file_is_readable_by_others_sharing_the_cache(served):
    entry, _, cached = served
    previous = os.umask(0o022)
    try:
        data.fetch_file(entry, progress=False, retries=0)
    finally:
        os.umask(previous)
    assert cached.stat().st_mode & 0o777 == 0o644, "mkstemp's 0600 would lock out the rest of the class"


@pytest.mark.parametrize("where", ["cache", "mirror", "download"])
def test_zero_length_copy_is_rejected(served, monkeypatch, http_server, where):
    entry, source, cached = served
    if where == "cache":
        cached.parent.mkdir(parents=True)
        cached.write_bytes(b"")
    if where == "mirror":
        (cached.parents[2] / "mirror" / "hnct").mkdir(parents=True)
        (cached.parents[2] / "mirror" / "hnct" / "demo.h5").write_bytes(b"")
        monkeypatch.setenv(data.MIRROR_ENV, str(cached.parents[2] / "mirror"))
    if where == "download":
        (http_server[0] / "demo.h5").write_bytes(b"")
        with pytest.raises(data.DataIntegrityError, match="size 0 bytes"):
            data.fetch_file(entry, progress=False, retries=0)
        return
    with pytest.warns(UserWarning, match="does not match"):
        assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert cached.read_bytes() == source.read_bytes()


# ------------------------------------------------------------------ partial files and concurrency
def test_stale_part_files_are_neither_used_nor_blocking(served, no_network, monkeypatch, http_server):
    entry, source, cached = served
    cached.parent.mkdir(parents=True)
    stale = [cached.with_name("demo.h5.part"), cached.with_name("demo.h5.0123456789ab.part"),
             cached.with_name("demo.h5.0123456789ab.rejected")]
    for path in stale:
        path.write_bytes(source.read_bytes())  # even a complete stale copy is not trusted
    monkeypatch.undo()  # the network back on, for the loopback server
    monkeypatch.setenv(data.CACHE_ENV, str(cached.parents[1]))
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    (http_server[0] / "demo.h5").write_bytes(b"gone")
    with pytest.raises(data.DataIntegrityError):
        data.fetch_file(entry, progress=False, retries=0)
    shutil.copy(source, http_server[0] / "demo.h5")
    assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert all(path.read_bytes() == source.read_bytes() for path in stale), "another process's files are left alone"


def test_two_threads_fetching_at_once_both_get_the_verified_file(served, monkeypatch):
    entry, source, cached = served
    both_downloaded = threading.Barrier(2, timeout=30)
    real = fetching._download

    def download_then_wait(*args, **kwargs):
        real(*args, **kwargs)
        both_downloaded.wait()  # neither renames before both have downloaded

    monkeypatch.setattr(fetching, "_download", download_then_wait)
    results, errors = [], []

    def worker():
        try:
            results.append(data.fetch_file(entry, progress=False, retries=0))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [cached, cached]
    assert cached.read_bytes() == source.read_bytes() and os.listdir(cached.parent) == ["demo.h5"]


def test_four_processes_fetching_at_once(served, tmp_path):
    entry, source, cached = served
    code = ("import json, sys; from tutorial_utils import data; "
            "print(data.fetch_file(json.loads(sys.argv[1]), progress=False, retries=0))")
    env = {**os.environ, "PYTHONPATH": str(REPO), data.CACHE_ENV: str(cached.parents[1])}
    env.pop(data.MIRROR_ENV, None)
    import json
    processes = [subprocess.Popen([sys.executable, "-c", code, json.dumps(entry)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    assert {out.strip() for out, _ in outputs} == {str(cached)}
    assert cached.read_bytes() == source.read_bytes() and os.listdir(cached.parent) == ["demo.h5"]


def test_loser_of_a_rename_race_uses_the_winners_verified_file(served, monkeypatch):
    """The final rename fails (as on Windows while another process holds the file) after
    another process has put a verified copy there: that copy is used."""
    entry, source, cached = served
    real_replace = os.replace

    def other_process_wins(src, dst):
        if str(dst) == str(cached):
            shutil.copy(source, cached)
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", other_process_wins)
    assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert os.listdir(cached.parent) == ["demo.h5"]


def test_corrupted_copy_replaced_meanwhile_by_another_process_is_kept(served, monkeypatch, no_network):
    """Between this process rejecting the cached copy and deleting it, another process
    renamed a verified copy onto it: that copy must not be deleted."""
    entry, source, cached = served
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    real_rename = os.rename

    def other_process_first(src, dst):
        if str(src) == str(cached):
            shutil.copy(source, cached.with_name("other.part"))
            os.replace(cached.with_name("other.part"), cached)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", other_process_first)
    with pytest.warns(UserWarning):
        assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert cached.read_bytes() == source.read_bytes() and os.listdir(cached.parent) == ["demo.h5"]


def test_disk_full_during_download(served, monkeypatch):
    entry, source, cached = served
    calls = []

    def fill_the_disk(url, target, timeout, progress):
        calls.append(url)
        target.write_bytes(source.read_bytes()[:1000])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(fetching, "_download", fill_the_disk)
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_file(entry, progress=False, retries=2, backoff=0)
    assert "No space left on device" in str(error.value)
    assert_cache_advice(str(error.value), cached.parents[1])
    assert len(calls) == 1, "a full disk is not retried"
    assert not list(cached.parent.iterdir()), "no partial file is left"


# ------------------------------------------------------------------ mirrors
def test_unreadable_mirror_folder_is_skipped(served, monkeypatch, tmp_path):
    entry, source, cached = served
    mirror = tmp_path / "mirror"
    (mirror / "hnct").mkdir(parents=True)
    shutil.copy(source, mirror / "hnct" / "demo.h5")
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    make_read_only(monkeypatch, mirror, also_reading=True)
    with pytest.warns(UserWarning, match="Skipping mirror file"):
        assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert cached.read_bytes() == source.read_bytes()


def test_unreadable_mirror_file_and_folder_in_its_place_are_skipped(served, monkeypatch, tmp_path, no_network):
    entry, source, cached = served
    first, second, good = tmp_path / "first", tmp_path / "second", tmp_path / "good"
    (first / "hnct" / "demo.h5").mkdir(parents=True)  # a folder where the file should be
    for mirror in (second, good):
        (mirror / "hnct").mkdir(parents=True)
        shutil.copy(source, mirror / "hnct" / "demo.h5")
    monkeypatch.setenv(data.MIRROR_ENV, os.pathsep.join(map(str, (first, second, good))))
    real_open = open
    monkeypatch.setattr("builtins.open", lambda file, *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied", str(file))) if str(file).startswith(str(second))
        else real_open(file, *a, **k))
    with pytest.warns(UserWarning, match="Skipping mirror file"):
        assert data.fetch_file(entry, progress=False, retries=0) == good / "hnct" / "demo.h5"
    with pytest.raises(data.DataUnavailableError) as error, pytest.warns(UserWarning):
        monkeypatch.setenv(data.MIRROR_ENV, os.pathsep.join(map(str, (first, second))))
        data.fetch_file(entry, progress=False, retries=0)
    assert "is a folder where the file should be" in str(error.value) and "cannot be read" in str(error.value)


def test_corrupted_mirror_falls_back_to_download(served, monkeypatch, tmp_path):
    entry, source, cached = served
    (tmp_path / "mirror" / "hnct").mkdir(parents=True)
    (tmp_path / "mirror" / "hnct" / "demo.h5").write_bytes(b"corrupt")
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path / "mirror"))
    with pytest.warns(UserWarning, match="does not match"):
        assert data.fetch_file(entry, progress=False, retries=0) == cached
    assert (tmp_path / "mirror" / "hnct" / "demo.h5").read_bytes() == b"corrupt", "a mirror is never modified"
