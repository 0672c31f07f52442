"""The package's exceptions and the app-wide JSON error handlers."""

from __future__ import annotations

import logging
import sqlite3

import marshmallow as ma
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

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

    @app.errorhandler(sqlite3.OperationalError)
    def handle_db_busy(e: sqlite3.OperationalError):
        text = str(e)
        if "locked" in text or "busy" in text or "readonly" in text:
            logger.warning("database unavailable: %s", text)
            return error_response(503, f"The library database is unavailable: {text}")
        raise e

    @app.errorhandler(HTTPException)
    def handle_http_exception(e: HTTPException):
        code = e.code or 500
        if code >= 500:
            return error_response(code, "Internal server error")
        return error_response(code, e.description or e.name)
