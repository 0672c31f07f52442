"""Preview image sets on disk: ``<sha256>_<seq>_<high|medium|low>.webp`` under the images folder."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

TIERS = ("high", "medium", "low")
_SET_FILE = re.compile(r"^([0-9a-f]{64})_(\d+)_high\.webp$")


class ImageStore:
    """The image sets of every model; the folder is the single source of truth for counts."""

    def __init__(self, images_dir: str | Path, pending_dir: str | Path):
        self.images_dir = Path(images_dir)
        self.pending_dir = Path(pending_dir)

    def counts(self) -> Counter:
        """Number of image sets per sha256, from one directory listing."""
        counter: Counter = Counter()
        try:
            with os.scandir(self.images_dir) as entries:
                for entry in entries:
                    match = _SET_FILE.match(entry.name)
                    if match:
                        counter[match.group(1)] += 1
        except FileNotFoundError:
            pass
        return counter

    def count(self, sha256: str) -> int:
        """Number of image sets of one model."""
        return self.counts().get(sha256, 0)
