"""Request guards: Host allow-list (DNS rebinding), Origin checks (CSRF), token, content types, headers."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, current_app, request

from .errors import ApiError, error_response
from .schemas.common import check_url_text, json_body
from .state import get_state

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_HEADER = "X-Hikaze-Token"


def writes(view: Callable) -> Callable:
    """Mark a GET view that changes state (``GET /api/scan``) so it gets the write-side checks."""
    view.hikaze_writes = True
    return view


def accepts_multipart(view: Callable) -> Callable:
    """Mark a view whose body is ``multipart/form-data`` (uploads) instead of JSON."""
    view.hikaze_multipart = True
    return view


def host_name(host: str) -> str:
    """The host part of a Host header or netloc, without port or IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_loopback_address(address: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def allowed_host_names(app: Flask) -> frozenset[str]:
    """Loopback names plus configured ones (and the bind address when it is a concrete host)."""
    names = set(LOOPBACK_NAMES)
    names.update(host_name(h) for h in app.config.get("ALLOWED_HOSTS") or ())
    bind = host_name(str(app.config.get("HOST") or ""))
    if bind and bind not in ("0.0.0.0", "::"):
        names.add(bind)
    return frozenset(names)


def _split(url: str):
    """``urlsplit`` of a header value, or None when it cannot be parsed (e.g. ``http://[::1``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:
        return None
    return parts


def normalized_origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it in ``Origin`` ("" if unparsable)."""
    parts = _split(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts else ""


def _foreign_origin_allowed(origin: str) -> bool:
    allowed = {normalized_origin(o) for o in current_app.config.get("ALLOWED_ORIGINS") or ()}
    return bool(origin) and origin.lower() in allowed - {""}


def _same_origin(origin: str) -> bool:
    parts = _split(origin)
    return parts is not None and parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def _view_flag(name: str) -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, name, False))


HOST_VERDICTS = 64  # distinct Host values remembered; any others are checked every time


def _host_allowed(app: Flask, req) -> bool:
    """``req``'s Host is in the allow-list (the verdict is kept per Host value: every request of a
    client sends the same one)."""
    host = req.host
    verdicts = app.extensions["hikaze_host_verdicts"]
    verdict = verdicts.get(host)
    if verdict is None:
        verdict = host_name(host) in app.extensions["hikaze_hosts"]
        if len(verdicts) < HOST_VERDICTS:
            verdicts[host] = verdict
    return verdict


def _check_request():
    # Runs on every request: resolve the context-local proxies once.
    app = current_app._get_current_object()
    req = request._get_current_object()
    environ = req.environ
    if not _host_allowed(app, req):
        return error_response(400, "Host not allowed")
    token = app.config.get("AUTH_TOKEN")
    if token and not is_loopback_address(req.remote_addr):
        sent = req.headers.get(TOKEN_HEADER) or req.args.get("token") or ""
        if not hmac.compare_digest(sent.encode(), str(token).encode()):
            return error_response(401, f"A valid {TOKEN_HEADER} header is required")
    rule = req.url_rule
    if rule is None:  # unknown URL or method: let routing answer
        return None
    try:  # text no store can keep (NUL, lone surrogates) is refused before any view reads it
        # An empty query string has no parameters: skip parsing one.
        check_url_text(req.args if environ.get("QUERY_STRING") else None, req.view_args)
    except ApiError as exc:
        return error_response(exc.code, exc.message, exc.details)
    method = req.method
    changing = method in STATE_CHANGING_METHODS or getattr(
        app.view_functions.get(rule.endpoint), "hikaze_writes", False)
    if not changing:
        return None
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not (_same_origin(origin) or _foreign_origin_allowed(origin)):
        return error_response(403, "Cross-origin request refused")
    # A browser sends no Origin on no-cors GETs (<img src=...>), but it does say where they come
    # from: another site may not trigger a state-changing GET such as /api/scan that way.
    if origin is None and request.environ.get("HTTP_SEC_FETCH_SITE") in ("cross-site", "same-site"):
        return error_response(403, "Cross-site request refused")
    if request.method in ("POST", "PUT", "PATCH"):
        has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding")
        mimetype = request.mimetype
        if _view_flag("hikaze_multipart"):
            if mimetype != "multipart/form-data":
                return error_response(415, "Content-Type must be multipart/form-data")
        elif (has_body or mimetype) and not request.is_json:
            return error_response(415, "Content-Type must be application/json")
    state = get_state()
    reason = state.read_only_reason or state.store.write_refusal()
    if reason:
        return error_response(503, reason)
    if request.method in ("POST", "PUT", "PATCH") and request.is_json and has_body:
        # Every JSON body, whether its view reads it or not, passes the one strict parser first.
        try:
            json_body()
        except ApiError as exc:
            return error_response(exc.code, exc.message, exc.details)
    return None


def _add_headers(response):
    # Runs on every response: one pass over the header list instead of werkzeug's lookups, each
    # of which builds an exception object when the header is absent.
    headers = response.headers
    present = {name.lower(): value for name, value in headers.items()}
    if "x-content-type-options" not in present:
        headers.add("X-Content-Type-Options", "nosniff")
    if "referrer-policy" not in present:
        headers.add("Referrer-Policy", "no-referrer")
    origin = request._get_current_object().environ.get("HTTP_ORIGIN")
    if origin and not _same_origin(origin) and _foreign_origin_allowed(origin):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
        headers["Access-Control-Allow-Headers"] = f"Content-Type, If-Match, {TOKEN_HEADER}"
        headers["Access-Control-Expose-Headers"] = "ETag"
        headers["Access-Control-Max-Age"] = "600"
    vary = present.get("vary")
    if vary is None:
        headers.add("Vary", "Origin")
    elif "origin" not in {v.strip().lower() for v in vary.split(",")}:
        response.vary.add("Origin")
    if present.get("content-type", "").split(";")[0].strip() == "text/html":  # response.mimetype
        response.vary.add("Referer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
            f"object-src 'none'; base-uri 'none'; frame-ancestors {frame_ancestors()}",
        )
    return response


def _is_ipv6_origin(origin: str) -> bool:
    parts = _split(origin)
    return parts is not None and parts.netloc.startswith("[")


def frame_ancestors() -> str:
    """The ``frame-ancestors`` sources for this request: ourselves and the allowed origins.

    Chromium drops an IPv6 literal (``http://[::1]:8188``) as a source expression, so such an
    origin cannot be listed. When the page framing us is one (its iframe request names it in
    ``Referer``, which a page cannot forge), that page's scheme and port with any host stand in
    for it; every other request gets only the exact origins. Only selection mode (the one page
    the ComfyUI-side script frames) is widened so: any page on that port could then be an outer
    ancestor, and the full panel, which edits and deletes, must not be framed by it.
    """
    allowed = [normalized_origin(o) for o in current_app.config.get("ALLOWED_ORIGINS") or ()]
    sources = ["'self'", *(o for o in allowed if not _is_ipv6_origin(o))]
    framer = normalized_origin(request.headers.get("Referer") or "")
    selecting = request.args.get("mode") == "select"
    if selecting and framer and framer in allowed and _is_ipv6_origin(framer):
        parts = _split(framer)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sources.append(f"{parts.scheme}://*:{port}")
    return " ".join(sources)


def init_app(app: Flask) -> None:
    """Install the guards on every request of ``app``."""
    app.extensions["hikaze_hosts"] = allowed_host_names(app)
    app.extensions["hikaze_host_verdicts"] = {}
    app.before_request(_check_request)
    app.after_request(_add_headers)
