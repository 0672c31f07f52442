"""Shared fixtures: an app on a real SQLite file (or PostgreSQL database) in tmp_path, its client, a DB connection."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from hikaze_manager import create_app
from hikaze_manager.state import get_state


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    """A models folder with checkpoints/ and loras/ sub-folders."""
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "loras").mkdir(parents=True)
    return root


STORES = ("sqlite", "postgres")
TEST_MACHINE = "test-machine"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "both_stores: run each test of the module on SQLite and on PostgreSQL")
    config.addinivalue_line(
        "markers", "sqlite_only(why): a test of the SQLite file itself, in a both_stores module")
    config.addinivalue_line(
        "markers", "postgres_only(why): a test of the shared store itself, in a both_stores module")


def pytest_generate_tests(metafunc):
    """Modules marked ``both_stores`` run every test that builds an app once per store."""
    definition = metafunc.definition
    if "store_kind" in metafunc.fixturenames and definition.get_closest_marker("both_stores"):
        stores = STORES[:1] if definition.get_closest_marker("sqlite_only") else \
            STORES[1:] if definition.get_closest_marker("postgres_only") else STORES
        metafunc.parametrize("store_kind", stores, indirect=True)


@pytest.fixture
def store_kind(request) -> str:
    """Which store the test app uses: the parameter, else $HIKAZE_TEST_STORE, else SQLite."""
    return getattr(request, "param", None) or os.environ.get("HIKAZE_TEST_STORE", "sqlite")


@pytest.fixture
def app_config(request, tmp_path: Path, models_root: Path, store_kind: str) -> dict:
    """Config of the test app; tests may change it before ``app`` is created."""
    config = {
        "TESTING": True,
        "DATA_DIR": str(tmp_path / "data"),
        "MODEL_TYPES": {
            "checkpoints": {"roots": [str(models_root / "checkpoints")]},
            "loras": {"roots": [str(models_root / "loras")]},
        },
    }
    if store_kind == "postgres":
        config["DATABASE_URL"] = request.getfixturevalue("postgres_library_url")
        config["MACHINE_NAME"] = TEST_MACHINE
    return config


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    state = get_state(app)
    for job in state.jobs.list():
        state.jobs.cancel(job.id)
        state.jobs.wait(job.id, timeout=30)
    state.lists.close()
    state.store.close()


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
    """A connection to the app's library, whichever store it is in."""
    with get_state(app).store.connection() as conn:
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

from pg_support import serve_for_tests  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """One throw-away PostgreSQL server per session, started only when a test asks for it."""
    yield from serve_for_tests()


@pytest.fixture
def postgres_url(postgres_server):
    """URL of a fresh empty database on the session's server; dropped after the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(unquote(urlsplit(url).path[1:]))


@pytest.fixture(scope="session")
def postgres_library_template(postgres_server) -> str:
    """A database holding the library schema for :data:`TEST_MACHINE`, to clone per test."""
    from hikaze_manager.db.stores import PostgresStore

    name = "hikaze_library_template"
    url = postgres_server.new_database(name)
    PostgresStore(url, TEST_MACHINE).prepare()
    return name


@pytest.fixture
def postgres_library_url(postgres_server, postgres_library_template):
    """URL of a fresh library database (schema ready for :data:`TEST_MACHINE`); dropped after."""
    url = postgres_server.new_database(template=postgres_library_template)
    yield url
    postgres_server.drop_database(unquote(urlsplit(url).path[1:]))
