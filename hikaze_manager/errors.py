"""The package's exceptions and the app-wide JSON error handlers."""

from __future__ import annotations

import errno
import logging
import sqlite3

import marshmallow as ma
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .db import errors as db_errors
from .db.errors import (is_busy, is_disk_full, is_lock_timeout, is_not_permitted, is_read_only,
                        is_unreachable, primary_message)

logger = logging.getLogger(__name__)


class HikazeError(Exception):
    """Base for every error this package raises on purpose."""


class ApiError(HikazeError):
    """An error meant for the client; subclasses set ``code``."""

    code = 400

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ApiError):
    code = 400


class Forbidden(ApiError):
    code = 403


class NotFound(ApiError):
    code = 404


class Conflict(ApiError):
    code = 409


class PreconditionFailed(ApiError):
    code = 412


class PayloadTooLarge(ApiError):
    code = 413


class UnsupportedMediaType(ApiError):
    code = 415


class ServiceUnavailable(ApiError):
    code = 503


class InsufficientStorage(ApiError):
    code = 507


DISK_FULL_MESSAGE = (
    "The disk holding the library is full: nothing was changed. Free some space and try again."
)
_STORAGE_ERRNOS = {
    errno.ENOSPC: DISK_FULL_MESSAGE,
    getattr(errno, "EDQUOT", -1): "The disk quota of the library's folder is used up: nothing "
                                  "was changed. Free some space and try again.",
    errno.EFBIG: "The file is larger than this process may write (a file-size limit): nothing "
                 "was changed.",
    errno.EROFS: "The library's folder is on a read-only file system: nothing was changed.",
}


def storage_error(exc: BaseException) -> ApiError | None:
    """The client's error for a write the storage refused (full disk, size limit, read-only)."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        cls = ServiceUnavailable if exc.errno == errno.EROFS else InsufficientStorage
        return cls(_STORAGE_ERRNOS[exc.errno])
    if is_disk_full(exc):
        return InsufficientStorage(DISK_FULL_MESSAGE)
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if "disk I/O error" in text:  # what SQLite reports for EFBIG and other refused writes
            return InsufficientStorage(
                "The library database could not be written (disk I/O error): nothing was "
                "changed. Check the disk's free space and limits, then try again.")
    return None


def database_unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The client's 503 for a database that cannot serve the request now: another writer holds
    the write lock, the server is unreachable, read-only, or refuses our role; else None."""
    if isinstance(exc, db_errors.MachineTaken):
        return ServiceUnavailable(str(exc))
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__  # never the CONTEXT lines quoting our SQL
    if is_lock_timeout(exc):
        return ServiceUnavailable(
            "Another writer holds the library's write lock (another machine sharing the library, "
            "a job or another process on this one) and did not release it in time: nothing was "
            "changed. "
            f"Try again in a moment. ({text})")
    if is_busy(exc):
        return ServiceUnavailable(f"The library database is busy: {text}. Try again in a moment.")
    if is_unreachable(exc):
        return ServiceUnavailable(
            f"The library database cannot be reached right now: {text}. Try again once it is back.")
    if is_read_only(exc):
        why = ("its file became read-only" if isinstance(exc, sqlite3.Error)
               else "a standby after a failover, or a read-only setting")
        return ServiceUnavailable(
            f"The library database accepts no writes right now: it is read-only ({why}). "
            f"Reads still work. ({text})")
    if is_not_permitted(exc):
        return ServiceUnavailable(
            "The library database refused the change: the database role this server logs in as "
            f"lacks the privilege ({text}). Ask the database's administrator to grant it.")
    return None


def error_response(code: int, message: str, details: dict | None = None):
    """Build the one error shape of the API: ``{"error": message[, "details": {...}]}``."""
    body: dict = {"error": message}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = code
    return response


def _validation_message(messages) -> str:
    if isinstance(messages, dict):
        parts = []
        for field, problems in messages.items():
            if isinstance(problems, dict):
                problems = [_validation_message(problems)]
            elif not isinstance(problems, list):
                problems = [str(problems)]
            text = "; ".join(str(p) for p in problems)
            parts.append(text if field == "_schema" else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(messages, list):
        return "; ".join(str(m) for m in messages)
    return str(messages)


def register_error_handlers(app: Flask) -> None:
    """App-wide handlers: routing 404/405 never reach blueprint handlers."""

    @app.errorhandler(ApiError)
    def handle_api_error(e: ApiError):
        return error_response(e.code, e.message, e.details)

    @app.errorhandler(ma.ValidationError)
    def handle_validation_error(e: ma.ValidationError):
        messages = e.normalized_messages()
        return error_response(400, "Invalid request: " + _validation_message(messages), messages)

    @app.errorhandler(OSError)
    def handle_storage_error(e: OSError):
        refused = storage_error(e)
        if refused is None:
            raise e
        logger.error("[Hikaze] a write was refused by the storage: %s", e)
        return error_response(refused.code, refused.message)

    def handle_db_busy(e: Exception):
        refused = storage_error(e)
        if refused is not None:
            logger.error("[Hikaze] a database write was refused by the storage: %s", e)
            return error_response(refused.code, refused.message)
        unavailable = database_unavailable(e)
        if unavailable is not None:
            logger.warning("[Hikaze] database unavailable: %s", unavailable.message)
            return error_response(unavailable.code, unavailable.message)
        raise e

    # The store is open: psycopg's classes are known.
    for cls in (*db_errors.OperationalError, *db_errors.refusal_classes(), db_errors.MachineTaken):
        app.register_error_handler(cls, handle_db_busy)

    def handle_refused_value(e: Exception):
        # The input guards refuse what no store can hold (NUL, lone surrogates); this is the net
        # under them. The transaction was rolled back by ``db.transaction``.
        reason = primary_message(e)
        reason = reason if len(reason) <= 200 else reason[:200] + "..."
        logger.warning("[Hikaze] the database refused a value: %s", reason)
        return error_response(400, f"The database refused a value of the request: {reason}")

    for cls in db_errors.DataError:
        app.register_error_handler(cls, handle_refused_value)

    @app.errorhandler(HTTPException)
    def handle_http_exception(e: HTTPException):
        code = e.code or 500
        if code >= 500:
            return error_response(code, "Internal server error")
        return error_response(code, e.description or e.name)
