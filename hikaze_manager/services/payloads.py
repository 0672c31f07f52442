"""The ``hikaze_payload`` documents of the loader nodes: strict parsing with errors that name the problem."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

LORA_LIST_KEYS = ("loras", "LoRAs", "LoRAList", "loRAList")


class PayloadError(ValueError):
    """A node payload that cannot be used; the message says what is wrong."""

    # ComfyUI names the error type by module + class; ours would include the install folder.
    __module__ = "hikaze"


@dataclass(frozen=True)
class CheckpointChoice:
    """The checkpoint payload: path, plus the content hash and name when the panel wrote them."""

    path: str
    sha256: str = ""
    name: str = ""


@dataclass(frozen=True)
class LoraEntry:
    """One LoRA of a LoRA list document."""

    full_path: str
    strength_model: float
    strength_clip: float
    enabled: bool
    name: str = ""
    sha256: str = ""


def _load_json(text: str, node: str):
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"{node}: hikaze_payload is not valid JSON ({exc})") from None


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def checkpoint_choice(text: str) -> CheckpointChoice:
    """A checkpoint payload ``{"ckpt_path": "...", "sha256": "...", "name": "..."}`` (only
    ``ckpt_path`` is required: older payloads have nothing else)."""
    path = checkpoint_path(text)
    data = json.loads(text)
    return CheckpointChoice(path, _text(data.get("sha256")).lower(), _text(data.get("name")))


def checkpoint_path(text: str) -> str:
    """The ``ckpt_path`` of a checkpoint payload ``{"ckpt_path": "..."}``."""
    data = _load_json(text, "HikazeCheckpointLoader")
    if data is None:
        raise PayloadError("HikazeCheckpointLoader: no checkpoint selected")
    if not isinstance(data, dict):
        raise PayloadError("HikazeCheckpointLoader: hikaze_payload must be a JSON object")
    path = data.get("ckpt_path")
    if not isinstance(path, str) or not path.strip():
        raise PayloadError("HikazeCheckpointLoader: no checkpoint selected (ckpt_path is empty)")
    return path.strip()


def _first(entry: dict, *keys: str):
    for key in keys:
        if key in entry:
            return entry[key]
    return None


def _strength(entry: dict, index: int, *keys: str) -> float:
    value = _first(entry, *keys)
    if value is None:
        return 1.0  # a missing strength means full strength (the ComfyUI-side script agrees)
    if isinstance(value, bool):
        raise PayloadError(f"HikazeLoraPowerLoader: LoRA #{index + 1} needs a numeric {keys[0]}")
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        number = math.inf
    except (TypeError, ValueError):
        raise PayloadError(
            f"HikazeLoraPowerLoader: LoRA #{index + 1} has a non-numeric {keys[0]}: {value!r}"
        ) from None
    if not math.isfinite(number):
        raise PayloadError(f"HikazeLoraPowerLoader: LoRA #{index + 1} has a non-finite {keys[0]}")
    return number


def lora_entries(text: str) -> list[LoraEntry]:
    """The LoRAs of a LoRA list document (object with ``version``/``loras``, or a bare list)."""
    data = _load_json(text, "HikazeLoraPowerLoader")
    if data is None:
        return []
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        version = data.get("version", 2)
        if isinstance(version, str) and version.strip().isdigit():
            version = int(version)
        if isinstance(version, bool) or version not in (1, 2):
            raise PayloadError(f"HikazeLoraPowerLoader: unsupported LoRA list version {version!r}")
        items = next((data[k] for k in LORA_LIST_KEYS if k in data), [])
        if not isinstance(items, list):
            raise PayloadError("HikazeLoraPowerLoader: 'loras' must be a list")
    else:
        raise PayloadError("HikazeLoraPowerLoader: hikaze_payload must be an object or a list")
    entries = []
    for index, entry in enumerate(items):
        if not isinstance(entry, dict):
            raise PayloadError(f"HikazeLoraPowerLoader: LoRA #{index + 1} is not an object")
        path = _first(entry, "full_path", "path", "fullPath")
        name = entry.get("name") or ""
        if not isinstance(path, str) or not path.strip():
            if isinstance(name, str) and name.strip():
                path = name
            else:
                raise PayloadError(f"HikazeLoraPowerLoader: LoRA #{index + 1} has no full_path")
        enabled = _first(entry, "enabled", "toggleOn")
        if enabled is None:
            enabled = True
        if not isinstance(enabled, bool):
            raise PayloadError(f"HikazeLoraPowerLoader: LoRA #{index + 1} 'enabled' must be true or false")
        sha256 = entry.get("sha256") or ""
        entries.append(
            LoraEntry(
                full_path=path.strip(),
                strength_model=_strength(entry, index, "strength_model", "MStrength", "strengthModel"),
                strength_clip=_strength(entry, index, "strength_clip", "CStrength", "strengthClip"),
                enabled=enabled,
                name=name if isinstance(name, str) else str(name),
                sha256=sha256.strip().lower() if isinstance(sha256, str) else "",
            )
        )
    return entries
