"""Reading metadata from files: the bounded safetensors header reader, each sidecar format on real
samples, broken sidecars, preview naming rules, and the precedence / "another file" rules."""

from __future__ import annotations

import io
import json
import struct

import pytest
from PIL import Image

from hikaze_manager.services.metadata import merge, read_file_metadata, safetensors
from hikaze_manager.services.metadata.safetensors import HeaderError, read_header
from metadata_support import copy_sample, safetensors_bytes, sample_metadata, write_safetensors

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


def png_bytes(color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, "PNG")
    return buffer.getvalue()


# --- header reader ---------------------------------------------------------------------------


def test_header_of_a_real_kohya_sdxl_lora(tmp_path):
    path = tmp_path / "pepper.safetensors"
    write_safetensors(path, sample_metadata("civitai_seed_pepper_carrot_sdxl.json"))
    header = read_header(path)
    fields = safetensors.extract(header.metadata)
    assert fields["name"] == "Pepper__Carrot"
    assert fields["base_model"] == "stable-diffusion-xl-v1-base/lora"
    assert fields["resolution"] == "1024x1024"
    assert (fields["network_dim"], fields["network_alpha"]) == ("32", "32")
    tags = safetensors.training_tags(header.metadata)
    assert tags[0] == {"tag": "1girl", "count": 96}
    assert [t["count"] for t in tags] == sorted((t["count"] for t in tags), reverse=True)


def test_kohya_sd15_without_modelspec_uses_output_name_and_ss_keys(tmp_path):
    path = tmp_path / "soraka.safetensors"
    write_safetensors(path, sample_metadata("kohya_sd15_soraka_classic.json"))
    fields = safetensors.extract(read_header(path).metadata)
    assert fields["name"] == "Soraka_Classic"
    assert "base_model" not in fields and fields["kohya"] and not fields["ss_v2"]
    assert merge.base_family("", fields) == "SD1"


def test_modelspec_trigger_phrase_placeholder_title_and_thumbnail(tmp_path):
    import base64

    path = tmp_path / "m.safetensors"
    thumb = "data:image/png;base64," + base64.b64encode(png_bytes("blue")).decode()
    write_safetensors(path, {"modelspec.title": "LoRA@1700000000", "ss_output_name": "run7",
                             "modelspec.trigger_phrase": " foo, bar ,foo,, ",
                             "modelspec.architecture": "flux-1-dev/lora",
                             "modelspec.thumbnail": thumb})
    header = read_header(path)
    fields = safetensors.extract(header.metadata)
    assert fields["name"] == "run7"  # the kohya placeholder title is not a name
    assert fields["trigger_words"] == ["foo", "bar"]
    assert merge.base_family(fields["base_model"]) == "FLUX"
    assert safetensors.thumbnail_bytes(path, fields["thumbnail"]) == png_bytes("blue")
    assert safetensors.stored_metadata({"k": "x" * 70_000})["k"].startswith("<70000 characters")


def test_metadata_absent_null_empty_and_non_string_values(tmp_path):
    for raw in (None, {}):
        path = tmp_path / "a.safetensors"
        path.write_bytes(safetensors_bytes(raw_metadata=raw))
        assert read_header(path).metadata == {}
    path.write_bytes(safetensors_bytes(raw_metadata={"n": 3, "s": "x"}))
    header = read_header(path)
    assert header.metadata == {"n": "3", "s": "x"}
    assert any("non-string" in w for w in header.warnings)


