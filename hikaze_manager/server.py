"""Serve the app with waitress on a daemon thread; the same function serves standalone and in ComfyUI."""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import Error as WaitressError

from .errors import storage_error

logger = logging.getLogger(__name__)

PORT_ATTEMPTS = 20
OUTBUF_OVERFLOW = 64 * 1024 * 1024
# waitress' defaults (100 connections, idle ones kept 120 s) let 100 idle or slow clients stop the
# server answering anyone. Idle keep-alive and half-sent requests are dropped after
# CHANNEL_TIMEOUT_S (a request being served is never cut), and the limit is far above 100.
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT_S = 15
CLEANUP_INTERVAL_S = 1


def connection_limit() -> int:
    """How many connections to hold: select() on Windows stops at 512 sockets, poll() does not."""
    if os.name == "nt":
        return 400
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return CONNECTION_LIMIT
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(100, min(CONNECTION_LIMIT, soft // 2))  # leave descriptors for files and SQLite


@dataclass
class ServerHandle:
    """A running server: where it listens and how to stop it."""

    server: object
    thread: threading.Thread
    host: str
    port: int
    _stop: threading.Event

    @property
    def url(self) -> str:
        """The base URL of the panel."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: wake the loop, which closes every socket and worker on its own thread."""
        self._stop.set()
        try:
            self.server.trigger.pull_trigger()
        except OSError as exc:  # the wake-up pipe is gone: the loop sees the flag at its next poll
            logger.warning("[Hikaze] server wake-up pipe unusable (%s); stopping at the next poll", exc)
        self.thread.join(timeout)


class _JsonErrorTask(ErrorTask):
    """Errors waitress answers itself (oversized body, malformed request) in the API's JSON shape."""

    def execute(self):
        error = self.request.error
        message = error.body if isinstance(error, _StorageRefused) else f"{error.reason}: {error.body}"
        body = json.dumps({"error": message.strip(": ")}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(
            [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _StorageRefused(WaitressError):
    code = 507
    reason = "Insufficient Storage"


class _DiscardBuffer:
    """Where the rest of a body goes once the disk refused it: counted by the parser, not kept."""

    def append(self, data: bytes) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def getfile(self):
        import io

        return io.BytesIO()

    def close(self) -> None:
        pass


class _StorageSafeParser(HTTPRequestParser):
    """A body waitress cannot spool to disk (full, or over RLIMIT_FSIZE) is read to its end and
    answered 507 as JSON, instead of the connection being dropped with no answer."""

    refused = None

    def received(self, data):
        try:
            consumed = super().received(data)
        except OSError as exc:
            refused = storage_error(exc)
            if refused is None or self.body_rcv is None:
                raise
            logger.error("[Hikaze] a request body could not be buffered: %s", exc)
            self.refused = refused
            self.body_rcv.buf = _DiscardBuffer()
            consumed = super().received(data)
        if self.completed and self.refused is not None and self.error is None:
            self.error = _StorageRefused(self.refused.message)
        return consumed


class _KeepAliveTask(WSGITask):
    """waitress closes the connection after every response without a Content-Length, which
    includes a 304 (no body, framed by its headers alone): each revalidation of a list by the
    panel then paid for a new connection. Kept open unless the client asked to close."""

    _bodiless_keep_alive = False

    def build_response_header(self):
        self._bodiless_keep_alive = (
            not self.has_body and self.version == "1.1"
            and self.request.headers.get("CONNECTION", "").lower() != "close")
        try:
            return super().build_response_header()
        finally:
            self._bodiless_keep_alive = False

    def set_close_on_finish(self) -> None:
        if not self._bodiless_keep_alive:
            super().set_close_on_finish()


class _JsonErrorChannel(HTTPChannel):
    task_class = _KeepAliveTask
    error_task_class = _JsonErrorTask
    parser_class = _StorageSafeParser


def ignore_file_size_signal() -> None:
    """Make a write over RLIMIT_FSIZE fail with EFBIG (answered as JSON) instead of SIGXFSZ
    killing the whole process (and ComfyUI with it). Only the main thread may set it."""
    sigxfsz = getattr(signal, "SIGXFSZ", None)
    if sigxfsz is None:
        return
    try:
        signal.signal(sigxfsz, signal.SIG_IGN)
    except ValueError:  # not the main thread: the host application decides
        logger.debug("SIGXFSZ left as it is (start_server called off the main thread)")


def _bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening socket ourselves, so a taken port costs nothing and leaks nothing."""
    family, socktype, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socktype, proto)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share a port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve_until_stopped(server, stop: threading.Event) -> None:
    # waitress has no programmatic stop (Pylons/waitress#343), so run its loop one poll at a
    # time and clean up on this thread when asked to stop.
    try:
        while not stop.is_set():
            wasyncore.loop(
                timeout=server.adj.asyncore_loop_timeout,
                map=server._map,
                use_poll=server.adj.asyncore_use_poll,
                count=1,
            )
    finally:
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)
        # The pipe trigger closes its pipe but not the duplicate fd of its file wrapper.
        wrapper = getattr(server.trigger, "socket", None)
        if wrapper is not None:
            wrapper.close()


M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter
LARGE_BUFFER = 256 * 1024


def return_large_buffers_to_os() -> bool:
    """Have glibc give every buffer over 256 KiB its own mapping, returned to the OS when freed.

    A rebuilt list body (18 MB at 50,000 models) is built and freed on a worker thread; by
    default glibc then raises its mapping threshold and serves the next such buffer from that
    thread's heap, which keeps the freed memory (the server grew to ~230 MB after a few
    rebuilds, ~85 MB with this). For the standalone server only: in ComfyUI's process the
    allocator is left as ComfyUI and PyTorch expect it. False where there is no glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER))


def start_server(app, host: str = "127.0.0.1", port: int = 0, *, threads: int = 4,
                 port_attempts: int = PORT_ATTEMPTS) -> ServerHandle:
    """Bind ``host:port`` (the next free port if taken; 0 for any) and serve on a daemon thread.

    Binding happens here, before the thread starts, so the port is known and accepting when this
    returns, and a bind error reaches the caller.
    """
    ignore_file_size_signal()
    # waitress warns on every queued request by default; that logging costs throughput.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    last_error: OSError | None = None
    candidates = [0] if port == 0 else range(port, port + max(1, port_attempts))
    for candidate in candidates:
        try:
            sock = _bind_socket(host, candidate)
            break
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            last_error = exc
    else:
        raise OSError(
            errno.EADDRINUSE, f"no free port in {port}..{port + port_attempts - 1}: {last_error}"
        )
    # waitress buffers a whole body before the app sees it; its own limit answers 413 at once.
    max_body = app.config.get("MAX_CONTENT_LENGTH") or 1024**3
    server = create_server(
        app,
        sockets=[sock],
        threads=threads,
        ident="hikaze-manager",
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
        max_request_body_size=max_body,
        # A list of a big library is 3-15 MB; above outbuf_overflow (1 MB by default) waitress
        # spools the response through a temp file on disk, which doubled the cost of a cached list.
        outbuf_overflow=OUTBUF_OVERFLOW,
        connection_limit=int(app.config.get("CONNECTION_LIMIT") or connection_limit()),
        channel_timeout=int(app.config.get("CHANNEL_TIMEOUT") or CHANNEL_TIMEOUT_S),
        cleanup_interval=CLEANUP_INTERVAL_S,
        asyncore_use_poll=os.name != "nt",
    )
    server.channel_class = _JsonErrorChannel
    stop = threading.Event()
    thread = threading.Thread(
        target=_serve_until_stopped, args=(server, stop), name="hikaze-waitress", daemon=True
    )
    thread.start()
    return ServerHandle(server, thread, host, int(server.effective_port), stop)
