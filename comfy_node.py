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
    global _port
    try:
        from .hikaze_manager import create_app
        from .hikaze_manager.server import start_server

        listen, comfy_port, tls = _comfy_address()
        origins = comfyui_origins(listen, comfy_port, tls)
        app = create_app({"MODEL_TYPES": comfy_model_types, "ALLOWED_ORIGINS": origins})
        handle = start_server(app, "127.0.0.1", comfy_port + 1)
        _port = handle.port
        logger.info("[Hikaze] Hikaze Manager is running at %s", handle.url)
    except Exception:
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

        from .hikaze_manager.services.payloads import checkpoint_path

        path = os.path.abspath(os.path.expanduser(checkpoint_path(hikaze_payload)))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"HikazeCheckpointLoader: checkpoint not found: {path}")
        out = comfy.sd.load_checkpoint_guess_config(
            path, output_vae=True, output_clip=True,
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
        )
        return out[:3]


class HikazeLoraPowerLoader:
    """Apply the LoRA list chosen in the Hikaze panel, in order, with its strengths."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL", "CLIP")
    RETURN_NAMES = ("Model", "CLIP")
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
        import folder_paths

        from .hikaze_manager.services.payloads import lora_entries

        for entry in lora_entries(hikaze_payload):
            if not entry.enabled:
                continue
            path = entry.full_path
            if not os.path.isabs(path):
                path = folder_paths.get_full_path("loras", path) or path
            if not os.path.isfile(path):
                raise FileNotFoundError(f"HikazeLoraPowerLoader: LoRA file not found: {entry.full_path}")
            lora = comfy.utils.load_torch_file(path, safe_load=True)
            model, clip = comfy.sd.load_lora_for_models(
                model, clip, lora, entry.strength_model, entry.strength_clip
            )
        return (model, clip)


NODE_CLASS_MAPPINGS = {
    "HikazeCheckpointLoader": HikazeCheckpointLoader,
    "HikazeLoraPowerLoader": HikazeLoraPowerLoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HikazeCheckpointLoader": "Hikaze Checkpoint Loader",
    "HikazeLoraPowerLoader": "Hikaze LoRA Power Loader",
}

_register_with_comfyui()
