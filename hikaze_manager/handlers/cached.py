"""Answer a list endpoint from :class:`~hikaze_manager.services.list_cache.ListCache`, with ETag and 304."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from flask import Response, request

from ..state import get_state

# Every answer is revalidated (the library can change at any time), but a 304 costs nothing.
CACHE_CONTROL = "no-cache"


def cached_json(name: str, key: Hashable, build: Callable[[], object], *,
                uses_images: bool = False, extra: Hashable = ()) -> Response:
    """The JSON of ``build()`` for list ``name`` and validated query ``key``, or 304 if unchanged.

    ``uses_images``: the payload has ``images_count`` (the image folder is part of the version).
    ``extra``: anything else the payload depends on that is not in the database (e.g. type names).
    """
    entry = get_state().lists.get(name, key, build, uses_images=uses_images, extra=extra)
    etag = f'"{entry.etag}"'
    if request.if_none_match and request.if_none_match.contains_weak(entry.etag):
        response = Response(status=304)
    else:
        response = Response(entry.body, mimetype="application/json")
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response
