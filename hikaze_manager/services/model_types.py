"""Model types and their folders: injected (ComfyUI), read from a ComfyUI or models folder, or cached."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# ComfyUI's supported_pt_extensions plus .gguf, which ComfyUI accepts for quantised models.
MODEL_EXTENSIONS = frozenset(
    {".safetensors", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl", ".sft", ".gguf"}
)

# ComfyUI's standard model folder types -> their sub-folders of ``models/`` (folder_paths.py).
STANDARD_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("unet", "diffusion_models"),
    "clip_vision": ("clip_vision",),
    "style_models": ("style_models",),
    "embeddings": ("embeddings",),
    "vae_approx": ("vae_approx",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "gligen": ("gligen",),
    "upscale_models": ("upscale_models",),
    "hypernetworks": ("hypernetworks",),
    "photomaker": ("photomaker",),
    "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
}
# Legacy folder names ComfyUI maps onto current types.
LEGACY_TYPE_NAMES = {"unet": "diffusion_models", "clip": "text_encoders"}
CACHE_FILE_NAME = "types_cache.json"


@dataclass(frozen=True)
class ModelType:
    """One model type: where its files live and which extensions are models."""

    name: str
    roots: tuple[str, ...]
    extensions: frozenset[str] = MODEL_EXTENSIONS


class ModelTypeIndex:
    """The known model types, by name."""

    def __init__(self, types: Mapping[str, ModelType] | None = None):
        self.types: dict[str, ModelType] = dict(sorted((types or {}).items()))

    def names(self) -> list[str]:
        """Type names, sorted."""
        return list(self.types)

    def has_roots(self) -> bool:
        """True when at least one type has a folder to scan."""
        return any(t.roots for t in self.types.values())

    def to_json(self) -> dict:
        """The cache file's content."""
        return {
            "version": 2,
            "types": self.names(),
            "model_types": self.names(),
            "paths_by_type": {n: list(t.roots) for n, t in self.types.items()},
            "extensions_by_type": {n: sorted(t.extensions) for n, t in self.types.items()},
        }

    def __bool__(self) -> bool:
        return bool(self.types)


def _extensions(values) -> frozenset[str]:
    cleaned = set()
    for value in values or ():
        value = str(value).strip().lower()
        if not value or "*" in value:
            continue
        cleaned.add(value if value.startswith(".") else "." + value)
    # An empty or non-model set (e.g. {"folder"}) falls back to the standard model extensions.
    return frozenset(cleaned & MODEL_EXTENSIONS) or MODEL_EXTENSIONS


def index_from_mapping(mapping: Mapping) -> ModelTypeIndex:
    """Build from ``{type: {"roots": [...], "extensions": [...]}}`` or ``{type: [roots]}``."""
    types = {}
    for name, spec in mapping.items():
        if isinstance(spec, Mapping):
            roots = spec.get("roots") or ()
            extensions = _extensions(spec.get("extensions"))
        else:
            roots, extensions = spec or (), MODEL_EXTENSIONS
        types[str(name)] = ModelType(str(name), tuple(str(r) for r in roots), extensions)
    return ModelTypeIndex(types)


def index_from_models_dir(models_dir: str | Path) -> ModelTypeIndex:
    """Each sub-folder of ``models_dir`` is a type (legacy names mapped as ComfyUI does)."""
    base = Path(models_dir).expanduser().absolute()
    roots: dict[str, list[str]] = {}
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError as exc:
        logger.warning("[Hikaze] cannot read models folder %s: %s", base, exc)
        return ModelTypeIndex()
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            name = LEGACY_TYPE_NAMES.get(entry.name, entry.name)
            roots.setdefault(name, []).append(entry.path)
    return ModelTypeIndex({n: ModelType(n, tuple(r)) for n, r in roots.items()})


def index_from_comfyui_dir(comfyui_dir: str | Path) -> ModelTypeIndex:
    """ComfyUI's standard ``models/<folder>`` layout plus its ``extra_model_paths.yaml``."""
    base = Path(comfyui_dir).expanduser().absolute()
    roots: dict[str, list[str]] = {
        name: [str(base / "models" / folder) for folder in folders]
        for name, folders in STANDARD_FOLDERS.items()
    }
    for name, paths in read_extra_model_paths(base / "extra_model_paths.yaml").items():
        bucket = roots.setdefault(name, [])
        bucket.extend(p for p in paths if p not in bucket)
    return ModelTypeIndex({n: ModelType(n, tuple(r)) for n, r in roots.items()})


