"""Hikaze Manager: a model-library manager for ComfyUI (Flask app, served by waitress)."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from .config import ROOT, DefaultConfig, text_settings
from .json_provider import SafeJSONProvider
from .state import AppState, DataPaths

logger = logging.getLogger(__name__)

__all__ = ["create_app"]

# Model detail bodies kept (~1 KB each, more with a big safetensors header): those just viewed.
DETAIL_ENTRIES = 256
DETAIL_BYTES = 8 * 1024 * 1024


def create_app(config: Mapping | None = None) -> Flask:
    """Create and configure the app; ``config`` overrides defaults and the environment."""
    app = Flask(__name__, static_folder=str(ROOT / "static"), static_url_path="/static")
    app.json = SafeJSONProvider(app)
    app.config.from_object(DefaultConfig)
    if not (config or {}).get("TESTING"):
        app.config.from_prefixed_env("HIKAZE")
        app.config.update(text_settings())
    if config:
        app.config.update(config)

    from . import db, errors, handlers, security

    paths = DataPaths.under(app.config["DATA_DIR"], app.config.get("DATABASE"))
    app.config["DATABASE"] = str(paths.database)
    state = _build_state(app, paths)
    app.extensions["hikaze"] = state

    db.init_app(app)
    errors.register_error_handlers(app)
    security.init_app(app)
    handlers.register_blueprints(app)
    return app


def _build_state(app: Flask, paths: DataPaths) -> AppState:
    if app.config.get("DATABASE_URL"):
        return _build_shared_state(app, paths)
    from .db import connection
    from .db import upgrades
    from .db.stores import SqliteStore
    from .services import batch, image_journal
    from .services.files import sweep_temp_files
    from .services.images import ImageStore

    images = ImageStore(paths.images_dir, paths.pending_dir)
    try:
        for folder in (paths.data_dir, paths.images_dir, paths.pending_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Before anything reads a set, and before this run writes a temp file: crash leftovers go.
        for folder in (paths.data_dir, paths.pending_dir):
            sweep_temp_files(folder)
        _probe_writable(paths.data_dir)  # SQLite opens a read-only file quietly; find out now
        for folder in (paths.images_dir, paths.pending_dir):
            _check_writable(folder)
        owners = None  # models with picture files, from recover's listing
        try:  # one listing of images/: temp files, interrupted renumberings, stray tiers
            owners = images.recover()
        except OSError as exc:
            logger.error("[Hikaze] image recovery failed: %s", exc)
        with connection(paths.database) as conn:
            result = upgrades.apply(conn, paths.backups_dir)
            if result.read_only_reason is None:
                try:
                    image_journal.recover(conn, images)
                except (OSError, sqlite3.Error) as exc:
                    logger.error("[Hikaze] removing sets of interrupted writes failed: %s", exc)
                try:  # a kill between a removal's commit and its picture deletes
                    batch.remove_orphan_sets(conn, images, owners)
                except (OSError, sqlite3.Error) as exc:
                    logger.error("[Hikaze] removing sets of removed models failed: %s", exc)
        read_only_reason = result.read_only_reason
    except (OSError, sqlite3.OperationalError) as exc:
        # A folder we cannot write (read-only disk, permissions) still opens: read-only, with why.
        read_only_reason = (
            f"The data folder {paths.data_dir} cannot be written ({exc}); the library is "
            "read-only until it can be."
        )
        logger.error("[Hikaze] %s", read_only_reason)
        paths = _read_only_paths(paths)
    store = SqliteStore(paths.database, immutable=paths.immutable)
    return _state(app, paths, store, images, read_only_reason)


def _state(app: Flask, paths: DataPaths, store, images, read_only_reason: str | None) -> AppState:
    from .services.jobs import JobManager
    from .services.list_cache import ListCache
    from .services.model_types import ModelTypeRegistry

    registry = ModelTypeRegistry(
        app.config.get("MODEL_TYPES"),
        app.config.get("COMFYUI_DIR"),
        app.config.get("MODELS_DIR"),
        paths.types_cache,
    )
    watcher = store.watcher()  # one probe for both caches (closing the lists closes it)
    return AppState(
        paths=paths,
        images=images,
        jobs=JobManager(),
        model_types=registry,
        lists=ListCache(watcher, images),
        details=ListCache(watcher, images, max_entries=DETAIL_ENTRIES,
                          max_bytes=DETAIL_BYTES),
        store=store,
        read_only_reason=read_only_reason,
    )


def _build_shared_state(app: Flask, paths: DataPaths) -> AppState:
    """The library in PostgreSQL: this machine keeps only pending pictures and caches locally."""
    from .db.stores import PostgresStore, configured_machine_name

    machine = configured_machine_name(app.config.get("MACHINE_NAME"))
    store = PostgresStore(app.config["DATABASE_URL"], machine)
    store.claim()  # before anything is touched: a second live server of this machine stops here
    try:
        return _open_shared_library(app, paths, store)
    except BaseException:
        store.close()
        raise


def _open_shared_library(app: Flask, paths: DataPaths, store) -> AppState:
    from .db import errors as db_errors
    from .services import batch, image_journal
    from .services.files import sweep_temp_files
    from .services.image_rows import DatabaseImageStore

    for folder in (paths.data_dir, paths.pending_dir):
        folder.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(paths.pending_dir)
    read_only_reason = store.prepare()
    # Pictures live in the database too: a picture added on one machine is served on every other.
    images = DatabaseImageStore(store.connection, paths.pending_dir, read_connect=store.reader)
    if read_only_reason is None:
        with store.connection() as conn:
            try:
                image_journal.recover(conn, images)
                batch.remove_orphan_sets(conn, images, images.recover())
            except (OSError, *db_errors.Error) as exc:
                logger.error("[Hikaze] removing sets of interrupted writes failed: %s", exc)
    else:
        logger.error("[Hikaze] %s", read_only_reason)
    logger.info("[Hikaze] library: %s", store.describe())
    return _state(app, paths, store, images, read_only_reason)


def _probe_writable(folder: Path) -> None:
    """Raise OSError unless a file can be created (and removed) in ``folder``."""
    import tempfile

    from .services.files import TMP_PREFIX

    with tempfile.NamedTemporaryFile(dir=folder, prefix=TMP_PREFIX, suffix=".probe"):
        pass


def _check_writable(folder: Path) -> None:
    """Raise OSError if ``folder`` is on a read-only mount or not writable by us, without
    creating anything there: a file made and removed moves the folder's mtime, which the list
    cache reads as "pictures may have changed" and so rebuilds every list after each start."""
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, "read-only file system", str(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied", str(folder))


def _read_only_paths(paths: DataPaths) -> DataPaths:
    """Paths to serve from when the data folder cannot be written.

    SQLite cannot open a WAL database read-only where it cannot create the ``-shm`` file, so the
    database is opened ``immutable`` (nothing can write that folder anyway). An immutable open
    ignores the ``-wal`` file, though: when one with content is there (the last run was killed
    before a checkpoint), the database and its WAL are read from a copy in a temporary folder,
    so every committed write is seen. With no usable database, an empty one stands in, so every
    read still answers.
    """
    import shutil
    import tempfile

    from .db import connection, upgrades

    wal = paths.database.with_name(paths.database.name + "-wal")
    try:
        if wal.is_file() and wal.stat().st_size > 0:
            copy = Path(tempfile.mkdtemp(prefix="hikaze-read-only-")) / paths.database.name
            shutil.copyfile(paths.database, copy)
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            with connection(copy) as conn:
                if upgrades.user_version(conn) >= 1:
                    return dataclasses.replace(paths, database=copy)
        with connection(paths.database, immutable=True) as conn:
            if upgrades.user_version(conn) >= 1:
                return dataclasses.replace(paths, immutable=True)
    except (OSError, sqlite3.Error) as exc:
        logger.error("[Hikaze] cannot read the library in %s: %s", paths.data_dir, exc)
    stand_in = Path(tempfile.mkdtemp(prefix="hikaze-read-only-")) / paths.database.name
    with connection(stand_in) as conn:
        upgrades.apply(conn, stand_in.parent / "backups")
    return dataclasses.replace(paths, database=stand_in)
