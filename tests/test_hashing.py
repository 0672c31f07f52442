"""Full-file SHA-256: correctness, the (path, size, mtime) cache, changed files, the worker pool."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from hikaze_manager import create_app
from hikaze_manager.state import get_state
from hikaze_manager.services import hashing
from hikaze_manager.services.hash_stream import THREADED_FROM
from hikaze_manager.services.hashing import CHUNK_SIZE, FileChangedError, hash_files, sha256_file

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17])
def test_sha256_file_matches_hashlib(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    chunks: list[int] = []
    sha, identity = sha256_file(path, chunks.append)
    assert sha == hashlib.sha256(data).hexdigest()
    assert identity.size == size
    assert sum(chunks) == size
    assert all(n <= CHUNK_SIZE for n in chunks)
    assert len(chunks) == -(-size // CHUNK_SIZE)


# below and above hash_stream.THREADED_FROM: the plain loop, and the reader with digest threads
@pytest.mark.parametrize("size", [4 * CHUNK_SIZE, THREADED_FROM + 4 * CHUNK_SIZE])
def test_progress_exception_stops_hashing(tmp_path, size):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(size))
    calls = []

    class Stop(Exception):
        pass

    def progress(n):
        calls.append(n)
        raise Stop

    with pytest.raises(Stop):
        hashing.hash_file(path, progress, autov3=True)
    assert len(calls) == 1
    assert not [t for t in threading.enumerate() if t.name.endswith("-digest")]


def test_file_growing_while_hashed_is_refused(tmp_path):
    path = tmp_path / "grows.bin"
    path.write_bytes(os.urandom(2 * CHUNK_SIZE))

    def progress(_n):
        with open(path, "ab") as fh:  # another program appending while we read
            fh.write(b"more")

    with pytest.raises(FileChangedError):
        sha256_file(path, progress)


def test_file_replaced_while_hashed_is_refused(tmp_path):
    path = tmp_path / "replaced.bin"
    data = os.urandom(2 * CHUNK_SIZE)
    path.write_bytes(data)
    other = tmp_path / "other.bin"
    other.write_bytes(data)  # same size and content, different inode

    def progress(_n):
        if other.exists():
            os.replace(other, path)

    with pytest.raises(FileChangedError):
        sha256_file(path, progress)


def _cache_rows(conn):
    return {row[0]: tuple(row[1:]) for row in conn.execute(
        "SELECT path, size_bytes, mtime_ns, sha256, hashed_at FROM file_hashes")}


def test_hash_files_caches_unchanged_files(app, db_conn, tmp_path):
    files = {}
    for i in range(3):
        data = os.urandom(CHUNK_SIZE + i)
        path = tmp_path / f"f{i}.safetensors"
        path.write_bytes(data)
        files[str(path)] = hashlib.sha256(data).hexdigest()
    before = hashing.STATS.files
    first = hash_files(db_conn, list(files))
    assert {p: r.sha256 for p, r in first.items()} == files
    assert not any(r.cached for r in first.values())
    assert hashing.STATS.files - before == 3
    rows = _cache_rows(db_conn)
    assert {p: r[2] for p, r in rows.items()} == files

    second = hash_files(db_conn, list(files))
    assert {p: r.sha256 for p, r in second.items()} == files
    assert all(r.cached for r in second.values())
    assert hashing.STATS.files - before == 3  # nothing re-hashed
    assert _cache_rows(db_conn) == rows

    # A changed file (new size and mtime) is hashed again; the others still come from the cache.
    changed = next(iter(files))
    data = os.urandom(100)
    with open(changed, "wb") as fh:
        fh.write(data)
    third = hash_files(db_conn, list(files))
    assert third[changed].sha256 == hashlib.sha256(data).hexdigest()
    assert not third[changed].cached
    assert hashing.STATS.files - before == 4


def test_same_size_rewrite_with_new_mtime_is_rehashed(app, db_conn, tmp_path):
    path = tmp_path / "same.bin"
    path.write_bytes(b"a" * 1000)
    assert hash_files(db_conn, [str(path)])[str(path)].sha256 == hashlib.sha256(b"a" * 1000).hexdigest()
    path.write_bytes(b"b" * 1000)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    result = hash_files(db_conn, [str(path)])[str(path)]
    assert result.sha256 == hashlib.sha256(b"b" * 1000).hexdigest()


def test_hash_cache_survives_restart(app_config, tmp_path):
    path = tmp_path / "persist.bin"
    path.write_bytes(os.urandom(5000))
    first_app = create_app(app_config)
    with get_state(first_app).store.connection() as conn:
        hash_files(conn, [str(path)])
    before = hashing.STATS.files
    second_app = create_app(app_config)  # a new process would see the same database
    with get_state(second_app).store.connection() as conn:
        result = hash_files(conn, [str(path)])[str(path)]
    assert result.cached
    assert hashing.STATS.files == before


def test_missing_and_changing_files_are_reported_not_stored(app, db_conn, tmp_path):
    missing = str(tmp_path / "gone.safetensors")
    growing = tmp_path / "growing.bin"
    growing.write_bytes(os.urandom(2 * CHUNK_SIZE))

    def progress(_n):
        with open(growing, "ab") as fh:
            fh.write(b"x")

    results = hash_files(db_conn, [missing, str(growing)], progress=progress)
    assert results[missing].error == "SHA256 calculation failed"
    assert results[str(growing)].error == "File changed while hashing"
    assert results[str(growing)].sha256 is None
    assert _cache_rows(db_conn) == {}


def test_workers_are_niced_pool_threads(app, db_conn, tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"p{i}.bin"
        path.write_bytes(os.urandom(2 * CHUNK_SIZE))
        paths.append(str(path))
    seen = {}
    lock = threading.Lock()

    def progress(_n):
        thread = threading.current_thread()
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with lock:
            seen[thread.name] = nice

    results = hash_files(db_conn, paths, progress=progress, workers=2)
    assert all(r.sha256 for r in results.values())
    assert seen and all(name.startswith("hikaze-hash") for name in seen)
    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert all(nice == min(19, main_nice + hashing.WORKER_NICENESS) for nice in seen.values())
    assert 1 <= len(seen) <= 2


def test_default_workers_use_the_cores():
    assert hashing.default_workers() == max(1, min(os.cpu_count() or 1, hashing.MAX_WORKERS))