def read_extra_model_paths(yaml_path: str | Path) -> dict[str, list[str]]:
    """Folders added by an ``extra_model_paths.yaml``, as ComfyUI reads it; {} if absent."""
    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        return {}
    import yaml  # only needed for standalone runs pointed at a ComfyUI folder

    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("[Hikaze] cannot read %s: %s", yaml_path, exc)
        return {}
    result: dict[str, list[str]] = {}
    if not isinstance(config, Mapping):
        return result
    for section in config.values():
        if not isinstance(section, Mapping):
            continue
        base_path = section.get("base_path")
        if base_path:
            base_path = os.path.expandvars(os.path.expanduser(str(base_path)))
            if not os.path.isabs(base_path):
                base_path = os.path.join(yaml_path.parent, base_path)
        for key, value in section.items():
            if key in ("base_path", "is_default") or value is None:
                continue
            name = LEGACY_TYPE_NAMES.get(str(key), str(key))
            if name in ("custom_nodes", "configs", "classifiers", "diffusers"):
                continue
            for line in str(value).splitlines():
                line = line.strip()
                if not line:
                    continue
                path = os.path.join(base_path, line) if base_path else line
                if not os.path.isabs(path):
                    path = os.path.join(yaml_path.parent, path)
                result.setdefault(name, []).append(os.path.normpath(path))
    return result


def read_cache(cache_path: str | Path) -> ModelTypeIndex:
    """The last known types and roots; an empty index if there is no usable cache."""
    try:
        data = json.loads(Path(cache_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ModelTypeIndex()
    if not isinstance(data, dict):
        return ModelTypeIndex()
    paths = data.get("paths_by_type") or {}
    extensions = data.get("extensions_by_type") or {}
    names = data.get("model_types") or data.get("types") or list(paths)
    mapping = {
        str(n): {"roots": paths.get(n) or [], "extensions": extensions.get(n)} for n in names
    }
    return index_from_mapping(mapping)


def write_cache(cache_path: str | Path, index: ModelTypeIndex) -> None:
    """Atomically record the types and roots for the next standalone run."""
    from .files import write_file_atomic

    payload = json.dumps(index.to_json(), indent=2, ensure_ascii=False).encode("utf-8")
    write_file_atomic(Path(cache_path), payload)


class ModelTypeRegistry:
    """Resolves the current model types from the configured source, re-read on demand."""

    def __init__(self, source: Mapping | Callable[[], Mapping] | None, comfyui_dir: str | None,
                 models_dir: str | None, cache_path: str | Path):
        self._source = source
        self._comfyui_dir = comfyui_dir
        self._models_dir = models_dir
        self._cache_path = Path(cache_path)
        self._lock = threading.Lock()
        self._index: ModelTypeIndex | None = None

    def _resolve(self) -> ModelTypeIndex:
        live: ModelTypeIndex | None = None
        if self._source is not None:
            mapping = self._source() if callable(self._source) else self._source
            live = index_from_mapping(mapping or {})
        elif self._comfyui_dir:
            live = index_from_comfyui_dir(self._comfyui_dir)
        elif self._models_dir:
            live = index_from_models_dir(self._models_dir)
        if live:
            try:
                write_cache(self._cache_path, live)
            except OSError as exc:
                logger.warning("[Hikaze] cannot write %s: %s", self._cache_path, exc)
            return live
        return read_cache(self._cache_path)

    def current(self) -> ModelTypeIndex:
        """The index, resolved once and then reused until :meth:`refresh`."""
        with self._lock:
            if self._index is None:
                self._index = self._resolve()
            return self._index

    def refresh(self) -> ModelTypeIndex:
        """Re-read the source (a scan calls this, so new ComfyUI folders are seen)."""
        with self._lock:
            self._index = self._resolve()
            return self._index


def resolve_model_file(path: str, index: ModelTypeIndex) -> str:
    """Accept a client-sent model path only if it is an existing file inside a known model folder."""
    from ..errors import BadRequest

    if "\x00" in path:
        raise BadRequest("path: invalid characters")
    candidate = os.path.realpath(os.path.expanduser(path))
    if not os.path.isfile(candidate):
        raise BadRequest("path: no such model file")
    for model_type in index.types.values():
        for root in model_type.roots:
            real_root = os.path.realpath(root)
            if os.path.commonpath((real_root, candidate)) == real_root:
                return os.path.abspath(os.path.expanduser(path))
    raise BadRequest("path: must be a file inside one of the model folders")
