"""ComfyUI side of Hikaze Manager: the loader nodes, the sniffer route and the server thread.

The only module that imports ComfyUI, and only inside functions: importing it is cheap and never
breaks ComfyUI; every failure is logged with a ``[Hikaze]`` prefix.
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger("hikaze")

# Relative to this package; holds only the ComfyUI-side JavaScript (ComfyUI injects every .js in it).
WEB_DIRECTORY = "./static/comfyui"
CATEGORY = "Hikaze Model Manager 2 nodes"
# Folder types that never hold loadable model files.
NON_MODEL_TYPES = frozenset({"custom_nodes", "configs", "classifiers", "diffusers"})

_port = 0
_store = None  # the running server's library store (set when it starts)
_start_lock = threading.Lock()
_start_requested = False


def comfy_model_types() -> dict:
    """ComfyUI's model folders and extensions, read from ``folder_paths`` each time it is called."""
    import folder_paths

    pt_extensions = set(getattr(folder_paths, "supported_pt_extensions", ()))
    types = {}
    for name, (paths, extensions) in list(folder_paths.folder_names_and_paths.items()):
        if name in NON_MODEL_TYPES:
            continue
        extensions = set(extensions or ())
        if extensions and not (extensions & pt_extensions) and ".gguf" not in extensions:
            continue  # e.g. configs (.yaml)
        types[name] = {"roots": list(paths), "extensions": sorted(extensions)}
    return types


def _comfy_address() -> tuple[str, int, bool]:
    """ComfyUI's ``--listen`` value, port, and whether it serves HTTPS."""
    try:
        from comfy.cli_args import args

        tls = bool(getattr(args, "tls_keyfile", None) and getattr(args, "tls_certfile", None))
        return str(args.listen or "127.0.0.1"), int(args.port), tls
    except Exception:  # older or unusual ComfyUI builds
        return "127.0.0.1", 8188, False


def comfyui_origins(listen: str, port: int, tls: bool = False) -> list[str]:
    """Origins the ComfyUI page can have: the loopback names plus every concrete ``--listen`` host.

    The panel trusts these (CORS, ``frame-ancestors``, the selection messages); the ComfyUI-side
    script only opens the panel from a loopback page, because our server binds 127.0.0.1 only.
    """
    scheme = "https" if tls else "http"
    hosts = ["127.0.0.1", "localhost", "[::1]"]
    for host in (listen or "").split(","):
        host = host.strip().lower()
        if not host or host in ("0.0.0.0", "::"):
            continue  # wildcards: the page's real host name is unknown
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if host not in hosts:
            hosts.append(host)
    return [f"{scheme}://{host}:{port}" for host in hosts]


def _serve() -> None:
    global _port, _store
    try:
        from .hikaze_manager import create_app
        from .hikaze_manager.server import start_server
        from .hikaze_manager.state import get_state

        listen, comfy_port, tls = _comfy_address()
        origins = comfyui_origins(listen, comfy_port, tls)
        app = create_app({"MODEL_TYPES": comfy_model_types, "ALLOWED_ORIGINS": origins})
        _store = get_state(app).store
        handle = start_server(app, "127.0.0.1", comfy_port + 1)
        _port = handle.port
        logger.info("[Hikaze] Hikaze Manager is running at %s", handle.url)
    except Exception as exc:
        from .hikaze_manager.db.stores import StartRefused

        if isinstance(exc, StartRefused):  # a setting to change, not a bug: no traceback
            logger.error("[Hikaze] the Hikaze Manager server did not start: %s", exc)
            return
        logger.exception("[Hikaze] the Hikaze Manager server did not start")


def start_server_thread() -> None:
    """Start the server once, on a daemon thread (all the work happens off ComfyUI's loop)."""
    global _start_requested
    with _start_lock:
        if _start_requested:
            return
        _start_requested = True
    threading.Thread(target=_serve, name="hikaze-startup", daemon=True).start()


def _register_with_comfyui() -> None:
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return  # not inside ComfyUI (tests, tooling)
    try:
        instance = PromptServer.instance

        @instance.routes.get("/api/hikaze/sniffer_port")
        async def hikaze_sniffer_port(_request):
            return web.json_response({"port": _port})

        async def _on_startup(_app):
            start_server_thread()

        instance.app.on_startup.append(_on_startup)
    except Exception:
        logger.exception("[Hikaze] could not register with ComfyUI")


def _last_run(node):
    """What this node object loaded in its previous run (ComfyUI keeps one object per node)."""
    cache = getattr(node, "_hikaze_last_run", None)
    if cache is None:
        from .hikaze_manager.services.load_cache import LastRunCache

        cache = node._hikaze_last_run = LastRunCache()
    return cache


