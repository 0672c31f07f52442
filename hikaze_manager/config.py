"""Default configuration; every key can be overridden by HIKAZE_<KEY> or by create_app(config)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PORT = 8189
# Settings whose HIKAZE_<KEY> variable is taken as written: Flask's from_prefixed_env decodes
# JSON, which made HIKAZE_MACHINE_NAME=1234 a number (refused) and '"box"' the machine box.
TEXT_SETTINGS = ("DATA_DIR", "DATABASE", "DATABASE_URL", "MACHINE_NAME")


def text_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The text settings set in the environment, as written (the server and the nodes read these)."""
    return {key: environ[f"HIKAZE_{key}"] for key in TEXT_SETTINGS if f"HIKAZE_{key}" in environ}


class DefaultConfig:
    """Defaults for a standalone run on this machine."""

    HOST = "127.0.0.1"
    PORT = DEFAULT_PORT
    DATA_DIR = str(ROOT / "data")
    # Extra Host names to accept besides loopback (e.g. a LAN name when exposed on purpose).
    ALLOWED_HOSTS: list[str] = []
    # Foreign origins allowed to call the API (the ComfyUI page); never "*".
    ALLOWED_ORIGINS: list[str] = []
    # Required as X-Hikaze-Token from non-loopback clients; set when bound beyond loopback.
    AUTH_TOKEN: str | None = None
    # {type: {"roots": [dir, ...], "extensions": [".safetensors", ...]}} injected by comfy_node.
    MODEL_TYPES: dict | None = None
    COMFYUI_DIR: str | None = None
    MODELS_DIR: str | None = None
    # Upload bodies above this get 413 before they are read in full.
    MAX_CONTENT_LENGTH = 64 * 1024 * 1024
    JSON_SORT_KEYS = False
    # postgresql://user:password@host:port/db puts the library in PostgreSQL, shared by several
    # machines; None keeps it in SQLite in DATA_DIR. The password is never logged or shown.
    DATABASE_URL: str | None = None
    # This machine's name in a shared library (its own model paths); default: the host name.
    MACHINE_NAME: str | None = None
    # Days a model file moved to the trash (services/trash.py) stays restorable before it is purged.
    TRASH_RETENTION_DAYS = 30
