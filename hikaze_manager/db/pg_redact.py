"""Database URLs and connection strings without their password: the only form they are logged or
shown in, and error messages scrubbed of it.

Redaction errs on the side of hiding: whatever libpq might read as (part of) the password goes,
even when that also hides a host name. Both spellings libpq takes are covered: a
``postgresql://`` URL (credentials, ``?password=``) and a ``key=value`` connection string.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import unquote

MASK = "***"
_URL_SCHEME = re.compile(r"(?i)^\s*postgres(?:ql)?://")
# user:password@ of a URL, up to the LAST "@": a password holding "@", "/", ":", "?" or "#"
# (unencoded, which libpq misreads) is covered whole, and so is one after a user name holding
# "/" or "?".
_URL_CREDENTIALS = re.compile(r"(?is)^(\s*postgres(?:ql)?://[^:@]*):(.*)@")
# One key=value of a connection string as libpq reads it: a quoted value (backslash escapes,
# to the end when the quote is never closed) or an unquoted one up to white space.
_CONNINFO_PAIR = re.compile(
    r"""(?s)(?P<key>[^\s=]+)(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.|\\$)*)""")
_BARE_WORD = re.compile(r"(?s)\s+(?![^\s=]+\s*=)(?:[^\s\\]|\\.|\\$)+")
# Where libpq or psycopg may cut a misspelt password into pieces that reach a message.
_PIECES = re.compile(r"[@/?#:,&=%'\\\s]+")
_MIN_PIECE = 3  # shorter fragments would turn every message into asterisks


def _is_password_key(key: str) -> bool:
    return unquote(key).strip().lower().endswith("password")  # also PGPASSWORD, pass%77ord


def _conninfo(text: str) -> tuple[str, list[str]]:
    """A connection string with every password value masked, and those values."""
    out, found, pos = [], [], 0
    while pos < len(text):
        match = _CONNINFO_PAIR.search(text, pos)
        if match is None:
            out.append(text[pos:])
            break
        out.append(text[pos:match.start()])
        end = match.end()
        if _is_password_key(match["key"]):
            value = match["value"]
            if not value.startswith("'"):
                # Unquoted with spaces (libpq stops at the first one): the words up to the next
                # key=value are the password's rest as the user meant it.
                while (bare := _BARE_WORD.match(text, end)) is not None:
                    value += bare.group(0)
                    end = bare.end()
            found.append(value)
            out.append(match["key"] + match["eq"] + MASK)
        else:
            out.append(match.group(0))
        pos = max(end, match.start() + 1)
    return "".join(out), found


def _url_query(query: str) -> tuple[str, list[str]]:
    """A URL's query with every password parameter masked (and a bare word after one), and the
    values."""
    params, found, after_password = [], [], False
    for param in query.split("&"):
        key, eq, value = param.partition("=")
        if (eq and _is_password_key(key)) or (after_password and not eq):
            found.append(value if eq else key)
            params.append(f"{key}={MASK}" if eq else MASK)
            after_password = True
        else:
            params.append(param)
            after_password = False
    return "&".join(params), found


def _split(url: str) -> tuple[str, list[str]]:
    """``url`` redacted, and every password text it holds (as written)."""
    if not _URL_SCHEME.match(url):
        if "=" not in url:  # not a connection string libpq could read: hide it all
            return MASK, [url.strip()]
        return _conninfo(url)
    found = []
    credentials = _URL_CREDENTIALS.match(url)
    if credentials:
        found.append(credentials.group(2))
        url = credentials.group(1) + ":" + MASK + "@" + url[credentials.end():]
    head, mark, query = url.partition("?")
    if mark:
        query, values = _url_query(query)
        found += values
        url = head + mark + query
    return url, found


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``: the only form a URL is logged or shown in."""
    return _split(url)[0]


def _spellings(password: str) -> set[str]:
    """The password as written, as libpq decodes it, and the pieces a misparse may quote."""
    whole = {password, unquote(password)}
    if password.startswith("'"):
        inner = password[1:-1] if password.endswith("'") and len(password) > 1 else password[1:]
        whole |= {inner, re.sub(r"\\(.)", r"\1", inner)}
    whole |= {re.sub(r"\\(.)", r"\1", p) for p in list(whole)}
    pieces = {piece for text in whole for piece in _PIECES.split(text)}
    return {p for p in whole | pieces if len(p) >= _MIN_PIECE or (p in whole and p)}


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` redacted and its password nowhere in it."""
    redacted, passwords = _split(url)
    text = text.replace(url, redacted)
    spellings = set().union(*(_spellings(p) for p in passwords)) if passwords else set()
    for spelling in sorted(spellings, key=len, reverse=True):
        if len(spelling) >= _MIN_PIECE:
            text = text.replace(spelling, MASK)
        else:  # a very short password: only where a message quotes it whole
            for quote in ('"', "'"):
                text = text.replace(f"{quote}{spelling}{quote}", f"{quote}{MASK}{quote}")
    return text


class _ScrubbedLog(logging.Filter):
    """Scrubs psycopg's own log records (its DEBUG lines quote libpq's messages) of the
    passwords of every URL :func:`guard_log` was given."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = clean = record.getMessage()
        for url in list(self.urls):
            clean = scrub(clean, url)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_log_filter = _ScrubbedLog()
_log_lock = threading.Lock()


def guard_log(url: str) -> None:
    """Keep ``url``'s password out of the psycopg logger's records from now on."""
    with _log_lock:
        if not _log_filter.urls:
            logging.getLogger("psycopg").addFilter(_log_filter)
        _log_filter.urls.add(url)
