"""The SQLite-style SQL the services write means the same on PostgreSQL (``db/pg.py`` translate).

Every statement here runs for real on a SQLite file and on a PostgreSQL database and must give
the same result on both: string literals and quoted identifiers are data (never rewritten),
comments are never code, and a ``%`` is a ``%`` with or without parameters.
"""

from __future__ import annotations

import pytest

from hikaze_manager import db
from hikaze_manager.db import pg

SQLITE_TABLE = "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, \"a LIKE b\" TEXT)"
PG_TABLE = 'CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT COLLATE "C" UNIQUE, "a LIKE b" TEXT)'
ROWS = [(1, "Alpha", "x"), (2, "beta", "y"), (3, "100%", "z")]


@pytest.fixture
def conns(tmp_path, postgres_url):
    """The same table ``t`` in a SQLite file and in a PostgreSQL database."""
    lite = db.connect(tmp_path / "t.db")
    post = pg.connect(postgres_url, ["public"])
    for conn, ddl in ((lite, SQLITE_TABLE), (post, PG_TABLE)):
        conn.execute(ddl)
        conn.executemany('INSERT INTO t(id, name, "a LIKE b") VALUES (?, ?, ?)', ROWS)
    yield lite, post
    lite.close()
    post.close()


def both(conns, sql: str, params=()) -> list[tuple]:
    """The rows ``sql`` gives on SQLite, after checking PostgreSQL gives the very same."""
    lite, post = conns
    expected = [tuple(row) for row in lite.execute(sql, params).fetchall()]
    assert [tuple(row) for row in post.execute(sql, params).fetchall()] == expected, sql
    return expected


@pytest.mark.parametrize("sql, params, rows", [
    # A percent sign: literal or operator, with or without parameters (the first and the
    # fourth held before; they guard the always-bound parameters of the fix).
    ("SELECT '100%'", (), [("100%",)]),
    ("SELECT '100%', ?", (1,), [("100%", 1)]),
    ("SELECT 7 % 3", (), [(1,)]),
    ("SELECT 'a%%b'", (), [("a%%b",)]),
    # LIKE, json_each(?) and placeholders inside literals are text, not SQL.
    ("SELECT 'a LIKE b'", (), [("a LIKE b",)]),
    ("SELECT 'it''s like ?, LIKE %s', ?", ("p",), [("it's like ?, LIKE %s", "p")]),
    ("SELECT 'json_each(%s) AS j', ?", (2,), [("json_each(%s) AS j", 2)]),
    # Comments are not code: a ? or % or quote in one shifts nothing.
    ("SELECT ? -- why?\n", (5,), [(5,)]),
    ("SELECT /* ? */ ?", (5,), [(5,)]),
    ("SELECT ? /* it's */, ? /* isn't */", (1, 2), [(1, 2)]),
    ("SELECT ? -- 50%, don't\n, ?, '--not a comment'", (1, 2), [(1, 2, "--not a comment")]),
    ("SELECT '/* kept */', ? /* don't ? */", (1,), [("/* kept */", 1)]),
])
def test_literals_comments_and_percent_mean_what_sqlite_says(conns, sql, params, rows):
    assert both(conns, sql, params) == rows


def test_a_quoted_identifier_is_kept_byte_for_byte(conns):
    lite, post = conns
    sql = 'SELECT "a LIKE b" FROM t WHERE "a LIKE b" LIKE ? ORDER BY id'
    assert both(conns, sql, ("X",)) == [("x",)]
    assert [c[0] for c in post.execute(sql, ("X",)).description] == ["a LIKE b"]


def test_a_percent_written_without_parameters_is_stored_as_one(conns):
    lite, post = conns
    for conn in conns:
        conn.execute("INSERT INTO t(id, name) VALUES (7 % 4 + 1, '5% off')")
        conn.execute("UPDATE t SET \"a LIKE b\" = name || '%' WHERE id = 4")
    assert both(conns, 'SELECT name, "a LIKE b" FROM t WHERE id = 4') == [("5% off", "5% off%")]


def test_like_stays_case_insensitive_and_escapable(conns):
    assert both(conns, "SELECT name FROM t WHERE name like 'a%' ORDER BY id") == [("Alpha",)]
    assert both(conns, "SELECT name FROM t WHERE name like ? ESCAPE '\\'", ("%\\%",)) == [("100%",)]


def test_insert_or_ignore_after_a_comment(conns):
    sql = "-- the tag may be there already\nINSERT OR IGNORE INTO t(id, name) VALUES (?, ?); -- done?"
    for conn in conns:
        conn.execute(sql, (9, "Alpha"))
        conn.execute(sql, (9, "gamma"))
    assert both(conns, "SELECT id, name FROM t WHERE id = 9") == [(9, "gamma")]


def test_json_each_beside_a_literal_naming_it(conns):
    sql = ("SELECT 'json_each(%s) j', CAST(j.value AS INTEGER) FROM json_each(?) j "
           "ORDER BY CAST(j.value AS INTEGER)")
    assert both(conns, sql, ("[3, 1]",)) == [("json_each(%s) j", 1), ("json_each(%s) j", 3)]
