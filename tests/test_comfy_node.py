"""comfy_node outside ComfyUI: importing is cheap and side-effect free; payloads parse strictly."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hikaze_manager.services.payloads import PayloadError, checkpoint_path, lora_entries

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
    assert comfy_node.HikazeLoraPowerLoader.RETURN_TYPES == ("MODEL", "CLIP")
    assert set(comfy_node.HikazeLoraPowerLoader.INPUT_TYPES()["required"]) == {
        "model", "clip", "hikaze_payload"}
    assert not any(t.name == "hikaze-startup" for t in threading.enumerate())


def test_checkpoint_payload():
    assert checkpoint_path('{"ckpt_path": " /m/a.safetensors "}') == "/m/a.safetensors"
    for bad, words in [("", "no checkpoint"), ('{"ckpt_path": ""}', "empty"),
                       ("[1]", "object"), ("{oops", "not valid JSON")]:
        with pytest.raises(PayloadError, match=words):
            checkpoint_path(bad)


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
    ('[{"full_path": "/a", "strength_model": 1, "strength_clip": 1, "enabled": "yes"}]', "enabled"),
    ('[{"strength_model": 1, "strength_clip": 1}]', "no full_path"),
    ('[1]', "not an object"),
    ('"text"', "object or a list"),
])
def test_lora_payload_errors_name_the_problem(payload, words):
    with pytest.raises(PayloadError, match=words):
        lora_entries(payload)
