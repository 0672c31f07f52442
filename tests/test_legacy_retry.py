"""A v1 migration that loses its database, then a retry: each v1 picture ends in the library once.

t28 (hostile test): the failed run's undo cannot reach the database either, so its announced sets
stay; the retry used to add every picture again, and start-up then kept both copies (their models
are in the library). On PostgreSQL the server is really stopped mid-run; on either store the state
such a loss leaves (announced and written, no commit, no undo) is built directly.
"""

from __future__ import annotations

import pytest
from legacy_v1 import V1Library, image_bytes, sha256_of

from hikaze_manager import create_app
from hikaze_manager.db import errors as db_errors
from hikaze_manager.services import image_journal, legacy, legacy_reader
from hikaze_manager.services.images import picture_digest
from hikaze_manager.services.jobs import Job
from hikaze_manager.state import get_state

from conftest import TEST_MACHINE
from pg_support import PostgresServer, serve_for_tests

pytestmark = pytest.mark.both_stores

SIZES = [(40 + i, 30 + i) for i in range(6)]  # a different picture for each model
SHAS = [sha256_of(f"model {i}".encode()) for i in range(len(SIZES))]


def _v1(root) -> V1Library:
    lib = V1Library(root / "custom_nodes" / "hikaze-model-manager" / "data")
    for i, (sha, size) in enumerate(zip(SHAS, SIZES)):
        lib.add_model(f"/m/checkpoints/m{i}.safetensors", hash_hex=sha, image=image_bytes(size))
    lib.close()
    return lib


def _migrate(app, lib: V1Library, job: Job | None = None) -> dict:
    state = get_state(app)
    library = legacy_reader.read_legacy_library(lib.db_path)
    images_dir = legacy_reader.resolve_images_dir(None, lib.db_path)
    with state.store.connection() as conn:
        return legacy.migrate_legacy_library(
            conn, library, images_dir, state.images, state.paths.backups_dir, job)


def _assert_each_model_has_its_one_picture(app) -> None:
    state = get_state(app)
    assert [state.images.count(sha) for sha in SHAS] == [1] * len(SHAS)
    with state.store.connection() as conn:
        models = {row[0] for row in conn.execute("SELECT sha256 FROM models")}
        assert conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0
    assert models == set(SHAS)
    assert state.images.owners() <= models  # no set of a model that is not in the library


def test_a_retry_reuses_the_sets_a_failed_run_could_not_undo(app, app_config, db_conn, tmp_path):
    """The state a lost database leaves: some sets announced and written, nothing committed."""
    lib = _v1(tmp_path)
    store = get_state(app).images
    for sha, size in list(zip(SHAS, SIZES))[:4]:
        tiers = store.process(sha, image_bytes(size))
        image_journal.announce(db_conn, sha, picture_digest(tiers))
        store.add_processed(sha, tiers)

    report = _migrate(app, lib)  # the database is back: the user retries
    assert report["db_migration"]["migrated"] == len(SHAS)
    _assert_each_model_has_its_one_picture(app)
    _assert_each_model_has_its_one_picture(create_app(app_config))  # recovery keeps them, once


# --- a real outage ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_server():
    """A server of this module's own, which its test stops and starts (the session's is shared)."""
    yield from serve_for_tests()


class _LosesTheDatabase(Job):
    """A real job whose database server stops when its progress reaches ``at``."""

    def __init__(self, server: PostgresServer, at: int):
        super().__init__(id="legacy-retry", kind="legacy_migration")
        self.server, self.at = server, at

    def advance(self, **kwargs) -> None:
        super().advance(**kwargs)
        if self.files_done == self.at:
            self.server.halt("fast")


def _close(app) -> None:
    state = get_state(app)
    state.lists.close()
    state.store.close()


@pytest.mark.parametrize("at", [3, len(SIZES) + 2], ids=["pictures", "rows"])
def test_postgresql_lost_mid_migration_then_a_retry_adds_each_picture_once(
        own_server, tmp_path, models_root, at):
    config = {"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
              "MODEL_TYPES": {"checkpoints": {"roots": [str(models_root / "checkpoints")]}},
              "DATABASE_URL": own_server.new_database(), "MACHINE_NAME": TEST_MACHINE}
    lib = _v1(tmp_path)
    app = create_app(config)
    try:
        try:
            with pytest.raises(db_errors.Error):
                _migrate(app, lib, _LosesTheDatabase(own_server, at))
        finally:
            own_server.resume()
        report = _migrate(app, lib)
        assert report["db_migration"]["migrated"] == len(SHAS)
        _assert_each_model_has_its_one_picture(app)
    finally:
        _close(app)
    restarted = create_app(config)
    try:
        _assert_each_model_has_its_one_picture(restarted)
    finally:
        _close(restarted)
