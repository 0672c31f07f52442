"""Model types and roots: injected mappings, a ComfyUI folder with extra_model_paths.yaml, a models
folder, the cache, and the registry a scan refreshes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hikaze_manager import create_app
from hikaze_manager.errors import BadRequest
from hikaze_manager.services.model_types import (
    MODEL_EXTENSIONS,
    ModelTypeRegistry,
    index_from_comfyui_dir,
    index_from_mapping,
    index_from_models_dir,
    read_cache,
    read_extra_model_paths,
    resolve_model_file,
)


def test_mapping_forms_and_extension_cleaning(tmp_path):
    index = index_from_mapping({
        "checkpoints": {"roots": ["/a", "/b"], "extensions": ["SAFETENSORS", ".ckpt", "*.bad"]},
        "loras": ["/l"],
        "vae": ("/v",),
        "custom": {"roots": "/c", "extensions": []},  # ComfyUI's empty set: every model file
        "upscale_models": (["/u"], {".pth", ".pt"}),  # folder_paths' own (dirs, extensions) tuple
        "onnx_models": {"roots": ["/o"], "extensions": [".onnx"]},
    })
    assert index.names() == ["checkpoints", "custom", "loras", "onnx_models", "upscale_models", "vae"]
    assert index.types["checkpoints"].roots == ("/a", "/b")
    assert index.types["checkpoints"].extensions == {".safetensors", ".ckpt"}
    assert index.types["loras"].extensions == MODEL_EXTENSIONS
    assert index.types["custom"].roots == ("/c",)
    assert index.types["custom"].extensions == MODEL_EXTENSIONS
    assert index.types["upscale_models"].extensions == {".pth", ".pt"}
    assert index.types["onnx_models"].extensions == {".onnx"}
    assert index.has_roots()


def test_non_model_kinds_are_not_types():
    index = index_from_mapping({
        "configs": {"roots": ["/cfg"], "extensions": [".yaml"]},
        "custom_nodes": {"roots": ["/cn"], "extensions": []},
        "classifiers": {"roots": ["/cl"], "extensions": [""]},
        "diffusers": {"roots": ["/d"], "extensions": ["folder"]},
        "notes": {"roots": ["/n"], "extensions": [".txt", ".json"]},
        "checkpoints": {"roots": ["/ck"], "extensions": [".safetensors", ".txt"]},
    })
    assert index.names() == ["checkpoints"]
    assert index.types["checkpoints"].extensions == {".safetensors"}


def test_legacy_names_merge_into_current_types():
    index = index_from_mapping({"unet": ["/u"], "diffusion_models": ["/d"], "clip": ["/c"]})
    assert index.names() == ["diffusion_models", "text_encoders"]
    assert set(index.types["diffusion_models"].roots) == {"/u", "/d"}


def test_empty_index_has_no_roots():
    assert not index_from_mapping({})
    assert not index_from_mapping({"checkpoints": []}).has_roots()


def _write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_extra_model_paths_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HIKAZE_TEST_BASE", str(tmp_path / "from_env"))
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    yaml_path = _write_yaml(comfy / "extra_model_paths.yaml", """
a111:
    base_path: ../sd-webui
    checkpoints: models/Stable-diffusion
    loras: |
        models/Lora
        models/LyCORIS
    unet: models/unet
    clip: models/clip
    configs: models/Stable-diffusion
    custom_nodes: custom
home_section:
    base_path: ~/models
    vae: vae
env_section:
    base_path: $HIKAZE_TEST_BASE
    embeddings: emb
no_base:
    upscale_models: relative/upscale
    hypernetworks: /abs/hyper
    my_custom_type: |
      one
      two
first:
    is_default: true
    base_path: /fast
    checkpoints: ckpt