def _library_store():
    """The store the server uses, or (server not started) the one it would use: the shared
    library of ``HIKAZE_DATABASE_URL`` (this machine's paths), else the data folder's file.
    Raises ValueError when the machine name is one the server refuses too."""
    if _store is not None:
        return _store
    from .hikaze_manager.config import DefaultConfig, text_settings
    from .hikaze_manager.db.stores import PostgresStore, SqliteStore, configured_machine_name
    from .hikaze_manager.state import DataPaths

    settings = text_settings()  # the environment read exactly as the server reads it
    url = settings.get("DATABASE_URL")
    if url:
        return PostgresStore(url, configured_machine_name(settings.get("MACHINE_NAME")))
    data_dir = settings.get("DATA_DIR") or DefaultConfig.DATA_DIR
    return SqliteStore(DataPaths.under(data_dir, settings.get("DATABASE")).database)


def _read_library(work) -> tuple[object, str]:
    """``(work(conn), "")`` on the library opened read-only, or ``(None, why)`` when the library
    itself is the problem (missing, unreadable, locked); the library is never written."""
    from .hikaze_manager.db import errors as db_errors

    try:
        store = _library_store()
    except ValueError as exc:  # the server would not start with this name either
        logger.warning("[Hikaze] cannot read the shared library: HIKAZE_%s", exc)
        return None, f"the shared Hikaze library cannot be read: HIKAZE_{exc}"
    where = store.describe()  # never shows a database password
    if store.kind == "sqlite" and not os.path.isfile(store.database):
        return None, f"there is no Hikaze library at {os.path.dirname(store.database)}"
    try:
        conn = store.connect(read_only=True)
    except db_errors.Error as exc:
        logger.warning("[Hikaze] cannot read the library %s: %s", where, exc)
        return None, f"the Hikaze library {where} could not be read ({exc})"
    try:
        if store.kind == "postgres" and not store.joined(conn):
            return None, (f"the shared Hikaze library {where} has no paths of this machine yet "
                          "(Hikaze Manager has not run here with this machine name)")
        return work(conn), ""
    except db_errors.Error as exc:
        logger.warning("[Hikaze] cannot read the library %s: %s", where, exc)
        return None, f"the Hikaze library {where} could not be read ({exc})"
    finally:
        conn.close()


def _find_by_hash(sha256: str, skip: str) -> tuple[str | None, str]:
    """A file with this content that the library knows of (or None), and why none when the
    library itself is the problem."""
    from .hikaze_manager.services.resolve import find_by_hash

    return _read_library(lambda conn: find_by_hash(conn, sha256, skip=skip))


def _trigger_words(loaded: list[tuple[str, str]]) -> str:
    """The library's trigger words of the loaded LoRAs, in list order, once each, comma-separated.

    ``loaded`` holds (sha256 from the payload or "", path loaded); an entry without a hash is
    looked up by the path it was loaded from. No library: no words (the LoRAs still load).
    """
    from .hikaze_manager.services.metadata.store import trigger_words_for

    def read(conn) -> str:
        shas = []
        for sha256, path in loaded:
            if not sha256:
                row = conn.execute("SELECT sha256 FROM models WHERE path = ?", (path,)).fetchone()
                sha256 = row[0] if row else ""
            if sha256:
                shas.append(sha256.lower())
        words_by_sha = trigger_words_for(conn, shas)
        words = [w.strip() for sha in shas for w in words_by_sha.get(sha, [])]
        return ", ".join(dict.fromkeys(w for w in words if w))

    return (_read_library(read)[0] or "") if loaded else ""


def _model_file(node: str, label: str, kind: str, path: str, sha256: str) -> str:
    """The file to load for one payload entry; errors name the entry, the path and the hash."""
    import folder_paths

    from .hikaze_manager.services import resolve

    try:
        roots = folder_paths.get_folder_paths(kind)
    except (KeyError, ValueError):
        roots = []
    found = resolve.locate(path, sha256, roots, None)
    library_problem = ""
    if found is None and resolve.is_sha256(sha256):
        hit, library_problem = _find_by_hash(sha256, os.path.expanduser(path))
        if hit:
            found = resolve.Resolved(hit, "hash")
            logger.warning("[Hikaze] %s: %s is not at %s; loading %s (same SHA-256 %s)",
                           node, label, path, hit, sha256)
    if found is None:
        where = path if os.path.isabs(os.path.expanduser(path)) else (
            f"{path} (in none of the {kind} folders: {', '.join(roots) or 'none configured'})")
        if library_problem:
            raise resolve.ModelNotFoundError(
                f"{node}: {label} not found: {where}, and it cannot be looked up by its SHA-256 "
                f"{sha256}: {library_problem}. Open Hikaze Manager and scan the model folders, "
                "or select it again.")
        if resolve.is_sha256(sha256):
            raise resolve.ModelNotFoundError(
                f"{node}: {label} not found: {where}, and the Hikaze library knows no file with "
                f"SHA-256 {sha256}. Scan the model folders in Hikaze Manager or select it again.")
        raise resolve.ModelNotFoundError(
            f"{node}: {label} not found: {where}. The payload has no sha256 to find it by; "
            "select it again in the Hikaze panel.")
    problem = resolve.model_file_problem(found.path)
    if problem:
        raise resolve.ModelFileError(f"{node}: {label} is not a model file ({problem}): {found.path}")
    logger.info("[Hikaze] %s: %s -> %s", node, label, found.path)
    return found.path


