"""Images API: preview sets of library models (WebP tiers) and pending originals.

Routing: Werkzeug prefers static rules to converter rules, so ``get_img_count``, ``upload`` and
``delete`` are never taken for an image identifier, and ``<name>.webp`` wins over ``<name>``.
The default converter excludes ``/`` (a decoded ``%2F`` included); every value is validated again.

Caching: files are sent with ``Cache-Control: no-cache`` plus an ETag (inode, mtime, size) and
Last-Modified, so a browser revalidates each time (a cheap 304 on loopback) and a set renumbered
by a delete, whose URL now names other bytes, is never shown stale, with or without ``?rev=``.
Sets kept in the database (:mod:`~hikaze_manager.services.image_rows`) get the same headers, with
the SHA-256 of the tier as ETag and the time the row got its place as Last-Modified.
"""

from __future__ import annotations

import json
import os
import re

from flask import Blueprint, Response, request
from werkzeug.utils import send_file

from ..db import as_row_id, get_db
from ..errors import BadRequest, NotFound
from ..schemas.common import load_query, parse_sha256
from ..schemas.images import (
    ImageCountQuerySchema,
    ImageCountSchema,
    ImageDeleteQuerySchema,
    ImageQualityQuerySchema,
    StatusSchema,
    UploadFormSchema,
    UploadResultSchema,
)
from ..security import accepts_multipart
from ..services.files import open_regular_file
from ..services.image_processing import MAX_IMAGE_BYTES, ImageError, is_plain_name, sniff_mime
from ..services.image_rows import StoredTier
from ..state import get_state
from ..openapi import BINARY, api_doc
from .cached import failed_precondition_as_json

