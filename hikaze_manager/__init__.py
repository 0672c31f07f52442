"""Hikaze Manager: a model-library manager for ComfyUI (Flask app, served by waitress)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask

from .config import ROOT, DefaultConfig
from .json_provider import SafeJSONProvider
from .state import AppState, DataPaths

logger = logging.getLogger(__name__)

__all__ = ["create_app"]


def create_app(config: Mapping | None = None) -> Flask:
    """Create and configure the app; ``config`` overrides defaults and the environment."""
    app = Flask(__name__, static_folder=str(ROOT / "static"), static_url_path="/static")
    app.json = SafeJSONProvider(app)
    app.config.from_object(DefaultConfig)
    if not (config or {}).get("TESTING"):
        app.config.from_prefixed_env("HIKAZE")
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
    from .db import connection
    from .db import upgrades
    from .services.files import sweep_temp_files
    from .services.images import ImageStore
    from .services.jobs import JobManager
    from .services.model_types import ModelTypeRegistry

    for folder in (paths.data_dir, paths.images_dir, paths.pending_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in (paths.data_dir, paths.images_dir, paths.pending_dir):
        sweep_temp_files(folder)
    with connection(paths.database) as conn:
        result = upgrades.apply(conn, paths.backups_dir)
    registry = ModelTypeRegistry(
        app.config.get("MODEL_TYPES"),
        app.config.get("COMFYUI_DIR"),
        app.config.get("MODELS_DIR"),
        paths.types_cache,
    )
    return AppState(
        paths=paths,
        images=ImageStore(paths.images_dir, paths.pending_dir),
        jobs=JobManager(),
        model_types=registry,
        read_only_reason=result.read_only_reason,
    )
