"""comfy_node outside ComfyUI: importing is cheap and side-effect free; payloads parse strictly."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hikaze_manager.services.payloads import (
    CheckpointChoice,
    PayloadError,
    checkpoint_choice,
    checkpoint_path,
    lora_entries,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_import_outside_comfyui_starts_nothing_and_imports_no_server():
    code = (
        "import sys, threading, comfy_node;"
        "print(sorted(comfy_node.NODE_CLASS_MAPPINGS), threading.active_count(),"
        " 'flask' in sys.modules, 'waitress' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["['HikazeCheckpointLoader',", "'HikazeLoraPowerLoader']", "1", "False", "False"]


def test_node_classes_follow_the_classic_api():
    import comfy_node

    for node_id, cls in comfy_node.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("Hikaze")
        assert node_id in comfy_node.NODE_DISPLAY_NAME_MAPPINGS
        inputs = cls.INPUT_TYPES()["required"]
        assert inputs["hikaze_payload"][0] == "STRING"
        assert inputs["hikaze_payload"][1]["multiline"] is True
        assert callable(getattr(cls, cls.FUNCTION))
    assert comfy_node.HikazeCheckpointLoader.RETURN_TYPES == ("MODEL", "CLIP", "VAE")
    # Old workflows link the LoRA node's outputs by position: the trigger words come third.
    assert comfy_node.HikazeLoraPowerLoader.RETURN_TYPES == ("MODEL", "CLIP", "STRING")
    assert comfy_node.HikazeLoraPowerLoader.RETURN_NAMES[:2] == ("Model", "CLIP")
    assert len(comfy_node.HikazeLoraPowerLoader.OUTPUT_TOOLTIPS) == 3
    assert set(comfy_node.HikazeLoraPowerLoader.INPUT_TYPES()["required"]) == {
        "model", "clip", "hikaze_payload"}
    assert not any(t.name == "hikaze-startup" for t in threading.enumerate())


def test_checkpoint_payload():
    assert checkpoint_path('{"ckpt_path": " /m/a.safetensors "}') == "/m/a.safetensors"
    for bad, words in [("", "no checkpoint"), ('{"ckpt_path": ""}', "empty"),
                       ("[1]", "object"), ("{oops", "not valid JSON")]:
        with pytest.raises(PayloadError, match=words):
            checkpoint_path(bad)


def test_checkpoint_payload_with_and_without_sha256():
    sha = "AB" * 32
    assert checkpoint_choice(f'{{"ckpt_path": "/m/a.ckpt", "sha256": " {sha} ", "name": " A "}}') == \
        CheckpointChoice("/m/a.ckpt", sha.lower(), "A")
    assert checkpoint_choice('{"ckpt_path": "a.ckpt"}') == CheckpointChoice("a.ckpt", "", "")
    assert checkpoint_choice('{"ckpt_path": "a.ckpt", "sha256": 5, "name": null}') == \
        CheckpointChoice("a.ckpt", "", "")


def test_a_missing_strength_means_one_and_errors_read_cleanly_in_comfyui():
    entries = lora_entries('[{"full_path": "a"}, {"full_path": "b", "strength_clip": 0.25}]')
    assert [(e.strength_model, e.strength_clip, e.enabled) for e in entries] == [
        (1.0, 1.0, True), (1.0, 0.25, True)]
    # ComfyUI names an error's type "<module>.<qualname>"; ours would include the install folder.
    assert (PayloadError.__module__, PayloadError.__qualname__) == ("hikaze", "PayloadError")


def test_lora_payload_canonical_and_aliases():
    document = {"version": 2, "loras": [
        {"name": "a", "full_path": "/l/a.safetensors", "strength_model": 1.0, "strength_clip": 0.5,
         "sha256": " ABC ", "enabled": True},
        {"path": "b.safetensors", "MStrength": "0.7", "CStrength": 1, "toggleOn": False},
    ]}
    entries = lora_entries(json.dumps(document))
    assert [(e.full_path, e.strength_model, e.strength_clip, e.enabled, e.sha256) for e in entries] == [
        ("/l/a.safetensors", 1.0, 0.5, True, "abc"),
        ("b.safetensors", 0.7, 1.0, False, ""),
    ]
    assert lora_entries(json.dumps(document["loras"][:1]))[0].name == "a"
    assert lora_entries("") == []
    assert lora_entries('{"version": "1", "LoRAs": []}') == []


@pytest.mark.parametrize("payload, words", [
    ("{not json", "not valid JSON"),
    ('{"version": 3, "loras": []}', "version"),
    ('{"loras": {}}', "must be a list"),
    ('[{"full_path": "/a", "strength_model": true, "strength_clip": 1}]', "#1 needs a numeric"),
    ('[{"full_path": "/a", "strength_model": "x", "strength_clip": 1}]', "non-numeric"),
    ('[{"full_path": "/a", "strength_model": 1%s}]' % ("0" * 400), "#1 has a non-finite"),
    ('[{"full_path": "/a", "strength_clip": NaN}]', "#1 has a non-finite strength_clip"),
    ('[{"full_path": "/a", "strength_model": "-Infinity"}]', "#1 has a non-finite"),
    ('[{"full_path": "/a", "strength_model": [1]}]', "non-numeric"),
    ('[{"full_path": "/a", "strength_model": 1, "strength_clip": 1, "enabled": "yes"}]', "enabled"),
    ('[{"strength_model": 1, "strength_clip": 1}]', "no full_path"),
    ('[1]', "not an object"),
    ('"text"', "object or a list"),
])
def test_lora_payload_errors_name_the_problem(payload, words):
    with pytest.raises(PayloadError, match=words):
        lora_entries(payload)


# ------------------------------------------------------------------------------------------------
# WEB_DIRECTORY and the server wiring, loaded the way ComfyUI loads a custom-node package


# ComfyUI's load_custom_node: the folder's __init__.py under a module name made from its path.
LOAD_AS_COMFYUI = """
import importlib.util, os, sys
folder = sys.argv[1]
name = folder.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(
    name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
package = importlib.util.module_from_spec(spec)
sys.modules[name] = package
spec.loader.exec_module(package)
"""


def test_web_directory_holds_only_the_comfyui_script():
    import comfy_node

    assert comfy_node.WEB_DIRECTORY == "./static/comfyui"
    web = (PROJECT_ROOT / comfy_node.WEB_DIRECTORY).resolve()
    files = sorted(p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file())
    # ComfyUI injects every .js under it into its page: nothing of the panel may live there.
    pattern = r"^\s*import\b[^;]*?from\s+[\"']([^\"']+)[\"']"
    expected = {
        "hikaze_nodes.js": ["../../scripts/app.js", "./hikaze_payload.js", "./hikaze_port.js",
                            "./hikaze_summary.js"],
        # ComfyUI imports these on their own too: they must only export
        "hikaze_payload.js": [],
        "hikaze_port.js": ["../../scripts/api.js"],
        "hikaze_summary.js": ["./hikaze_payload.js"],
    }
    assert files == sorted(expected)
    for name, imports in expected.items():
        source = (web / name).read_text(encoding="utf-8")
        assert re.findall(pattern, source, re.M) == imports
        assert "innerHTML" not in source and "eval(" not in source
        assert ("registerExtension" in source) == (name == "hikaze_nodes.js")


def test_package_exports_web_directory_to_comfyui():
    code = LOAD_AS_COMFYUI + (
        "print(package.WEB_DIRECTORY, os.path.isdir(os.path.join(folder, package.WEB_DIRECTORY)),"
        " sorted(package.NODE_CLASS_MAPPINGS))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(PROJECT_ROOT)], cwd="/",
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["./static/comfyui", "True", "['HikazeCheckpointLoader',", "'HikazeLoraPowerLoader']"]


def test_comfyui_origins():
    from comfy_node import comfyui_origins

    loopback = ["http://127.0.0.1:8188", "http://localhost:8188", "http://[::1]:8188"]
    assert comfyui_origins("127.0.0.1", 8188) == loopback
    assert comfyui_origins("0.0.0.0,::", 8188) == loopback
    assert comfyui_origins("::1", 8188) == loopback
    assert comfyui_origins("192.168.1.5, fe80::1 ,Studio.LAN", 8000) == [
        "http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000",
        "http://192.168.1.5:8000", "http://[fe80::1]:8000", "http://studio.lan:8000"]
    assert comfyui_origins("127.0.0.1", 8443, tls=True)[0] == "https://127.0.0.1:8443"


# Stand-ins for ComfyUI's own modules (no ComfyUI here): its CLI arguments and folder_paths.
FAKE_COMFY_ARGS = """
from types import SimpleNamespace
args = SimpleNamespace(listen={listen!r}, port={port}, tls_keyfile=None, tls_certfile=None)
"""
FAKE_FOLDER_PATHS = """
supported_pt_extensions = {{".safetensors", ".ckpt"}}
folder_names_and_paths = {{"checkpoints": ([{models!r}], supported_pt_extensions),
                          "configs": ([{models!r}], {{".yaml"}})}}
"""


def test_server_thread_trusts_the_comfyui_page_origins(tmp_path):
    """``_serve`` inside (fake) ComfyUI: the sniffer port is set and the panel may be framed by,
    and answer to, the ComfyUI page's origins."""
    fakes = tmp_path / "fakes"
    (fakes / "comfy").mkdir(parents=True)
    (fakes / "comfy" / "__init__.py").write_text("")
    with socket.socket() as s:  # a port ComfyUI "uses"; ours is the next free one after it
        s.bind(("127.0.0.1", 0))
        comfy_port = s.getsockname()[1]
    (fakes / "comfy" / "cli_args.py").write_text(
        FAKE_COMFY_ARGS.format(listen="127.0.0.1,studio.lan", port=comfy_port))
    (fakes / "folder_paths.py").write_text(FAKE_FOLDER_PATHS.format(models=str(tmp_path / "models")))
    code = LOAD_AS_COMFYUI + """
import http.client, json
node = sys.modules[name + ".comfy_node"]
node._serve()
assert node._port > 0, "the server did not start"
conn = http.client.HTTPConnection("127.0.0.1", node._port, timeout=10)
conn.request("GET", "/")
page = conn.getresponse(); page.read()
conn.request("GET", "/api/panel/config")
config = json.loads(conn.getresponse().read())
print(json.dumps({"port": node._port, "csp": page.getheader("Content-Security-Policy"),
                  "origins": config["allowed_origins"]}))
"""
    env = {**os.environ, "PYTHONPATH": str(fakes), "HIKAZE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-c", code, str(PROJECT_ROOT)], cwd=str(tmp_path),
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected = [f"http://{h}:{comfy_port}" for h in ("127.0.0.1", "localhost", "[::1]", "studio.lan")]
    assert out["origins"] == expected
    assert out["port"] > comfy_port
    # No IPv6 literal: Chromium drops it (and logs an error); the framer's Referer stands in.
    assert out["csp"].endswith("frame-ancestors 'self' " + " ".join(
        o for o in expected if "[" not in o))