empty_section:
""")
    entries = read_extra_model_paths(yaml_path)
    by_type: dict[str, list[str]] = {}
    for name, paths, _default in entries:
        by_type.setdefault(name, []).extend(paths)
    webui = os.path.normpath(tmp_path / "sd-webui")
    assert by_type["checkpoints"] == [os.path.join(webui, "models/Stable-diffusion"), "/fast/ckpt"]
    assert by_type["loras"] == [os.path.join(webui, "models/Lora"), os.path.join(webui, "models/LyCORIS")]
    assert by_type["diffusion_models"] == [os.path.join(webui, "models/unet")]
    assert by_type["text_encoders"] == [os.path.join(webui, "models/clip")]
    assert by_type["vae"] == [str(tmp_path / "home" / "models" / "vae")]
    assert by_type["embeddings"] == [str(tmp_path / "from_env" / "emb")]
    assert by_type["upscale_models"] == [str(comfy / "relative" / "upscale")]
    assert by_type["hypernetworks"] == ["/abs/hyper"]
    assert by_type["my_custom_type"] == [str(comfy / "one"), str(comfy / "two")]
    assert "configs" not in by_type and "custom_nodes" not in by_type
    assert ("checkpoints", ["/fast/ckpt"], True) in entries

    index = index_from_comfyui_dir(comfy)
    # is_default folders come first, then the standard folder, then the other extra folders.
    assert index.types["checkpoints"].roots == (
        "/fast/ckpt", str(comfy / "models" / "checkpoints"), os.path.join(webui, "models/Stable-diffusion"))
    assert index.types["diffusion_models"].roots[:2] == (
        str(comfy / "models" / "unet"), str(comfy / "models" / "diffusion_models"))
    assert "my_custom_type" in index.types
    assert "configs" not in index.types


@pytest.mark.parametrize("text", ["a: [unclosed", "- just\n- a list\n", "", "\xff"])
def test_bad_or_odd_yaml_adds_nothing(tmp_path, text):
    path = tmp_path / "extra_model_paths.yaml"
    if text == "\xff":
        path.write_bytes(b"\xff\xfe bad utf-8")
    else:
        path.write_text(text, encoding="utf-8")
    assert read_extra_model_paths(path) == []
    assert read_extra_model_paths(tmp_path / "missing.yaml") == []


def test_comfyui_dir_without_yaml_has_standard_folders(tmp_path):
    index = index_from_comfyui_dir(tmp_path)
    assert index.types["text_encoders"].roots == (
        str(tmp_path / "models" / "text_encoders"), str(tmp_path / "models" / "clip"))
    assert "custom_nodes" not in index.types


def test_models_dir_subfolders_are_types(tmp_path):
    for name in ("checkpoints", "loras", "unet", ".hidden", "configs", "custom_nodes"):
        (tmp_path / name).mkdir()
    (tmp_path / "file.txt").write_text("x")
    index = index_from_models_dir(tmp_path)
    assert index.names() == ["checkpoints", "diffusion_models", "loras"]
    assert index.types["diffusion_models"].roots == (str(tmp_path / "unet"),)
    assert not index_from_models_dir(tmp_path / "missing")


def test_registry_reads_a_callable_on_refresh_and_caches(tmp_path):
    cache = tmp_path / "types_cache.json"
    roots = {"checkpoints": {"roots": ["/one"]}}
    calls = []

    def source():
        calls.append(1)
        return roots

    registry = ModelTypeRegistry(source, None, None, cache)
    assert registry.current().types["checkpoints"].roots == ("/one",)
    assert registry.current() is registry.current()  # resolved once until refresh
    assert len(calls) == 1
    roots["loras"] = {"roots": ["/two"]}
    assert registry.refresh().names() == ["checkpoints", "loras"]
    assert len(calls) == 2
    data = json.loads(cache.read_text(encoding="utf-8"))
    assert data["paths_by_type"] == {"checkpoints": ["/one"], "loras": ["/two"]}

    # A standalone run with nothing configured knows the last types from the cache.
    standalone = ModelTypeRegistry(None, None, None, cache)
    assert standalone.current().names() == ["checkpoints", "loras"]


def test_broken_source_falls_back_to_cache(tmp_path):
    cache = tmp_path / "types_cache.json"
    ModelTypeRegistry({"vae": ["/v"]}, None, None, cache).current()

    def broken():
        raise RuntimeError("folder_paths not ready")

    assert ModelTypeRegistry(broken, None, None, cache).current().names() == ["vae"]


def test_reference_cache_is_understood(tmp_path):
    cache = tmp_path / "types_cache.json"
    cache.write_text(json.dumps({
        "version": 1,
        "types": ["checkpoints", "configs", "custom_nodes", "loras"],
        "paths_by_type": {"checkpoints": ["/c"], "configs": ["/cfg"], "custom_nodes": ["/cn"],
                          "loras": ["/l"]},
        "model_types": ["checkpoints", "loras"],
    }))
    index = read_cache(cache)
    assert index.names() == ["checkpoints", "loras"]
    assert index.types["loras"].extensions == MODEL_EXTENSIONS
    cache.write_text("not json")
    assert not read_cache(cache)


def test_get_types_reflects_injected_types(client):
    response = client.get("/api/models/get_types")
    assert response.status_code == 200
    assert response.get_json()["types"] == ["checkpoints", "loras"]


def test_scan_refreshes_types_from_models_dir(tmp_path):
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "MODELS_DIR": str(models)})
    client = app.test_client()
    assert client.get("/api/models/get_types").get_json()["types"] == ["checkpoints"]
    (models / "loras").mkdir()
    (models / "loras" / "new.safetensors").write_bytes(b"lora")
    report = client.post("/api/scan").get_json()
    assert report["added"] == 1
    assert client.get("/api/models/get_types").get_json()["types"] == ["checkpoints", "loras"]
    pending = client.get("/api/migration/pending_models").get_json()["models"]
    assert [(p["name"], p["type"]) for p in pending] == [("new.safetensors", "loras")]


def test_comfyui_dir_config_and_cache_for_next_run(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (comfy / "models" / "checkpoints" / "a.ckpt").write_bytes(b"ckpt")
    extra = tmp_path / "elsewhere" / "Lora"
    extra.mkdir(parents=True)
    (extra / "l.safetensors").write_bytes(b"lora")
    (comfy / "extra_model_paths.yaml").write_text(
        f"mine:\n    base_path: {tmp_path / 'elsewhere'}\n    loras: Lora\n", encoding="utf-8")
    data_dir = tmp_path / "data"
    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir), "COMFYUI_DIR": str(comfy)})
    report = app.test_client().get("/api/scan").get_json()
    assert report["added"] == 2
    # Next run without any configuration: the cached roots are still known.
    later = create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    types = later.test_client().get("/api/models/get_types").get_json()["types"]
    assert "checkpoints" in types and "loras" in types


def test_resolve_model_file(tmp_path):
    root = tmp_path / "ckpt"
    root.mkdir()
    inside = root / "a.safetensors"
    inside.write_bytes(b"x")
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    (root / "escape.safetensors").symlink_to(outside)
    index = index_from_mapping({"checkpoints": [str(root)]})
    assert resolve_model_file(str(root / "sub" / ".." / "a.safetensors"), index) == str(inside)
    for bad in (str(outside), str(root / "escape.safetensors"), str(root / "missing.safetensors"),
                "", "a\x00b"):
        with pytest.raises(BadRequest):
            resolve_model_file(bad, index)
