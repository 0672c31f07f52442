"""Preview pictures beside a model file: found from one directory listing, checked by magic bytes."""

from __future__ import annotations

import os
import stat

from ..image_processing import MAX_IMAGE_BYTES, is_plain_name, sniff_mime

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif", "avif")


class Listing:
    """The names in one folder, looked up by exact name, then ignoring case."""

    def __init__(self, folder: str):
        self.folder = folder
        try:
            with os.scandir(folder) as entries:
                self.names = {entry.name for entry in entries}
        except OSError:
            self.names = set()
        self.folded: dict[str, str] = {}
        for name in sorted(self.names):
            self.folded.setdefault(name.casefold(), name)

    def find(self, name: str) -> str | None:
        """The name as it is on disk: exact case first, else any case."""
        if name in self.names:
            return name
        return self.folded.get(name.casefold())

    def path(self, name: str) -> str:
        """The full path of a listed name."""
        return os.path.join(self.folder, name)


class ListingCache:
    """One :class:`Listing` per folder for a whole scan."""

    def __init__(self) -> None:
        self._listings: dict[str, Listing] = {}

    def get(self, folder: str) -> Listing:
        """The listing of ``folder``, read once."""
        listing = self._listings.get(folder)
        if listing is None:
            listing = self._listings[folder] = Listing(folder)
        return listing


def _is_image(path: str) -> bool:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO or a device
            return False
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > MAX_IMAGE_BYTES:
                return False
            head = fh.read(32)
    except OSError:
        return False
    if sniff_mime(head):
        return True
    return len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis")


def candidates(stem: str, hints: list[str]) -> list[str]:
    """Preview names in the order they are tried (sidecar hints first)."""
    names = [h for h in hints if h and is_plain_name(h)]
    names += [f"{stem}.preview.{ext}" for ext in IMAGE_EXTENSIONS]
    names += [f"{stem}.{ext}" for ext in IMAGE_EXTENSIONS]
    names += [f"{stem}.example.0.{ext}" for ext in IMAGE_EXTENSIONS]
    return names


def find_preview(listing: Listing, stem: str, hints: list[str]) -> str | None:
    """The first preview picture beside the model, by name rules then magic bytes; None if none."""
    for wanted in candidates(stem, hints):
        name = listing.find(wanted)
        if name is not None and _is_image(listing.path(name)):
            return name
    return None


def read_preview(model_path: str, name: str) -> bytes | None:
    """The bytes of a preview found earlier, if it is still a picture beside the model."""
    if not is_plain_name(name):
        return None
    path = os.path.join(os.path.dirname(model_path), name)
    if not os.path.isfile(path) or not _is_image(path):
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_IMAGE_BYTES + 1)[:MAX_IMAGE_BYTES]
    except OSError:
        return None
