"""The database password never shows (issue 10): redact() of hostile URLs and connection
strings, and the messages of real failed connections (wrong password, unreachable, unparsable)
to the tests' PostgreSQL server, start-up logs and --help."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from hikaze_manager.db import pg
from hikaze_manager.db.pg import redact, scrub

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET = "Zq7SECRETpw"


def pieces(secret: str) -> list[str]:
    """The parts of ``secret`` (3 characters or more) that must show nowhere."""
    return [p for p in re.split(r"[@/?#:,&=\s'\\%]+", secret) if len(p) >= 3]


def assert_hidden(text: str, secret: str, encoded: bool = True) -> None:
    for piece in pieces(secret) + (pieces(quote(secret, safe="")) if encoded else []):
        assert piece not in text, (piece, text)


# URL or connection string, and the password it holds (as the user meant it).
HOSTILE = [
    (f"postgresql://u:{quote('p@ss:w/rd?x#y%z ' + SECRET, safe='')}@db.lan:5432/lib",
     "p@ss:w/rd?x#y%z " + SECRET),
    (f"postgresql://u:Hab@cd:ef/gh?ij#kl{SECRET}@db.lan:5432/lib", f"Hab@cd:ef/gh?ij#kl{SECRET}"),
    (f"postgresql://u:{SECRET}@{SECRET}2@db.lan/lib", f"{SECRET}@{SECRET}2"),
    (f"postgresql://u:{SECRET}%zz@db.lan/lib", f"{SECRET}%zz"),
    (f"postgresql://:{SECRET}@db.lan/lib", SECRET),
    (f"postgresql://db.lan/lib?password={SECRET}&sslmode=disable", SECRET),
    (f"postgresql://db.lan/lib?sslmode=disable&PassWord={quote(SECRET + '&=#')}", SECRET),
    (f"postgresql://db.lan/lib?pass%77ord={SECRET}", SECRET),
    (f"postgresql://db.lan/lib?password=abc {SECRET}", f"abc {SECRET}"),
    (f"postgresql://db.lan/lib?password=abc&{SECRET}", f"abc&{SECRET}"),
    (f"postgresql://u:{SECRET}@h1:5432,h2:5433,[::1]:5434/lib?target_session_attrs=any", SECRET),
    (f"POSTGRES://u:{SECRET}@db.lan/lib", SECRET),
    (f"postgresql://u?x:{SECRET}@db.lan/lib", SECRET),
    (f"postgresql://u/x:{SECRET}@db.lan/lib", SECRET),
    (f"host=db.lan password={SECRET} user=u", SECRET),
    (f"host=db.lan password = '{SECRET} with spaces' user=u", f"{SECRET} with spaces"),
    (f"host=db.lan password='it\\'s {SECRET}' user=u", f"it's {SECRET}"),
    (f"host=db.lan password='unterminated {SECRET}", f"unterminated {SECRET}"),
    (f"host=db.lan password=abc\\ {SECRET} user=u", f"abc {SECRET}"),
    (f"host=db.lan password=abc {SECRET} user=u", f"abc {SECRET}"),
    (f"host=db.lan password=a&{SECRET}", f"a&{SECRET}"),
    (f"host=db.lan PGPASSWORD={SECRET}", SECRET),
    (f"dbname=lib\tpassword={SECRET}\nuser=u", SECRET),
    (SECRET, SECRET),
]


@pytest.mark.parametrize("url, secret", HOSTILE)
def test_redact_hides_every_part_of_the_password(url, secret):
    shown = redact(url)
    assert_hidden(shown, secret)
    assert "***" in shown


@pytest.mark.parametrize("url, secret", HOSTILE)
def test_scrub_hides_the_password_in_any_message_about_the_url(url, secret):
    # What libpq and psycopg quote: the string, the password, the pieces a misparse cut it into.
    message = f'failed for {url!r}: "{secret}" ' + " ".join(f"'{p}'" for p in pieces(secret))
    assert_hidden(scrub(message, url), secret, encoded=False)


@pytest.mark.parametrize("url, kept", [
    ("postgresql://u:pw@db.lan:5432/lib?sslmode=require", "postgresql://u:***@db.lan:5432/lib?sslmode=require"),
    ("postgresql://u@db.lan/lib", "postgresql://u@db.lan/lib"),
    ("postgresql://db.lan/lib?passfile=/home/u/.pgpass", "postgresql://db.lan/lib?passfile=/home/u/.pgpass"),
    ("host=db.lan user=u password=pw dbname=lib", "host=db.lan user=u password=*** dbname=lib"),
    ("host=db.lan passfile='/home/u/my pass' dbname=lib", "host=db.lan passfile='/home/u/my pass' dbname=lib"),
])
def test_redact_keeps_everything_but_the_password(url, kept):
    assert redact(url) == kept


def test_short_passwords_are_hidden_where_quoted_without_garbling_messages():
    url = "host=db.lan password=ab"
    assert scrub('connection failed: password "ab" rejected', url) == \
        'connection failed: password "***" rejected'


# ------------------------------------------------------------------------------------------------
# Real connections to the tests' server


@pytest.fixture
def role(postgres_server, postgres_url):
    """(user, database) of a role that must log in with SECRET-bearing hostile passwords."""
    return f"hikaze_{uuid.uuid4().hex[:8]}", postgres_url.rsplit("/", 1)[1]


WRONG = ["p@ss:w/rd?x#y%z " + SECRET, f"it's \\ {SECRET} \"q\"", f"é ü {SECRET} ∑"]


@pytest.mark.parametrize("password", WRONG)
def test_a_wrong_password_fails_without_showing_it_in_any_spelling(postgres_server, role,
                                                                   password):
    user, database = role
    postgres_server.new_role(user, "right-" + uuid.uuid4().hex, database=database)
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    port = postgres_server.port
    for url in (postgres_server.url_for(database, user=user, password=password),
                f"postgresql://{user}@127.0.0.1:{port}/{database}?password={quote(password)}",
                f"host=127.0.0.1 port={port} user={user} dbname={database} password='{escaped}'"):
        with pytest.raises(psycopg.OperationalError) as failed:
            pg.connect(url, ["hikaze"])
        assert "password authentication failed" in str(failed.value)
        assert_hidden(str(failed.value), password)


def test_the_right_password_in_each_spelling_connects(postgres_server, role):
    user, database = role
    password = f"it's \\ {SECRET} @:/?#%"
    postgres_server.new_role(user, password, database=database)
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    port = postgres_server.port
    for url in (postgres_server.url_for(database, user=user, password=password),
                f"host=127.0.0.1 port={port} user={user} dbname={database} password='{escaped}'"):
        conn = pg.connect(url, ["hikaze"])
        conn.close()
        assert_hidden(redact(url), password)


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET}@127.0.0.1:1/db",
    f"postgresql://u:{SECRET}@127.0.0.1:1,127.0.0.1:2/db",
    f"postgresql://u:Hab@cd{SECRET}@127.0.0.1:1/db",
    f"postgresql://127.0.0.1:1/db?password=abc {SECRET}",
    f"postgresql://127.0.0.1:1/db?password=abc&{SECRET}",
    f"host=127.0.0.1 port=1 password=abc {SECRET}",
    f"host=127.0.0.1 port=1 password='abc {SECRET}",
    f"host=127.0.0.1 port=1 PGPASSWORD={SECRET}",
    f"postgresql://u:{SECRET}@[::1/db",
    f"postgresql://u:{SECRET}@127.0.0.1:1/db?sslmode=bogus",
])
def test_an_unreachable_or_unparsable_url_fails_without_showing_the_password(url, caplog):
    import traceback

    caplog.set_level(logging.DEBUG, logger="psycopg")  # it logs each failed attempt at DEBUG
    with pytest.raises(psycopg.Error) as failed:
        pg.connect(url, ["hikaze"])
    assert_hidden(str(failed.value), SECRET)
    # Nothing chained to it still holds the original message (error reporters read those).
    for linked in (failed.value.__context__, failed.value.__cause__):
        assert linked is None or SECRET not in str(linked)
    assert SECRET not in "".join(traceback.format_exception(failed.value))
    for record in caplog.records:
        assert_hidden(record.getMessage(), SECRET)


def test_pgpassword_and_passfile_failures_show_no_password(postgres_server, role, tmp_path,
                                                           monkeypatch):
    user, database = role
    postgres_server.new_role(user, "right-" + uuid.uuid4().hex, database=database)
    base = f"postgresql://{user}@127.0.0.1:{postgres_server.port}/{database}"
    monkeypatch.setenv("PGPASSWORD", SECRET)
    with pytest.raises(psycopg.OperationalError) as failed:
        pg.connect(base, ["hikaze"])
    assert SECRET not in str(failed.value) and "password authentication failed" in str(failed.value)
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:*:{SECRET}\n")
    passfile.chmod(0o600)
    url = f"{base}?passfile={quote(str(passfile))}"
    with pytest.raises(psycopg.OperationalError) as failed:
        pg.connect(url, ["hikaze"])
    assert SECRET not in str(failed.value) and "password authentication failed" in str(failed.value)
    assert redact(url) == url  # the passfile's path is not a secret


def test_start_up_logs_and_describe_show_no_password(tmp_path, postgres_server, role, caplog):
    from hikaze_manager import create_app
    from hikaze_manager.state import get_state

    user, database = role
    password = f"pqz {SECRET}"  # a space: libpq's unquoted value would stop there; not hex like the role name
    postgres_server.new_role(user, password, database=database)
    url = (f"host=127.0.0.1 port={postgres_server.port} user={user} dbname={database} "
           f"password='{password}'")
    caplog.set_level(logging.DEBUG)
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": url,
                      "MACHINE_NAME": "box", "MODEL_TYPES": {}})
    try:
        described = get_state(app).store.describe()
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()
    assert "password=***" in described
    assert_hidden(described, password)
    assert caplog.records
    for record in caplog.records:
        assert_hidden(record.getMessage(), password)


@pytest.mark.parametrize("module", ["hikaze_manager", "hikaze_manager.copy_library"])
def test_help_shows_no_password_from_the_environment(module):
    env = {**os.environ, "HIKAZE_DATABASE_URL": f"host=db.lan PGPASSWORD={SECRET}"}
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout + out.stderr


@pytest.mark.parametrize("spelling", ["url", "url query", "conninfo"])
def test_the_server_refused_a_hostile_password_and_says_so_without_it(tmp_path, postgres_server,
                                                                      role, spelling):
    user, database = role
    postgres_server.new_role(user, "right-" + uuid.uuid4().hex, database=database)
    password = f"p@ss:w/rd?x#y {SECRET} it's"
    port = postgres_server.port
    url = {"url": postgres_server.url_for(database, user=user, password=password),
           "url query": f"postgresql://{user}@127.0.0.1:{port}/{database}?password={quote(password)}",
           "conninfo": f"host=127.0.0.1 port={port} user={user} dbname={database} "
                       f"password='{password.replace(chr(39), chr(92) + chr(39))}'"}[spelling]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKAZE_")}
    out = subprocess.run(
        [sys.executable, "-m", "hikaze_manager", "--data-dir", str(tmp_path / "data"), "--port",
         "0", "--database-url", url, "--machine-name", "box"],
        cwd=PROJECT_ROOT, env={**env, "HIKAZE_DATABASE_URL": url}, capture_output=True, text=True,
        timeout=120)
    output = out.stdout + out.stderr
    assert out.returncode == 1, output
    assert "could not open the library" in output and "password authentication failed" in output
    assert "Traceback" not in output
    assert_hidden(output, password)
