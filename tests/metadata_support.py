"""Helpers for metadata tests: real safetensors files and the real-world samples in tests/data."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

SAMPLES = Path(__file__).with_name("data") / "metadata"


def safetensors_bytes(metadata: dict | None = None, *, tensor_bytes: bytes = b"\x01\x02" * 64,
                      pad_to: int = 8, raw_metadata=None) -> bytes:
    """A valid safetensors file: one uint8 tensor, optional ``__metadata__``, header padded."""
    header: dict = {"w": {"dtype": "U8", "shape": [len(tensor_bytes)],
                          "data_offsets": [0, len(tensor_bytes)]}}
    if raw_metadata is not None:
        header["__metadata__"] = raw_metadata
    elif metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % pad_to)
    return struct.pack("<Q", len(text)) + text + tensor_bytes


def write_safetensors(path: Path, metadata: dict | None = None, **kwargs) -> tuple[str, str]:
    """Write a safetensors file; returns (sha256 of the file, AutoV3 of its data section)."""
    data = safetensors_bytes(metadata, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    length = struct.unpack("<Q", data[:8])[0]
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(data[8 + length:]).hexdigest()[:12]


def sample_metadata(name: str) -> dict:
    """A real header dump as the string map a file holds (viewer-parsed values back to JSON text)."""
    data = json.loads((SAMPLES / "safetensors_header" / name).read_text(encoding="utf-8"))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def copy_sample(relative: str, dest: Path) -> Path:
    """Copy one sample file to ``dest`` (a full path: the sidecar's name beside a model)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLES / relative, dest)
    return dest
