"""``python -m hikaze_manager``: run the server on its own (trying it out, the panel alone, CI)."""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading

from .config import DEFAULT_PORT, DefaultConfig
from .security import LOOPBACK_NAMES, host_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; options not given fall back to ``HIKAZE_*`` variables, then defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m hikaze_manager", description="Run the Hikaze Manager server."
    )
    parser.add_argument("--data-dir", default=None,
                        help=f"library folder (default: {DefaultConfig.DATA_DIR}, or $HIKAZE_DATA_DIR)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default 127.0.0.1; anything else requires a token)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default {DEFAULT_PORT}; the next free one if taken; 0 for any)")
    parser.add_argument("--comfyui-dir", default=None,
                        help="a ComfyUI folder: its models/ folders and extra_model_paths.yaml")
    parser.add_argument("--models-dir", default=None,
                        help="a folder with one sub-folder per model type")
    parser.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN",
                        help="a foreign origin allowed to call the API (e.g. http://127.0.0.1:8188)")
    parser.add_argument("--allow-host", action="append", default=None, metavar="NAME",
                        help="a Host name clients may use besides loopback (e.g. studio.lan)")
    parser.add_argument("--trash-days", type=float, default=None,
                        help="days a trashed model file stays restorable (default 30, or "
                             "$HIKAZE_TRASH_RETENTION_DAYS)")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="postgresql://user:password@host:port/db: a library shared by several "
                             "machines (default: SQLite in the data folder, or $HIKAZE_DATABASE_URL)")
    parser.add_argument("--machine-name", default=None, metavar="NAME",
                        help="this machine's name in a shared library (default: the host name, or "
                             "$HIKAZE_MACHINE_NAME)")
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> dict:
    """App config from the options given on the command line (they override the environment)."""
    options = {
        "DATA_DIR": args.data_dir,
        "HOST": args.host,
        "PORT": args.port,
        "COMFYUI_DIR": args.comfyui_dir,
        "MODELS_DIR": args.models_dir,
        "ALLOWED_ORIGINS": args.allow_origin,
        "ALLOWED_HOSTS": args.allow_host,
        "TRASH_RETENTION_DAYS": args.trash_days,
        "DATABASE_URL": args.database_url,
        "MACHINE_NAME": args.machine_name,
    }
    return {key: value for key, value in options.items() if value is not None}


def require_token_beyond_loopback(app) -> str | None:
    """The token clients on other machines must send: a new one when bound beyond loopback."""
    if host_name(str(app.config["HOST"])) not in LOOPBACK_NAMES and not app.config.get("AUTH_TOKEN"):
        app.config["AUTH_TOKEN"] = secrets.token_urlsafe(24)
    return app.config.get("AUTH_TOKEN")


def main(argv: list[str] | None = None) -> int:
    """Start the server, print its URL, serve until Ctrl-C or SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from . import create_app
    from .db import errors as db_errors
    from .db.stores import StartRefused
    from .server import return_large_buffers_to_os, start_server
    from .state import get_state

    return_large_buffers_to_os()
    try:
        app = create_app(build_config(args))
    except (*db_errors.Error, StartRefused) as exc:  # never the database password
        print(f"[Hikaze] could not open the library: {exc}", file=sys.stderr)
        return 1
    host, port = str(app.config["HOST"]), int(app.config["PORT"])
    token = require_token_beyond_loopback(app)
    # Ctrl-C and SIGTERM only set a flag, from the moment the URL can be printed: no window
    # in which a KeyboardInterrupt could escape before the clean stop below.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        handle = start_server(app, host, port, threads=args.threads)
    except OSError as exc:
        print(f"[Hikaze] could not start the server: {exc}", file=sys.stderr)
        return 1
    print(f"[Hikaze] Hikaze Manager is running at {handle.url}", flush=True)
    print(f"[Hikaze] data folder: {app.config['DATA_DIR']}", flush=True)
    print(f"[Hikaze] library: {get_state(app).store.describe()}", flush=True)
    if token:
        print(f"[Hikaze] clients not on this machine must send {token!r} as X-Hikaze-Token "
              "(or ?token=); they must use a Host name given with --allow-host", flush=True)
    while not stop.wait(0.5):
        pass
    print("[Hikaze] stopping", flush=True)
    handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
