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
# folder_paths kinds that hold no model files (or whole folders, as diffusers does).
NON_MODEL_TYPES = frozenset({"custom_nodes", "configs", "classifiers", "diffusers"})
# Never model files, whatever a type declares (previews, notes, metadata sidecars).
NON_MODEL_EXTENSIONS = frozenset(
    {".txt", ".md", ".json", ".yaml", ".yml", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp",
     ".html", ".htm", ".py", ".js", ".css", ".csv", ".info", ".log", ".ini", ".toml"}
)
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


def _extensions(values) -> frozenset[str] | None:
    """The model extensions of a declared set; ``None`` when the type holds no model files.

    Values are lower-cased and get a leading dot; ``*`` patterns are dropped. An empty or missing
    set means "the standard model extensions" (ComfyUI creates custom types with an empty set). A
    set made only of non-model extensions (``configs``: ``.yaml``; ``classifiers``: ``""``) means
    the type is not a model type at all.
    """
    declared = [str(v).strip().lower() for v in (values or ())]
    if not declared:
        return MODEL_EXTENSIONS
    cleaned = set()
    for value in declared:
        if not value or "*" in value:
            continue
        value = value if value.startswith(".") else "." + value
        if value != "." and value not in NON_MODEL_EXTENSIONS:
            cleaned.add(value)
    return frozenset(cleaned) or None


def index_from_mapping(mapping: Mapping) -> ModelTypeIndex:
    """Build from ``{type: {"roots": [...], "extensions": [...]}}`` or ``{type: [roots]}``.

    Folder kinds that never hold model files (``custom_nodes``, ``configs``, ...) are left out.
    """
    types = {}
    for name, spec in (mapping or {}).items():
        name = LEGACY_TYPE_NAMES.get(str(name), str(name))
        if name in NON_MODEL_TYPES:
            continue
        if isinstance(spec, Mapping):
            roots = spec.get("roots") or ()
            extensions = _extensions(spec.get("extensions"))
        elif isinstance(spec, (list, tuple)) and len(spec) == 2 and isinstance(spec[1], (set, frozenset)):
            roots, extensions = spec[0] or (), _extensions(spec[1])  # folder_paths' own tuples
        else:
            roots, extensions = spec or (), MODEL_EXTENSIONS
        if extensions is None:
            continue
        if isinstance(roots, (str, os.PathLike)):
            roots = (roots,)
        merged = list(types[name].roots) if name in types else []
        merged.extend(str(r) for r in roots if str(r) and str(r) not in merged)
        if name in types:
            extensions = types[name].extensions | extensions
        types[name] = ModelType(name, tuple(merged), extensions)
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
            if name in NON_MODEL_TYPES:
                continue
            roots.setdefault(name, []).append(entry.path)
    return ModelTypeIndex({n: ModelType(n, tuple(r)) for n, r in roots.items()})


def index_from_comfyui_dir(comfyui_dir: str | Path) -> ModelTypeIndex:
    """ComfyUI's standard ``models/<folder>`` layout plus its ``extra_model_paths.yaml``."""
    base = Path(comfyui_dir).expanduser().absolute()
    roots: dict[str, list[str]] = {
        name: [str(base / "models" / folder) for folder in folders]
        for name, folders in STANDARD_FOLDERS.items()
    }
    for name, paths, is_default in read_extra_model_paths(base / "extra_model_paths.yaml"):
        bucket = roots.setdefault(name, [])
        new = [p for p in paths if p not in bucket]
        # is_default puts the section's folders first, as folder_paths.add_model_folder_path does.
        roots[name] = new + bucket if is_default else bucket + new
    return ModelTypeIndex({n: ModelType(n, tuple(r)) for n, r in roots.items()})


def _lines(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [line.strip() for line in str(value).splitlines() if line.strip()]


def read_extra_model_paths(yaml_path: str | Path) -> list[tuple[str, list[str], bool]]:
    """Folders added by an ``extra_model_paths.yaml``, as ComfyUI's ``load_extra_path_config`` reads it.

    Returns ``(type, [absolute folders], is_default)`` per section and key, in file order; ``[]``
    if the file is absent or unreadable. ``base_path`` expands ``~`` and ``$VARS`` and is relative
    to the YAML's folder; without it, relative folders are relative to the YAML's folder. A value
    is one path or a ``|`` block of one path per line. Legacy names (``unet``, ``clip``) map to the
    current types; ``custom_nodes`` and other non-model kinds are ignored.
    """
    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        return []
    import yaml  # only needed for standalone runs pointed at a ComfyUI folder

    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        logger.warning("[Hikaze] cannot read %s: %s", yaml_path, exc)
        return []
    result: list[tuple[str, list[str], bool]] = []
    if not isinstance(config, Mapping):
        return result
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    for section in config.values():
        if not isinstance(section, Mapping):
            continue
        base_path = section.get("base_path")
        if base_path:
            base_path = os.path.expandvars(os.path.expanduser(str(base_path)))
            if not os.path.isabs(base_path):
                base_path = os.path.abspath(os.path.join(yaml_dir, base_path))
        is_default = bool(section.get("is_default"))
        for key, value in section.items():
            if key in ("base_path", "is_default") or value is None:
                continue
            name = LEGACY_TYPE_NAMES.get(str(key), str(key))
            if name in NON_MODEL_TYPES:
                continue
            paths = []
            for line in _lines(value):
                path = os.path.join(base_path, line) if base_path else line
                if not os.path.isabs(path):
                    path = os.path.join(yaml_dir, path)
                paths.append(os.path.normpath(path))
            if paths:
                result.append((name, paths, is_default))
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

    def _live(self) -> ModelTypeIndex | None:
        if self._source is not None:
            try:
                mapping = self._source() if callable(self._source) else self._source
                return index_from_mapping(mapping or {})
            except Exception:  # a broken source must not break the app: use the cache
                logger.exception("[Hikaze] cannot read the model types; using the cached ones")
                return None
        if self._comfyui_dir:
            return index_from_comfyui_dir(self._comfyui_dir)
        if self._models_dir:
            return index_from_models_dir(self._models_dir)
        return None

    def _resolve(self) -> ModelTypeIndex:
        live = self._live()
        if live:
            try:
                if read_cache(self._cache_path).to_json() != live.to_json():
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

    if not path or "\x00" in path:
        raise BadRequest("path: invalid characters")
    candidate = os.path.realpath(os.path.expanduser(path))
    if not os.path.isfile(candidate):
        raise BadRequest("path: no such model file")
    for model_type in index.types.values():
        for root in model_type.roots:
            real_root = os.path.realpath(root)
            try:
                inside = os.path.commonpath((real_root, candidate)) == real_root
            except ValueError:  # different drives on Windows
                inside = False
            if inside:
                return os.path.normpath(os.path.abspath(os.path.expanduser(path)))
    raise BadRequest("path: must be a file inside one of the model folders")
