"""The PostgreSQL store under hostile conditions (issue 10): a server whose default isolation is
not READ COMMITTED, a failing statement inside on_every_machine, machine names that are not SQL."""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from hikaze_manager.db import on_every_machine, transaction
from hikaze_manager.db.stores import PostgresStore, machine_schema


def _db_name(url: str) -> str:
    return unquote(urlsplit(url).path[1:])


# ------------------------------------------------------------------------------------------------
# Writers on a server whose default isolation level is stricter than READ COMMITTED


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_writers_lose_nothing_when_the_database_defaults_to_a_stricter_isolation(
        postgres_server, postgres_url, level):
    name = _db_name(postgres_url)
    PostgresStore(postgres_url, "box-a").prepare()
    PostgresStore(postgres_url, "box-b").prepare()
    postgres_server.admin_execute(
        f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = '{level}'")
    stores = [PostgresStore(postgres_url, "box-a"), PostgresStore(postgres_url, "box-b")]
    with stores[0].connection() as conn:
        conn.execute("INSERT INTO db_meta(key, value) VALUES ('counter', '0')")
    writers, rounds = 6, 25
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def writer(i: int) -> None:
        try:
            with stores[i % 2].connection() as conn:
                start.wait()
                for _ in range(rounds):
                    # A snapshot taken before the lock was granted misses the other writers'
                    # commits: their increments are lost (or the write fails to serialize).
                    with transaction(conn):
                        value = int(conn.execute(
                            "SELECT value FROM db_meta WHERE key = 'counter'").fetchone()[0])
                        conn.execute("DELETE FROM db_meta WHERE key = 'counter'")
                        conn.execute("INSERT INTO db_meta(key, value) VALUES ('counter', ?)",
                                     (str(value + 1),))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    with stores[1].connection() as conn:
        assert conn.execute("SELECT value FROM db_meta WHERE key = 'counter'").fetchone()[0] == str(
            writers * rounds)
        # Single statements outside a transaction see the latest commit too.
        assert conn.execute("SHOW transaction_isolation").fetchone()[0] == "read committed"
    for store in stores:
        store.close()


def test_two_apps_tagging_one_model_lose_nothing_on_a_repeatable_read_database(
        tmp_path, postgres_server, postgres_url):
    from hikaze_manager import create_app
    from hikaze_manager.state import get_state

    postgres_server.admin_execute(f"ALTER DATABASE \"{_db_name(postgres_url)}\" "
                                  "SET default_transaction_isolation = 'repeatable read'")
    apps = []
    for name in ("studio-a", "gpu-box-b"):
        root = tmp_path / name
        (root / "models" / "loras").mkdir(parents=True)
        apps.append(create_app({"TESTING": True, "DATA_DIR": str(root / "data"),
                                "DATABASE_URL": postgres_url, "MACHINE_NAME": name,
                                "MODEL_TYPES": {"loras": {"roots": [str(root / "models" / "loras")]}}}))
    sha = "c" * 64
    with get_state(apps[0]).store.connection() as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, '', 'x', 'loras', 1, 1)", (sha,))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        client = apps[i % 2].test_client()
        try:
            start.wait()
            for k in range(4):
                response = client.post("/api/models/tags", json={"sha256": [sha],
                                                                 "add": [f"t {i}.{k}"]})
                assert response.status_code == 200, response.get_json()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert not errors, errors
        for app in apps:
            record = app.test_client().get(f"/api/models/{sha}").get_json()
            assert {t["name"] for t in record["tags"]} == {f"t {i}.{k}" for i in range(8)
                                                           for k in range(4)}
    finally:
        for app in apps:
            get_state(app).lists.close()
            get_state(app).store.close()


# ------------------------------------------------------------------------------------------------
# on_every_machine when a statement fails in another machine's schema


@pytest.fixture
def two_machines(postgres_url):
    """Stores of machines box-a and box-b on one library; box-b's pending_import holds 'taken'."""
    stores = [PostgresStore(postgres_url, name) for name in ("box-a", "box-b")]
    for store in stores:
        store.prepare()
    with stores[1].connection() as conn:
        conn.execute("INSERT INTO pending_import(path, created_at) VALUES ('taken', 1)")
    yield stores
    for store in stores:
        store.close()


INSERT_TAKEN = "INSERT INTO pending_import(path, created_at) VALUES ('taken', 2)"


def _search_path(conn) -> str:
    return conn.execute("SELECT current_setting('search_path')").fetchone()[0]


def test_a_failing_statement_in_a_transaction_raises_its_own_error_and_keeps_the_search_path(
        two_machines):
    a = two_machines[0]
    with a.connection() as conn:
        own = _search_path(conn)
        with pytest.raises(psycopg.errors.UniqueViolation):
            with transaction(conn):
                on_every_machine(conn, INSERT_TAKEN)
        assert not conn.in_transaction
        assert _search_path(conn) == own
        # The connection is reused (a request thread's): it still writes box-a's own tables.
        conn.execute("INSERT INTO pending_import(path, created_at) VALUES ('mine', 3)")
    with a.connection() as conn:
        assert [r[0] for r in conn.execute("SELECT path FROM pending_import")] == ["mine"]


