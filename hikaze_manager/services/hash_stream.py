"""Feed a file's bytes to several digests at once: this thread reads, each digest hashes on its own.

A scan hashes a new safetensors file twice over (SHA-256 of the file, AutoV3 of its data
section), and ``readinto`` copies every byte out of the page cache before either digest sees it.
Done in one thread that costs the sum of the three; here reading and each digest overlap, so on
two free cores a file is hashed in about the time of one ``hashlib.sha256`` over the same bytes
in memory. Small files keep the plain loop: threads cost more than they save there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

CHUNK_SIZE = 1024 * 1024
BUFFERS = 4  # chunks in flight: the reader runs at most this far ahead of the slowest digest
THREADED_FROM = 16 * CHUNK_SIZE

Sink = Callable[[memoryview], None]  # a digest's update(), fed every chunk in order
Progress = Callable[[int], None]


def feed(fh, size: int, sinks: Sequence[Sink], progress: Progress | None = None) -> int:
    """Read ``size`` bytes of ``fh`` (unbuffered), give every chunk to each sink in order, then
    probe one byte more; return the bytes read (``size + 1`` if the file grew, less if it shrank).

    ``progress`` runs on this thread once per chunk read and may raise to stop; the exception
    propagates once every sink thread has stopped.
    """
    if size < THREADED_FROM:
        return _feed_here(fh, size, sinks, progress)
    return _Fanout(sinks).run(fh, size, progress)


def _feed_here(fh, size: int, sinks: Sequence[Sink], progress: Progress | None) -> int:
    view = memoryview(bytearray(min(CHUNK_SIZE, max(size, 1))))
    read, remaining = 0, size
    while remaining > 0:
        n = fh.readinto(view if remaining >= len(view) else view[:remaining])
        if not n:
            break
        chunk = view if n == len(view) else view[:n]
        for sink in sinks:
            sink(chunk)
        read += n
        remaining -= n
        if progress is not None:
            progress(n)
    return read + len(fh.read(1))


class _Fanout:
    """One queue and thread per sink; a buffer goes back to the reader once every sink had it."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)
        self.buffers = [memoryview(bytearray(CHUNK_SIZE)) for _ in range(BUFFERS)]
        self.free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(BUFFERS):
            self.free.put(index)
        self.pending = [0] * BUFFERS
        self.lock = threading.Lock()
        self.queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in self.sinks]
        self.error: BaseException | None = None

    def run(self, fh, size: int, progress: Progress | None) -> int:
        threads = [threading.Thread(target=self._drain, args=(sink, q), daemon=True,
                                    name=f"{threading.current_thread().name}-digest")
                   for sink, q in zip(self.sinks, self.queues)]
        for thread in threads:
            thread.start()
        read, remaining = 0, size
        try:
            while remaining > 0 and self.error is None:
                index = self.free.get()
                buffer = self.buffers[index]
                n = fh.readinto(buffer if remaining >= CHUNK_SIZE else buffer[:remaining])
                if not n:
                    self.free.put(index)
                    break
                self.pending[index] = len(self.queues)  # no sink holds it: it came from free
                for q in self.queues:
                    q.put((index, n))
                read += n
                remaining -= n
                if progress is not None:
                    progress(n)
            if self.error is None:
                read += len(fh.read(1))
        finally:
            for q in self.queues:
                q.put(None)
            for thread in threads:
                thread.join()
        if self.error is not None:
            raise self.error
        return read

    def _drain(self, sink: Sink, chunks: queue.SimpleQueue) -> None:
        while (item := chunks.get()) is not None:
            index, n = item
            if self.error is None:
                try:
                    buffer = self.buffers[index]
                    sink(buffer if n == CHUNK_SIZE else buffer[:n])
                except BaseException as exc:  # reported to the reader, which stops reading
                    self.error = exc
            with self.lock:
                self.pending[index] -= 1
                if self.pending[index] == 0:
                    self.free.put(index)
