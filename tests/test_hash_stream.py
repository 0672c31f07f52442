"""Reading a file once for several digests on their own threads (services/hash_stream.py)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading

import pytest

from hikaze_manager.services import hash_stream, hashing
from hikaze_manager.services.hash_stream import CHUNK_SIZE, THREADED_FROM, feed
from hikaze_manager.services.hashing import FileChangedError, hash_file


def _digest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith("-digest")]


def _safetensors(path, data_size: int) -> tuple[bytes, int]:
    """A real safetensors file (8-byte length, JSON header, data); returns bytes and data offset."""
    header = json.dumps({"__metadata__": {"ss_output_name": "t"},
                         "w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}})
    blob = struct.pack("<Q", len(header)) + header.encode() + os.urandom(data_size)
    path.write_bytes(blob)
    return blob, 8 + len(header)


@pytest.mark.parametrize("size", [THREADED_FROM - 1, THREADED_FROM, THREADED_FROM + 1,
                                  THREADED_FROM + 5 * CHUNK_SIZE + 17])
def test_every_sink_gets_every_byte_in_order(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "m.bin"
    path.write_bytes(data)
    first, second = hashlib.sha256(), hashlib.sha256()
    chunks: list[int] = []
    with open(path, "rb", buffering=0) as fh:
        read = feed(fh, size, [first.update, second.update], chunks.append)
    assert read == size
    assert first.hexdigest() == second.hexdigest() == hashlib.sha256(data).hexdigest()
    assert sum(chunks) == size and max(chunks) <= CHUNK_SIZE
    assert _digest_threads() == []


def test_a_large_safetensors_file_gets_both_hashes_from_one_read(tmp_path):
    path = tmp_path / "big.safetensors"
    blob, offset = _safetensors(path, THREADED_FROM + 3 * CHUNK_SIZE + 5)
    before = hashing.STATS.bytes
    sha, autov3, identity = hash_file(path, autov3=True)
    assert sha == hashlib.sha256(blob).hexdigest()
    assert autov3 == hashlib.sha256(blob[offset:]).hexdigest()[:12]
    assert identity.size == len(blob)
    assert hashing.STATS.bytes - before == len(blob)


def test_a_failing_digest_stops_the_read_and_is_raised(tmp_path):
    path = tmp_path / "big.bin"
    size = THREADED_FROM + 8 * CHUNK_SIZE
    path.write_bytes(os.urandom(size))
    chunks: list[int] = []

    def broken(_chunk):
        raise MemoryError("digest failed")

    with open(path, "rb", buffering=0) as fh, pytest.raises(MemoryError, match="digest failed"):
        feed(fh, size, [hashlib.sha256().update, broken], chunks.append)
    # the reader stops within the chunks in flight instead of reading the whole file
    assert sum(chunks) <= (hash_stream.BUFFERS + 1) * CHUNK_SIZE
    assert _digest_threads() == []


@pytest.mark.parametrize("change", ["truncate", "append"])
def test_a_large_file_changed_while_hashed_is_refused(tmp_path, change):
    path = tmp_path / "changing.bin"
    path.write_bytes(os.urandom(THREADED_FROM + 2 * CHUNK_SIZE))
    done = []

    def progress(_n):
        if not done:
            done.append(1)
            if change == "truncate":  # e.g. a download tool writing the file again in place
                os.truncate(path, CHUNK_SIZE)
            else:
                with open(path, "ab") as fh:
                    fh.write(b"more")

    with pytest.raises(FileChangedError):
        hash_file(path, progress)
    assert _digest_threads() == []


def test_digest_threads_keep_the_lower_priority_of_the_hash_worker(tmp_path):
    # hash workers are niced so request threads win a busy core; their digest threads must be too
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(THREADED_FROM))
    seen: dict[str, int] = {}

    def record(_chunk):
        seen.setdefault("digest", os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def worker():
        hashing._lower_priority()
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with open(path, "rb", buffering=0) as fh:
            feed(fh, THREADED_FROM, [record])

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["worker"] == os.getpriority(os.PRIO_PROCESS, 0) + hashing.WORKER_NICENESS \
        or seen["worker"] == 19
    assert seen["digest"] == seen["worker"]
