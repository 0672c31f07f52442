"""Serve the app with waitress on a daemon thread; the same function serves standalone and in ComfyUI."""

from __future__ import annotations

import errno
import logging
import threading
from dataclasses import dataclass

from waitress.server import create_server

logger = logging.getLogger(__name__)

PORT_ATTEMPTS = 20


@dataclass
class ServerHandle:
    """A running server: where it listens and how to stop it."""

    server: object
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL of the panel."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listening socket, stop the worker threads and wait for the serve loop."""
        self.server.close()
        self.server.task_dispatcher.shutdown(timeout=timeout)
        self.thread.join(timeout)


def _bind(app, host: str, port: int, threads: int):
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="hikaze-manager",
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
    )


def start_server(app, host: str = "127.0.0.1", port: int = 0, *, threads: int = 4,
                 port_attempts: int = PORT_ATTEMPTS) -> ServerHandle:
    """Bind ``host:port`` (the next free port if taken; 0 for any) and serve on a daemon thread.

    Binding happens here, before the thread starts, so the port is known and accepting when this
    returns, and a bind error reaches the caller.
    """
    # waitress warns on every queued request by default; that logging costs throughput.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    last_error: OSError | None = None
    candidates = [0] if port == 0 else range(port, port + max(1, port_attempts))
    for candidate in candidates:
        try:
            server = _bind(app, host, candidate, threads)
            break
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            last_error = exc
    else:
        raise OSError(
            errno.EADDRINUSE, f"no free port in {port}..{port + port_attempts - 1}: {last_error}"
        )
    thread = threading.Thread(target=server.run, name="hikaze-waitress", daemon=True)
    thread.start()
    return ServerHandle(server, thread, host, server.effective_port)