def test_a_failing_statement_in_a_nested_transaction_leaves_the_outer_one_on_its_own_schema(
        two_machines):
    a = two_machines[0]
    with a.connection() as conn:
        own = _search_path(conn)
        with transaction(conn):
            with pytest.raises(psycopg.errors.UniqueViolation):
                with transaction(conn):
                    on_every_machine(conn, INSERT_TAKEN)
            assert _search_path(conn) == own
            conn.execute("INSERT INTO pending_import(path, created_at) VALUES ('mine', 3)")
        assert _search_path(conn) == own
    with two_machines[1].connection() as conn:
        assert [r[0] for r in conn.execute("SELECT path FROM pending_import")] == ["taken"]
    with a.connection() as conn:
        assert [r[0] for r in conn.execute("SELECT path FROM pending_import")] == ["mine"]


def test_a_failing_statement_outside_a_transaction_restores_the_search_path(two_machines):
    a = two_machines[0]
    with a.connection() as conn:
        own = _search_path(conn)
        with pytest.raises(psycopg.errors.UniqueViolation):
            on_every_machine(conn, INSERT_TAKEN)
        assert _search_path(conn) == own
        # box-a's row went in before box-b's failed (no transaction: SQLite's autocommit).
        assert [r[0] for r in conn.execute("SELECT path FROM pending_import")] == ["taken"]


def test_on_every_machine_runs_in_each_schema_and_comes_back(two_machines):
    a = two_machines[0]
    with a.connection() as conn:
        own = _search_path(conn)
        with transaction(conn):
            on_every_machine(conn, "DELETE FROM pending_import WHERE path = ?", ("taken",))
            assert _search_path(conn) == own
        assert _search_path(conn) == own
    with two_machines[1].connection() as conn:
        assert conn.execute("SELECT count(*) FROM pending_import").fetchone()[0] == 0


# ------------------------------------------------------------------------------------------------
# Machine names are data, never SQL

HOSTILE_NAMES = [
    "a$$b",
    "x'; DROP SCHEMA hikaze CASCADE; --",
    "$$; DROP SCHEMA hikaze CASCADE; $$",
    "q$$ BEGIN PERFORM 1; END $$; DROP TABLE hikaze.model_records; --",
    '"quoted"',
    "back\\slash '' $tag$",
    "スタジオ ★ Ünïcode",
    "{machine}{machine_name} 100% %s",
]


def test_hostile_machine_names_are_stored_as_given_and_drop_nothing(postgres_url):
    stores = [PostgresStore(postgres_url, name) for name in HOSTILE_NAMES]
    for i, store in enumerate(stores):
        assert store.prepare() is None, store.machine
        with store.connection() as conn:
            conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                         "VALUES (?, ?, 'm', 'loras', 1, 1)", (f"{i:064x}", f"/models/{i}"))
            # Every machine sees the earlier ones' records, with its own (empty) path for them.
            rows = dict(conn.execute("SELECT sha256, path FROM models").fetchall())
            assert rows == {f"{k:064x}": (f"/models/{i}" if k == i else "") for k in range(i + 1)}
    with stores[0].connection() as conn:
        machines = dict(conn.raw.execute("SELECT name, schema_name FROM hikaze.machines"))
        assert machines == {name: machine_schema(name) for name in HOSTILE_NAMES}
        paths = conn.raw.execute("SELECT machine, path FROM hikaze.model_paths ORDER BY path")
        assert sorted(paths) == sorted((name, f"/models/{i}") for i, name in enumerate(HOSTILE_NAMES))
    # A path cleared on one machine goes for that machine only.
    with stores[2].connection() as conn:
        conn.execute("UPDATE models SET path = '' WHERE sha256 = ?", (f"{2:064x}",))
    with stores[0].connection() as conn:
        assert conn.raw.execute("SELECT count(*) FROM hikaze.model_paths").fetchone()[0] == len(
            HOSTILE_NAMES) - 1
        assert conn.raw.execute("SELECT count(*) FROM hikaze.model_records").fetchone()[0] == len(
            HOSTILE_NAMES)
    for store in stores:
        store.close()


def test_a_server_named_with_dollar_quotes_starts_and_serves(tmp_path, postgres_url):
    from hikaze_manager import create_app
    from hikaze_manager.state import get_state

    name = "$$; DROP SCHEMA hikaze CASCADE; $$"
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
                      "DATABASE_URL": postgres_url, "MACHINE_NAME": f"  {name} ",
                      "MODEL_TYPES": {"loras": {"roots": [str(tmp_path / "loras")]}}})
    try:
        assert get_state(app).read_only_reason is None
        assert app.test_client().get("/api/models?type=loras").status_code == 200
        with get_state(app).store.connection() as conn:
            assert [r[0] for r in conn.raw.execute("SELECT name FROM hikaze.machines")] == [name]
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()
