"""Answer a list endpoint from :class:`~hikaze_manager.services.list_cache.ListCache`, with ETag and 304."""

from __future__ import annotations

import io
from collections.abc import Callable, Hashable

from flask import Response, request
from werkzeug.wsgi import wrap_file

from ..errors import error_response
from ..services.list_cache import CachedBody
from ..state import get_state

# Every answer is revalidated (the library can change at any time), but a 304 costs nothing.
CACHE_CONTROL = "no-cache"
# A body this big is handed to the server as a file to read from: waitress copies a plain body
# into its buffer first, a fresh multi-MB allocation (and page faults) on every cached answer.
STREAM_FROM = 256 * 1024


def cached_json(name: str, key: Hashable, build: Callable[[], object], *,
                uses_images: bool = False, extra: Hashable = ()) -> Response:
    """The JSON of ``build()`` for list ``name`` and validated query ``key``, or 304 if unchanged.

    ``uses_images``: the payload has ``images_count`` (the image folder is part of the version).
    ``extra``: anything else the payload depends on that is not in the database (e.g. type names).
    """
    return cached_response(
        get_state().lists.get(name, key, build, uses_images=uses_images, extra=extra))


def cached_response(entry: CachedBody) -> Response:
    """``entry``'s body with its ETag, or 304 when the request's If-None-Match holds it."""
    # Most requests send no If-None-Match: don't parse an absent header.
    if "HTTP_IF_NONE_MATCH" in request.environ and request.if_none_match.contains_weak(entry.etag):
        response = Response(status=304)
        response.headers["ETag"] = f'"{entry.etag}"'
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response
    return json_response(entry.body, entry.etag)


def json_response(body: bytes, etag: str) -> Response:
    """``body`` (JSON) with its strong validator ``etag``, to be revalidated on every use."""
    if len(body) >= STREAM_FROM:
        response = Response(wrap_file(request.environ, io.BytesIO(body)),
                            mimetype="application/json", direct_passthrough=True)
        response.content_length = len(body)
    else:
        response = Response(body, mimetype="application/json")
    headers = response.headers
    headers.add("ETag", f'"{etag}"')  # add, not set: the header is not there yet
    headers.add("Cache-Control", CACHE_CONTROL)
    return response


# The request headers werkzeug's make_conditional answers to (412, 304, 206).
_CONDITIONAL = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_RANGE")


def conditional(response: Response) -> Response:
    """``response.make_conditional(request)``, skipped when the request has no validator: that
    would only add a Date header, which waitress adds anyway."""
    environ = request.environ
    if any(name in environ for name in _CONDITIONAL):
        return failed_precondition_as_json(response.make_conditional(request))
    return response


def failed_precondition_as_json(response: Response) -> Response:
    """werkzeug answers a failed ``If-Match`` / ``If-Unmodified-Since`` with a 412 that still
    carries the resource: make it the API's error instead, so no client reads it as the body."""
    if response.status_code != 412:
        return response
    response.close()  # an image answer holds its open file
    return error_response(412, "The resource does not match If-Match or If-Unmodified-Since "
                               "(it changed); fetch it again")
