"""What one app instance owns besides its config: data paths, image store, jobs, model types."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app

from .db import DB_FILE_NAME
from .db.stores import PostgresStore, SqliteStore
from .services.image_base import PictureStoreBase
from .services.jobs import JobManager
from .services.list_cache import ListCache
from .services.model_types import CACHE_FILE_NAME, ModelTypeRegistry


@dataclass(frozen=True)
class DataPaths:
    """Every file and folder under the data directory."""

    data_dir: Path
    database: Path
    images_dir: Path
    pending_dir: Path
    backups_dir: Path
    types_cache: Path
    immutable: bool = False  # the folder cannot be written: open the database as immutable

    @classmethod
    def under(cls, data_dir: str | Path, database: str | Path | None = None) -> "DataPaths":
        """The standard layout (that of Hikaze Model Manager 2) under ``data_dir``."""
        data_dir = Path(data_dir).expanduser().absolute()
        images = data_dir / "images"
        return cls(
            data_dir=data_dir,
            database=Path(database).expanduser().absolute() if database else data_dir / DB_FILE_NAME,
            images_dir=images,
            pending_dir=images / "pending",
            backups_dir=data_dir / "backups",
            types_cache=data_dir / CACHE_FILE_NAME,
        )


@dataclass
class AppState:
    """Shared, thread-safe services of one app; reached through :func:`get_state`."""

    paths: DataPaths
    images: PictureStoreBase
    jobs: JobManager
    model_types: ModelTypeRegistry
    lists: ListCache
    details: ListCache  # bodies of GET /api/models/{sha256}, on the same probe as ``lists``
    store: "SqliteStore | PostgresStore"
    read_only_reason: str | None = None


def get_state(app: Flask | None = None) -> AppState:
    """The state of ``app`` (default: the current app)."""
    return (app or current_app).extensions["hikaze"]
