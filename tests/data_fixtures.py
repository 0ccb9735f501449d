"""Fixtures and helpers the data-layer tests share (tests/test_data_*.py import them):
an isolated cache, no network, a loopback HTTP server, manifest entries for test files,
and a simulated read-only folder (root ignores chmod, so the os calls are patched)."""
import errno
import functools
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

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
    # polled every 50 ms (default 0.5 s): shutdown() waits for the next poll, half a second
    # per test that uses the server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def entry_for(path: Path, relative: str, urls=(), algorithm="sha256", size=True):
    """A manifest entry for the file at ``path``, its hash computed here with hashlib."""
    content = path.read_bytes()
    if algorithm == "sha256":
        digest = hashlib.sha256(content).hexdigest()
    else:
        digest = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    entry = {"path": relative, "hash": f"{algorithm}:{digest}", "urls": list(urls)}
    if size:
        entry["size"] = len(content)
    return entry


def _inside(path, folder: Path) -> bool:
    try:
        return Path(os.path.abspath(os.fspath(path))).is_relative_to(folder)
    except TypeError:  # a file descriptor
        return False


def make_read_only(monkeypatch, folder: Path, error=errno.EACCES, also_reading=False):
    """Make the os calls that create, delete or rename anything inside ``folder``
    (and, if ``also_reading``, stat or open anything there) fail as they do in a
    read-only or foreign folder; root ignores chmod, so the calls are patched.
    ``tempfile.mkstemp``, ``Path.mkdir``/``unlink``/``rename`` all go through these."""
    folder = Path(os.path.abspath(folder))

    def refuse(path):
        raise OSError(error, os.strerror(error), os.fspath(path))

    def guard(original, *checked):
        def call(*args, **kwargs):
            for index in checked:
                if index < len(args) and _inside(args[index], folder):
                    refuse(args[index])
            return original(*args, **kwargs)
        return call

    def guarded_open(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        if (writing or also_reading) and _inside(path, folder):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    real_open = os.open
    monkeypatch.setattr(os, "open", guarded_open)
    for name, checked in (("mkdir", (0,)), ("unlink", (0,)), ("remove", (0,)), ("rmdir", (0,)),
                          ("rename", (0, 1)), ("replace", (0, 1))):
        monkeypatch.setattr(os, name, guard(getattr(os, name), *checked))
    if also_reading:
        monkeypatch.setattr(os, "stat", guard(os.stat, 0))
        real_builtin_open = open

        def guarded_builtin_open(file, *args, **kwargs):
            if _inside(file, folder):
                refuse(file)
            return real_builtin_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", guarded_builtin_open)