@pytest.mark.parametrize("data, message", [
    (b"abc", "shorter than 8 bytes"),
    (struct.pack("<Q", 1) + b"{", "below 2"),
    (struct.pack("<Q", 2**63) + b"{}", "longer than the file"),
    (struct.pack("<Q", 500) + b"{}", "longer than the file"),
    (struct.pack("<Q", 4) + b"[1] ", "not a JSON object"),
    (struct.pack("<Q", 4) + b"{\xff} ", "not valid UTF-8"),
    (struct.pack("<Q", 4) + b"{\"a\"", "not valid JSON"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "not a safetensors"),
])
def test_hostile_or_broken_headers_give_a_clear_error(tmp_path, data, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(HeaderError, match=message):
        read_header(path)


def test_deep_json_and_oversized_header_are_refused(tmp_path):
    path = tmp_path / "deep.safetensors"
    deep = b"{\"a\":" + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path.write_bytes(struct.pack("<Q", len(deep)) + deep)
    with pytest.raises(HeaderError, match="nested"):
        read_header(path)
    shallow = b"{\"a\":" + b"[" * 20 + b"]" * 20 + b"}"
    path.write_bytes(struct.pack("<Q", len(shallow)) + shallow)
    with pytest.raises(HeaderError, match="nested deeper"):
        read_header(path)
    # A hostile length inside a big (sparse) file: refused before anything is read.
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", 100_000_000) + b"{")
        fh.truncate(200_000_000)
    with pytest.raises(HeaderError, match="over the limit"):
        read_header(path)
    big = safetensors_bytes({"k": "v" * 5000})
    path.write_bytes(big)
    with pytest.raises(HeaderError, match="over the limit"):
        read_header(path, max_header=1024)


def test_truncated_data_section_is_flagged_but_read(tmp_path):
    path = tmp_path / "partial.safetensors"
    path.write_bytes(safetensors_bytes({"ss_output_name": "x"})[:-10])
    header = read_header(path)
    assert header.metadata["ss_output_name"] == "x"
    assert any("shorter" in w for w in header.warnings)


def test_autov3_is_the_hash_of_the_bytes_after_the_header(tmp_path):
    path = tmp_path / "x.safetensors"
    _, expected = write_safetensors(path, {"a": "b"})
    assert safetensors.autov3(path) == expected
    # Editing the header in place changes the file hash but not AutoV3.
    other = tmp_path / "y.safetensors"
    _, same = write_safetensors(other, {"a": "completely different header"})
    assert same == expected
    assert safetensors.autov3(tmp_path / "missing.safetensors") is None


# --- sidecars on real samples ----------------------------------------------------------------


def test_every_sidecar_format_is_read_and_precedence_follows_the_spec(tmp_path):
    model = tmp_path / "Pencil-Sketch-Illustrious.safetensors"
    sha, _ = write_safetensors(model, sample_metadata("civitai_seed_pepper_carrot_sdxl.json"))
    copy_sample("derived/stability_matrix/Pencil-Sketch-Illustrious.cm-info.json",
                tmp_path / "Pencil-Sketch-Illustrious.cm-info.json")
    copy_sample("derived/a1111_json/Pencil-Sketch-Illustrious.json",
                tmp_path / "Pencil-Sketch-Illustrious.json")
    copy_sample("civitai_info/lm_refs_target_version_2269146.civitai.info",
                tmp_path / "Pencil-Sketch-Illustrious.civitai.info")
    copy_sample("derived/model_manager/Pencil-Sketch-Illustrious.md",
                tmp_path / "Pencil-Sketch-Illustrious.md")
    found = read_file_metadata(str(model))
    assert set(found["sidecars"]) == {"stability_matrix", "a1111", "civitai_info", "model_manager"}
    assert found["problems"] == []
    # The SM, MM and info samples carry the real model's SHA-256, not our test file's: refused.
    resolved = merge.resolve(found, sha, model.stat().st_size)
    rejected = {r["source"] for r in resolved["rejected"]}
    assert rejected == {"stability_matrix", "model_manager", "civitai_info"}
    assert resolved["values"]["name"] == "Pepper__Carrot"  # the header's, the file's own
    assert resolved["sources"] == {"name": "header", "base_model": "header",
                                   "trigger_words": "a1111", "description": "a1111"}
    assert resolved["values"]["trigger_words"] == ["PencilSketchDaal"]
    # Trusting the hash (as if the file were the real one), SM's user title wins.
    real = "2c70479cd673b0fe056eaf4fd97c7f33a39f14853805431ac9ab84226ece3b82"
    trusted = merge.resolve(found, real, None)
    assert trusted["values"]["name"] == "Pencil Sketch (my copy)"
    assert trusted["sources"]["name"] == "stability_matrix"
    assert trusted["values"]["link"] == "https://civitai.com/models/2004760?modelVersionId=2269146"
    assert merge.base_family(trusted["values"]["base_model"]) == "SDXL"


def test_lora_manager_sample_with_foreign_paths_and_fake_hash(tmp_path):
    model = tmp_path / "anime_style_lora.safetensors"
    sha, _ = write_safetensors(model, {})
    copy_sample("lora_manager/lora-civitai.metadata.json", tmp_path / "anime_style_lora.metadata.json")
    (tmp_path / "anime_style_lora.preview.png").write_bytes(png_bytes())
    found = read_file_metadata(str(model))
    fields = found["sidecars"]["lora_manager"]
    assert "sha256" not in fields or len(fields["sha256"]) == 64
    assert fields["preview"] == "anime_style_lora.preview.png"  # basename of a foreign path
    assert found["preview"] == {"file": "anime_style_lora.preview.png"}
    resolved = merge.resolve(found, sha, None)
    # LM's example sha256 is fake (valid hex but another file's): it is refused and named.
    assert [r["source"] for r in resolved["rejected"]] == ["lora_manager"]
    assert "describes another file" in resolved["rejected"][0]["reason"]
    trusted = merge.resolve(found, fields.get("sha256"), None)
    assert trusted["values"]["name"] == "Anime Style LoRA"
    assert trusted["values"]["trigger_words"] == ["anime style", "cel shading"]
    assert trusted["values"]["base_model"] == "SDXL"


@pytest.mark.parametrize("sample", ["lora-custom.metadata.json", "lora-no-triggerwords.metadata.json",
                                    "checkpoint-civitai.metadata.json",
                                    "embedding-custom.metadata.json"])
def test_every_lora_manager_sample_parses(tmp_path, sample):
    model = tmp_path / "m.safetensors"
    write_safetensors(model, {})
    copy_sample(f"lora_manager/{sample}", tmp_path / "m.metadata.json")
    found = read_file_metadata(str(model))
    assert found["problems"] == [] and "lora_manager" in found["sidecars"]


@pytest.mark.parametrize("sample", ["civitai_docs_v1318_froggy_style.civitai.info",
                                    "lm_refs_by_versionId_1387174.civitai.info",
                                    "lm_refs_version_1255556.civitai.info"])
def test_civitai_info_samples_give_name_base_model_and_link(tmp_path, sample):
    model = tmp_path / "m.safetensors"
    write_safetensors(model, {})
    copy_sample(f"civitai_info/{sample}", tmp_path / "m.civitai.info")
    found = read_file_metadata(str(model))
    fields = found["sidecars"]["civitai_info"]
    assert fields["name"] and fields["base_model"]
    assert fields["link"].startswith("https://civitai.com/models/")
    resolved = merge.resolve(found, "0" * 64, None)
    assert resolved["values"]["name"] == fields["name"]
    assert resolved["unverified"] == (["civitai_info"] if "sha256_any" in fields else [])


def test_a1111_json_samples_and_not_on_civitai_marker(tmp_path):
    model = tmp_path / "GelatoStyle.safetensors"
    write_safetensors(model, {})
    copy_sample("a1111_json/butaixianran_issue239_GelatoStyle.json", tmp_path / "GelatoStyle.json")
    copy_sample("derived/civitai_info/not_on_civitai_marker.civitai.info",
                tmp_path / "GelatoStyle.civitai.info")
    found = read_file_metadata(str(model))
    assert "civitai_info" not in found["sidecars"]  # {} means "not on CivitAI"
    a1 = found["sidecars"]["a1111"]
    assert a1["trigger_words"] == ["GelatoStyle"] and a1["base_model"] == "SD1"
    assert a1["preferred_weight"] == 0.8
    other = tmp_path / "proposal.safetensors"
    write_safetensors(other, {})
    copy_sample("a1111_json/civitai_shortcut_issue67_proposal.json", tmp_path / "proposal.json")
    fields = read_file_metadata(str(other))["sidecars"]["a1111"]
    assert "base_model" not in fields  # "1.5" is not an sd version A1111 knows
    assert "preferred_weight" not in fields  # 0 means "default"
    (tmp_path / "browser.json").write_text(json.dumps({"url": "x", "id": 3}))
    write_safetensors(tmp_path / "browser.safetensors", {})
    assert "a1111" not in read_file_metadata(str(tmp_path / "browser.safetensors"))["sidecars"]


def test_model_manager_notes_only_markdown_is_the_description(tmp_path):
    model = tmp_path / "my_style_notes_only.safetensors"
    write_safetensors(model, {})
    copy_sample("derived/model_manager/my_style_notes_only.md", tmp_path / "my_style_notes_only.md")
    fields = read_file_metadata(str(model))["sidecars"]["model_manager"]
    assert fields["description"].startswith("Trained by me on 40 watercolor scans.")


@pytest.mark.parametrize("content, problem", [
    (b'{"id":, "name": "x"}', "invalid JSON"),
    (b"\xff\xfe" + '{"model_name": "w"}'.encode("utf-16-le"), None),
    (b"\xef\xbb\xbf" + b'{"model_name": "bom"}', None),
    (b'{"model_name": "n", "size": NaN}', None),
    (b'{"model_name": "\xe9t\xe9"}', "unknown encoding"),
    (b"[" * 5000 + b"]" * 5000, "nested"),
    (b"[1, 2]", "not a JSON object"),
])
def test_broken_sidecars_are_named_and_never_raise(tmp_path, content, problem):
    model = tmp_path / "m.safetensors"
    write_safetensors(model, {})
    (tmp_path / "m.metadata.json").write_bytes(content)
    found = read_file_metadata(str(model))
    if problem is None:
        assert found["problems"] == [] and found["sidecars"]["lora_manager"]["name"]
    else:
        assert found["problems"][0]["file"] == "m.metadata.json"
        assert problem in found["problems"][0]["problem"]
        assert "lora_manager" not in found["sidecars"]


def test_fifo_sidecar_and_preview_never_block_the_read(tmp_path):
    import os

    model = tmp_path / "m.safetensors"
    write_safetensors(model, {})
    os.mkfifo(tmp_path / "m.metadata.json")
    os.mkfifo(tmp_path / "m.preview.png")
    found = read_file_metadata(str(model))
    assert found["problems"] == [{"file": "m.metadata.json", "problem": "not a regular file"}]
    assert found["preview"] is None


def test_huge_sidecar_is_refused_without_reading_it(tmp_path):
    model = tmp_path / "m.safetensors"
    write_safetensors(model, {})
    with open(tmp_path / "m.civitai.info", "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    found = read_file_metadata(str(model))
    assert "too large" in found["problems"][0]["problem"]


def test_size_claim_that_disagrees_refuses_the_sidecar(tmp_path):
    model = tmp_path / "m.safetensors"
    write_safetensors(model, {})
    (tmp_path / "m.metadata.json").write_text(json.dumps({"model_name": "Old", "size": 12345}))
    found = read_file_metadata(str(model))
    resolved = merge.resolve(found, None, model.stat().st_size)
    assert "name" not in resolved["values"] and "size 12345" in resolved["rejected"][0]["reason"]


# --- previews --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["m.preview.png", "m.png", "m.PREVIEW.JPG", "m.webp",
                                  "m.example.0.jpeg", "m.preview.gif"])
def test_preview_naming_rules(tmp_path, name):
    model = tmp_path / "m.safetensors"
    write_safetensors(model, {})
    fmt = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(buffer, fmt[name.rsplit(".", 1)[1].lower()])
    (tmp_path / name).write_bytes(buffer.getvalue())
    assert read_file_metadata(str(model))["preview"] == {"file": name}


def test_preview_order_and_magic_bytes(tmp_path):
    model = tmp_path / "m[1].safetensors"
    write_safetensors(model, {})
    (tmp_path / "m[1].preview.png").write_bytes(b"<html>not a picture</html>")
    (tmp_path / "m[1].png").write_bytes(png_bytes())
    (tmp_path / "m[1].example.0.png").write_bytes(png_bytes("blue"))
    assert read_file_metadata(str(model))["preview"] == {"file": "m[1].png"}


def test_autov3_comes_from_the_same_pass_as_the_sha256_and_is_cached(tmp_path, db_conn):
    import hashlib

    from hikaze_manager.services import hashing

    model = tmp_path / "big.safetensors"
    sha, expected = write_safetensors(model, {"a": "b"}, tensor_bytes=b"\x07" * (3 * 1024 * 1024 + 5))
    other = tmp_path / "random.safetensors"
    other.write_bytes(b"\x00" * 5000)
    before = hashing.STATS.files
    results = hashing.hash_files(db_conn, [str(model), str(other)], autov3=True)
    assert (results[str(model)].sha256, results[str(model)].autov3) == (sha, expected)
    assert results[str(other)].sha256 == hashlib.sha256(b"\x00" * 5000).hexdigest()
    assert results[str(other)].autov3 == ""  # not a safetensors layout, known as such
    assert hashing.STATS.files == before + 2  # one read of each file, not two
    again = hashing.hash_files(db_conn, [str(model), str(other)], autov3=True)
    assert again[str(model)].cached and again[str(model)].autov3 == expected
    assert hashing.STATS.files == before + 2
