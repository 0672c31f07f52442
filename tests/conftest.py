"""Shared fixtures: an app on a real SQLite file in tmp_path, its client, a DB connection."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from hikaze_manager import create_app
from hikaze_manager.db import connection
from hikaze_manager.state import get_state


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    """A models folder with checkpoints/ and loras/ sub-folders."""
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "loras").mkdir(parents=True)
    return root


@pytest.fixture
def app_config(tmp_path: Path, models_root: Path) -> dict:
    """Config of the test app; tests may change it before ``app`` is created."""
    return {
        "TESTING": True,
        "DATA_DIR": str(tmp_path / "data"),
        "MODEL_TYPES": {
            "checkpoints": {"roots": [str(models_root / "checkpoints")]},
            "loras": {"roots": [str(models_root / "loras")]},
        },
    }


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    for job in get_state(app).jobs.list():
        get_state(app).jobs.cancel(job.id)
        get_state(app).jobs.wait(job.id, timeout=30)


@pytest.fixture
def no_propagation(app):
    """Behave as in production: an unexpected exception becomes a 500 instead of reaching the test."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db_conn(app):
    with connection(app.config["DATABASE"]) as conn:
        yield conn


@pytest.fixture
def make_model_file(models_root: Path):
    """Factory: write a real model file with given content; returns (path, sha256)."""

    def _make(relative: str, content: bytes | None = None) -> tuple[Path, str]:
        path = models_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content if content is not None else os.urandom(4096)
        path.write_bytes(data)
        return path, hashlib.sha256(data).hexdigest()

    return _make


@pytest.fixture
def add_model(db_conn: sqlite3.Connection):
    """Factory: insert a library row directly (as a scan + promotion would have)."""

    def _add(sha256: str, path: str, *, name: str | None = None, type: str | None = "checkpoints",
             meta_json: str | None = None, size_bytes: int = 1, created_at: int = 1700000000000):
        db_conn.execute(
            "INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sha256, path, name, type, size_bytes, created_at, meta_json),
        )
        return sha256

    return _add


# --- PostgreSQL (issue 10): a real server the tests start themselves (tests/pg_support.py) ------

from urllib.parse import unquote, urlsplit  # noqa: E402

from pg_support import PostgresServer, PostgresUnavailable, postgres_unavailable  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """One throw-away PostgreSQL server per session, started only when a test asks for it."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        postgres_unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """URL of a fresh empty database on the session's server; dropped after the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(unquote(urlsplit(url).path[1:]))