_PARTIAL = {206: BINARY, 304: "Not modified", 416: "Range not satisfiable"}
_UPLOAD_FORM = {"type": "object", "required": ["sha256", "image"], "properties": {
    "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}, "image": BINARY}}


bp = Blueprint("images", __name__, url_prefix="/api")

_IDENT = re.compile(r"([0-9a-fA-F]{64})(?:_([0-9]{1,9}))?\Z")
_FALLBACK = {"high": ("high",), "medium": ("medium", "high"), "low": ("low", "medium", "high")}
_MAX_SQLITE_INT = 2**63 - 1
WEBP = "image/webp"


# --- helpers ----------------------------------------------------------------------------------


def _etag(st: os.stat_result, extra: str = "") -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}{extra}"


def _modified(st: os.stat_result) -> float:
    # ctime moves on rename and link, so a set renumbered into this name is newer than any copy.
    return max(st.st_mtime, st.st_ctime)


def _revalidate(response: Response, etag: str, modified: float) -> Response:
    response.set_etag(etag)
    response.last_modified = int(modified)
    response.cache_control.no_cache = True
    return response


def _send_open_file(fh, mimetype: str) -> Response:
    """Send an open file; headers come from its fstat, so they match the bytes sent."""
    try:
        st = os.fstat(fh.fileno())
        response = send_file(fh, request.environ, mimetype=mimetype, conditional=False,
                             max_age=None)
        response.content_length = st.st_size
        _revalidate(response, _etag(st), _modified(st))
        return failed_precondition_as_json(
            response.make_conditional(request, accept_ranges=True, complete_length=st.st_size))
    except BaseException:  # the response owns the file only once it is returned
        fh.close()
        raise


def _send_stored(tier: StoredTier, mimetype: str) -> Response:
    """Send a tier read from the database (bytes, content validator, time of its place)."""
    response = Response(tier.data, mimetype=mimetype)
    _revalidate(response, tier.etag, tier.modified)
    return failed_precondition_as_json(
        response.make_conditional(request, accept_ranges=True, complete_length=len(tier.data)))


def _open(path) -> object | None:
    return open_regular_file(path)  # checked again at open: a swap to a symlink is refused


def _quality() -> str:
    return load_query(ImageQualityQuerySchema())["quality"]


# --- library image sets -----------------------------------------------------------------------


@bp.get("/images/get_img_count")
@api_doc("Number of picture sets of a model", query=ImageCountQuerySchema,
         response=ImageCountSchema)
def get_img_count():
    sha256 = load_query(ImageCountQuerySchema())["sha256"]
    return ImageCountSchema().dump({"count": get_state().images.count(sha256)})


@bp.get("/images/<ident>")
@bp.get("/images/<ident>.webp")
@api_doc("A picture of a model (<sha256> or <sha256>_<seq>) as WebP",
         query=ImageQualityQuerySchema, response=BINARY, content=WEBP, other_statuses=_PARTIAL)
def get_image(ident: str):
    if ident.lower().endswith(".webp"):
        ident = ident[: -len(".webp")]
    match = _IDENT.match(ident)
    if not match:
        raise BadRequest("The image must be named <sha256> or <sha256>_<seq>")
    sha256 = parse_sha256(match.group(1))
    seq = int(match.group(2) or 0)
    quality = _quality()
    # A set written by older software may lack its small tiers: fall back to larger ones.
    found = get_state().images.open_tier(sha256, seq, _FALLBACK[quality])
    if found is None:
        raise NotFound("Image not found")
    if isinstance(found, StoredTier):  # the database store: bytes, not an open file
        return _send_stored(found, WEBP)
    return _send_open_file(found, WEBP)


@bp.post("/images/upload")
@api_doc("Add a picture set to a model (multipart: sha256, image)", form=_UPLOAD_FORM,
         response=UploadResultSchema)
@accepts_multipart
def upload_image():
    files = request.files.getlist("image")  # 413 here if the body exceeds MAX_CONTENT_LENGTH
    shas = request.form.getlist("sha256")
    if not files or not shas:
        raise BadRequest("Missing image or sha256")
    sha256 = UploadFormSchema().load({"sha256": shas[-1]})["sha256"]  # the last part wins
    if get_db().execute("SELECT 1 FROM models WHERE sha256 = ?", (sha256,)).fetchone() is None:
        raise NotFound("Model not found")
    data = files[-1].stream.read(MAX_IMAGE_BYTES + 1)
    store = get_state().images
    seq = store.add_image(sha256, data)
    return UploadResultSchema().dump(
        {"status": "success", "base_name": f"{sha256}_{seq}", "seq": seq,
         "count": store.count(sha256)}
    )


@bp.delete("/images/delete")
@api_doc("Delete a picture set; later sets move down", query=ImageDeleteQuerySchema,
         response=StatusSchema)
def delete_image():
    args = load_query(ImageDeleteQuerySchema())
    get_state().images.delete_image(args["sha256"], args["seq"])
    return StatusSchema().dump({"status": "success"})


# --- pending originals ------------------------------------------------------------------------


def _pending_image_of(pending_id: int):
    """Path of ``basename(meta_json.images[0])`` of a pending row, or None."""
    if pending_id > _MAX_SQLITE_INT:
        return None
    row = get_db().execute(
        "SELECT meta_json FROM pending_import WHERE id = ?", (pending_id,)
    ).fetchone()
    if row is None or not row["meta_json"]:
        return None
    try:
        meta = json.loads(row["meta_json"])
    except (TypeError, ValueError):
        return None
    images = meta.get("images") if isinstance(meta, dict) else None
    if not isinstance(images, list) or not images or not isinstance(images[0], str):
        return None
    return get_state().images.pending_image_path(images[0])


def _checked_name(name: str) -> str:
    if not is_plain_name(name):
        raise BadRequest("Invalid pending image name")
    return name


def _send_original(path) -> Response:
    fh = _open(path) if path is not None else None
    if fh is None:
        raise NotFound("Pending image not found")
    mimetype = sniff_mime(fh.read(16))
    if mimetype is None:  # only images leave this folder, whatever their file name says
        fh.close()
        raise NotFound("Pending image not found")
    fh.seek(0)
    return _send_open_file(fh, mimetype)


def _send_converted(path, quality: str) -> Response:
    fh = _open(path) if path is not None else None
    if fh is None:
        raise NotFound("Pending image not found")
    with fh:
        st = os.fstat(fh.fileno())
        etag = _etag(st, f"-{quality}")
        if request.if_none_match.contains(etag):  # skip decoding entirely
            return _revalidate(Response(status=304), etag, _modified(st))
        if st.st_size > MAX_IMAGE_BYTES:
            raise NotFound("Pending image is too large to convert")
        data = fh.read()
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    try:
        webp = get_state().images.pending_webp(data, quality, key)
    except ImageError as exc:
        raise NotFound(f"Pending image cannot be converted: {exc.message}") from None
    response = Response(webp, mimetype=WEBP)
    _revalidate(response, etag, _modified(st))
    return failed_precondition_as_json(response.make_conditional(request))


@bp.get("/images/pending/<rowid:pending_id>")
@api_doc("The original picture of a pending model, by its id", response=BINARY,
         content="image/*", other_statuses=_PARTIAL)
def get_pending_image_by_id(pending_id: int):
    return _send_original(_pending_image_of(pending_id))


@bp.get("/images/pending/<name>")
@api_doc("A pending picture by file name, as stored", response=BINARY, content="image/*",
         other_statuses=_PARTIAL)
def get_pending_image(name: str):
    return _send_original(get_state().images.find_pending_image(_checked_name(name)))


@bp.get("/images/pending/<name>.webp")
@api_doc("A pending picture (by file name or pending id) converted to WebP",
         query=ImageQualityQuerySchema, response=BINARY, content=WEBP,
         other_statuses={304: "Not modified"})
def get_pending_image_webp(name: str):
    quality = _quality()
    _checked_name(name)
    store = get_state().images
    literal = store.pending_image_path(name + ".webp")
    if literal is not None and quality == "high":
        fh = _open(literal)
        if fh is not None:
            with fh:
                is_webp = sniff_mime(fh.read(16)) == WEBP
            if is_webp:
                return _send_original(literal)
    pending_id = as_row_id(name) if name.isascii() and name.isdigit() else None
    if pending_id is not None:
        path = _pending_image_of(pending_id)
    else:
        path = literal or store.find_pending_image(name)
    return _send_converted(path, quality)
