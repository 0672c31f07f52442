"""The app's JSON encoder: UTF-8 as it is, but never a 500 for a string that UTF-8 cannot carry."""

from __future__ import annotations

import json

from flask.json.provider import DefaultJSONProvider


class SafeJSONProvider(DefaultJSONProvider):
    """Responses keep non-ASCII text readable; a lone surrogate (e.g. an undecodable file name
    from disk, kept by ``surrogateescape``) is sent as a ``\\udcxx`` escape instead of failing."""

    sort_keys = False
    ensure_ascii = False

    def dumps(self, obj, **kwargs) -> str:
        """Serialise ``obj``; fall back to ASCII escapes when the text is not valid UTF-8."""
        text = super().dumps(obj, **kwargs)
        if text.isascii():
            return text
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            kwargs.setdefault("default", self.default)
            return json.dumps(obj, **{**kwargs, "ensure_ascii": True})
        return text