def _named_read(node: str, labels: dict, read):
    """``read`` whose failures name the entry and the file (out of memory is left as it is)."""
    from .hikaze_manager.services.resolve import ModelFileError

    def guarded(file):
        try:
            return read(file)
        except Exception as exc:
            # ComfyUI tells OOM apart by its type (to free memory and explain); an interrupt too.
            name = type(exc).__name__
            if isinstance(exc, MemoryError) or "OutOfMemory" in name or "Interrupt" in name:
                raise
            raise ModelFileError(f"{node}: {labels[file]} could not be loaded "
                                 f"({type(exc).__name__}: {exc}): {file}") from exc

    return guarded


class HikazeCheckpointLoader:
    """Load the checkpoint chosen in the Hikaze panel."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    RETURN_NAMES = ("Model", "CLIP", "VAE")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"hikaze_payload": (
            "STRING", {"multiline": True, "default": '{"ckpt_path": ""}',
                       "tooltip": "Chosen checkpoint, written by the Hikaze panel."})}}

    def load(self, hikaze_payload):
        import comfy.sd
        import folder_paths

        from .hikaze_manager.services.payloads import checkpoint_choice

        choice = checkpoint_choice(hikaze_payload)
        label = f"checkpoint ({choice.name or os.path.basename(choice.path)})"
        path = _model_file("HikazeCheckpointLoader", label, "checkpoints", choice.path, choice.sha256)

        def read(file):
            return tuple(comfy.sd.load_checkpoint_guess_config(
                file, output_vae=True, output_clip=True,
                embedding_directory=folder_paths.get_folder_paths("embeddings"),
            )[:3])

        # ComfyUI re-runs the node whenever the payload text changes; the same file need not be
        # read again for that (e.g. a sha256 added, or a moved file found by its hash).
        read = _named_read("HikazeCheckpointLoader", {path: label}, read)
        return _last_run(self).load([path], read)[0]


class HikazeLoraPowerLoader:
    """Apply the LoRA list chosen in the Hikaze panel, in order, with its strengths."""

    CATEGORY = CATEGORY
    # The third output came later: old workflows link only the first two, by position.
    RETURN_TYPES = ("MODEL", "CLIP", "STRING")
    RETURN_NAMES = ("Model", "CLIP", "Trigger words")
    OUTPUT_TOOLTIPS = ("", "", "Trigger words of the LoRAs applied, from the Hikaze library, "
                       "comma-separated: wire it into a prompt.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "clip": ("CLIP",),
            "hikaze_payload": ("STRING", {"multiline": True, "default": '{"version": 2, "loras": []}',
                                          "tooltip": "LoRA list, written by the Hikaze panel."}),
        }}

    def load(self, model, clip, hikaze_payload):
        import comfy.sd
        import comfy.utils

        from .hikaze_manager.services.payloads import lora_entries

        # Every file is found and checked before the first one is read: a bad entry fails fast.
        chosen = []
        labels = {}
        for index, entry in enumerate(lora_entries(hikaze_payload)):
            if not entry.enabled or (entry.strength_model == 0 and entry.strength_clip == 0):
                continue
            label = f"LoRA #{index + 1} ({entry.name or os.path.basename(entry.full_path)})"
            path = _model_file("HikazeLoraPowerLoader", label, "loras", entry.full_path, entry.sha256)
            chosen.append((path, entry))
            labels.setdefault(path, label)
        read = _named_read("HikazeLoraPowerLoader", labels,
                           lambda file: comfy.utils.load_torch_file(file, safe_load=True))
        loras = _last_run(self).load([path for path, _ in chosen], read)
        for lora, (_, entry) in zip(loras, chosen):
            model, clip = comfy.sd.load_lora_for_models(
                model, clip, lora, entry.strength_model, entry.strength_clip
            )
        return (model, clip, _trigger_words([(entry.sha256 or "", path) for path, entry in chosen]))


NODE_CLASS_MAPPINGS = {
    "HikazeCheckpointLoader": HikazeCheckpointLoader,
    "HikazeLoraPowerLoader": HikazeLoraPowerLoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HikazeCheckpointLoader": "Hikaze Checkpoint Loader",
    "HikazeLoraPowerLoader": "Hikaze LoRA Power Loader",
}

_register_with_comfyui()
