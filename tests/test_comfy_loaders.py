"""The loader nodes run without ComfyUI: models found by path, by model folder and by hash.

ComfyUI's own modules are stand-ins (a ``folder_paths`` that only maps folders, and ``comfy.sd`` /
``comfy.utils`` that record what they were asked to load); the package is loaded the way ComfyUI
loads it, files are real safetensors written and moved by the tests, and the library is a real
database filled by the real scan.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import struct
import sys
import types
from pathlib import Path

import pytest

from hikaze_manager import create_app
from hikaze_manager.db import connection

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "hikaze_under_test"


@pytest.fixture(scope="module")
def node_module():
    """comfy_node imported as ComfyUI imports the package (module name from the folder)."""
    spec = importlib.util.spec_from_file_location(
        PACKAGE, PROJECT_ROOT / "__init__.py", submodule_search_locations=[str(PROJECT_ROOT)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    yield sys.modules[PACKAGE + ".comfy_node"]
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]


class FakeComfy:
    """Stand-ins for ComfyUI's folder_paths, comfy.sd and comfy.utils; they count file reads."""

    def __init__(self, folders: dict[str, list[Path]]):
        self.reads: list[str] = []
        self.checkpoint_reads: list[str] = []
        self.applied: list[tuple] = []
        self.folder_paths = types.ModuleType("folder_paths")
        self.folder_paths.folder_names_and_paths = {
            name: ([str(p) for p in paths], {".safetensors"}) for name, paths in folders.items()}
        self.folder_paths.get_folder_paths = (
            lambda name: list(self.folder_paths.folder_names_and_paths[name][0]))
        self.comfy = types.ModuleType("comfy")
        self.sd = types.ModuleType("comfy.sd")
        self.utils = types.ModuleType("comfy.utils")
        self.comfy.sd, self.comfy.utils = self.sd, self.utils
        self.utils.load_torch_file = self.load_torch_file
        self.sd.load_lora_for_models = self.load_lora_for_models
        self.sd.load_checkpoint_guess_config = self.load_checkpoint

    def load_torch_file(self, path, safe_load=False):
        assert safe_load is True
        self.reads.append(path)
        return {"file": path, "header": read_header(path)}

    def load_lora_for_models(self, model, clip, lora, strength_model, strength_clip):
        self.applied.append((Path(lora["file"]).name, strength_model, strength_clip))
        return (model + [lora["file"]], clip + [lora["file"]])

    def load_checkpoint(self, path, output_vae, output_clip, embedding_directory):
        self.checkpoint_reads.append(path)
        return (f"model:{path}", f"clip:{path}", f"vae:{path}", None)

    def install(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "folder_paths", self.folder_paths)
        monkeypatch.setitem(sys.modules, "comfy", self.comfy)
        monkeypatch.setitem(sys.modules, "comfy.sd", self.sd)
        monkeypatch.setitem(sys.modules, "comfy.utils", self.utils)


def write_safetensors(path: Path, seed: str) -> str:
    """A real (tiny) safetensors file; returns its SHA-256."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "__metadata__": {"seed": seed}}).encode()
    data = struct.pack("<Q", len(header)) + header + b"\0\0\x80?"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_header(path: str) -> dict:
    with open(path, "rb") as file:
        (size,) = struct.unpack("<Q", file.read(8))
        return json.loads(file.read(size))


@pytest.fixture
def world(tmp_path, monkeypatch, node_module):
    """Model folders, a real library (its data dir is where the node looks) and the fakes."""
    models = tmp_path / "models"
    folders = {"checkpoints": [models / "checkpoints", tmp_path / "more_checkpoints"],
               "loras": [models / "loras"], "embeddings": [models / "embeddings"]}
    for paths in folders.values():
        for path in paths:
            path.mkdir(parents=True, exist_ok=True)
    fake = FakeComfy(folders)
    fake.install(monkeypatch)
    data = tmp_path / "data"
    monkeypatch.setenv("HIKAZE_DATA_DIR", str(data))
    monkeypatch.delenv("HIKAZE_DATABASE", raising=False)
    app = create_app({"TESTING": True, "DATA_DIR": str(data), "MODEL_TYPES": {
        "checkpoints": {"roots": [str(p) for p in folders["checkpoints"]]},
        "loras": {"roots": [str(p) for p in folders["loras"]]}}})
    return types.SimpleNamespace(
        tmp=tmp_path, models=models, fake=fake, app=app, client=app.test_client(),
        db=app.config["DATABASE"], node=node_module,
        lora=node_module.HikazeLoraPowerLoader(), ckpt=node_module.HikazeCheckpointLoader())


def scan(world):
    response = world.client.get("/api/scan")
    assert response.status_code == 200, response.get_json()


def lora_payload(*entries) -> str:
    return json.dumps({"version": 2, "loras": list(entries)})


def entry(path, sha="", **extra) -> dict:
    return {"name": extra.pop("name", ""), "full_path": str(path), "strength_model": 1,
            "strength_clip": 1, "sha256": sha, "enabled": True, **extra}


def type_name(exc: BaseException) -> str:
    """The error type as ComfyUI shows it (execution.py: module + qualified name)."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


# ------------------------------------------------------------------------------------------------
# Found by hash after a move


def import_all(world) -> dict:
    scan(world)
    ids = [m["id"] for m in world.client.get("/api/migration/pending_models").get_json()["models"]]
    response = world.client.post("/api/migration/import_models", json={"id": ids})
    assert response.status_code == 207
    return response.get_json()


def test_moved_lora_is_found_through_the_library_and_the_files_it_has_hashed(world, caplog):
    old = world.models / "loras" / "ink.safetensors"
    sha = write_safetensors(old, "ink")
    assert len(import_all(world)["success"]) == 1
    # Moved within the model folders: not found until a scan relinks the library entry.
    new = world.models / "loras" / "styles" / "ink.safetensors"
    new.parent.mkdir()
    os.rename(old, new)
    payload = lora_payload(entry(old, sha, name="Ink"))
    with pytest.raises(FileNotFoundError) as missing:
        world.lora.load([], [], payload)
    assert type_name(missing.value) == "hikaze.ModelNotFoundError"
    assert str(missing.value).startswith(
        f"HikazeLoraPowerLoader: LoRA #1 (Ink) not found: {old}, and the Hikaze library knows no "
        f"file with SHA-256 {sha}")
    assert world.client.get("/api/scan").get_json()["relinked"] == 1
    with caplog.at_level(logging.INFO, logger="hikaze"):
        model, clip, _words = world.lora.load([], [], payload)
    assert model == [str(new)] and clip == [str(new)]
    assert world.fake.reads == [str(new)]
    assert any(str(old) in r.message and str(new) in r.message and sha in r.message
               for r in caplog.records if r.levelno == logging.WARNING)
    # A second copy the import has hashed (it conflicted, so it stays pending): when the library's
    # own file is gone, that copy is used.
    copy = world.models / "loras" / "backup" / "ink copy.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(new.read_bytes())
    assert len(import_all(world)["conflict"]) == 1
    os.remove(new)
    assert world.lora.load([], [], payload)[0] == [str(copy)]


def test_library_path_wins_and_a_stale_hash_row_is_verified_again(world):
    old = world.tmp / "elsewhere" / "glow.safetensors"
    sha = write_safetensors(old, "glow")
    moved = world.tmp / "library" / "glow.safetensors"
    moved.parent.mkdir()
    os.rename(old, moved)
    decoy = world.tmp / "decoy.safetensors"
    write_safetensors(decoy, "not glow")
    with connection(world.db) as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, ?, 'Glow', 'loras', 1, 1)", (sha, str(moved)))
    assert world.lora.load([], [], lora_payload(entry(old, sha)))[0] == [str(moved)]
    # The library entry is gone; a scan row claims the decoy has this hash (its content changed
    # since): re-hashing refuses it, and a pending row whose file still matches is used.
    touched = world.tmp / "pending" / "glow.safetensors"
    touched.parent.mkdir()
    os.rename(moved, touched)
    with connection(world.db) as conn:
        conn.execute("DELETE FROM models")
        conn.execute("INSERT INTO file_hashes(path, size_bytes, mtime_ns, sha256, hashed_at) "
                     "VALUES (?, 1, 1, ?, 9)", (str(decoy), sha))
        conn.execute("INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at) "
                     "VALUES (?, ?, 'glow', 'loras', 1, 1)", (str(touched), sha))
    hashing = sys.modules[PACKAGE + ".hikaze_manager.services.hashing"]
    before = hashing.STATS.files
    assert world.lora.load([], [], lora_payload(entry(old, sha)))[0] == [str(touched)]
    assert hashing.STATS.files == before + 2  # the decoy and the pending file, each hashed once
    assert world.lora.load([], [], lora_payload(entry(old, sha)))[0] == [str(touched)]
    assert hashing.STATS.files == before + 2  # verified once per file state, not once per run
    # Only a decoy left: an error naming the model and its hash, nothing loaded.
    os.remove(touched)
    world.fake.reads.clear()
    with pytest.raises(FileNotFoundError, match=f"knows no file with SHA-256 {sha}"):
        world.lora.load([], [], lora_payload(entry(old, sha, name="Glow")))
    assert world.fake.reads == []


def test_checkpoint_payload_with_sha256_survives_a_move_and_old_payloads_still_load(world, caplog):
    path = world.models / "checkpoints" / "dream.safetensors"
    sha = write_safetensors(path, "dream")
    import_all(world)
    assert world.ckpt.load(json.dumps({"ckpt_path": str(path)}))[0] == f"model:{path}"
    moved = world.tmp / "more_checkpoints" / "sub" / "dream.safetensors"
    moved.parent.mkdir()
    os.rename(path, moved)
    assert world.client.get("/api/scan").get_json()["relinked"] == 1
    payload = json.dumps({"ckpt_path": str(path), "sha256": sha, "name": "Dream"})
    with caplog.at_level(logging.INFO, logger="hikaze"):
        assert world.ckpt.load(payload) == (f"model:{moved}", f"clip:{moved}", f"vae:{moved}")
    assert any(str(moved) in r.message for r in caplog.records)
    os.remove(moved)
    with pytest.raises(FileNotFoundError) as missing:
        world.ckpt.load(payload)
    assert str(missing.value).startswith(
        f"HikazeCheckpointLoader: checkpoint (Dream) not found: {path}, and the Hikaze library "
        f"knows no file with SHA-256 {sha}")


def test_no_library_at_all_is_not_found_and_says_there_is_no_library(world, monkeypatch):
    monkeypatch.setenv("HIKAZE_DATA_DIR", str(world.tmp / "no-such-data"))
    with pytest.raises(FileNotFoundError) as missing:
        world.ckpt.load(json.dumps({"ckpt_path": "/gone/x.safetensors", "sha256": "a" * 64}))
    assert type_name(missing.value) == "hikaze.ModelNotFoundError"
    assert "there is no Hikaze library at " + str(world.tmp / "no-such-data") in str(missing.value)
    assert "a" * 64 in str(missing.value)
    assert not (world.tmp / "no-such-data").exists()  # looking never creates a library


# ------------------------------------------------------------------------------------------------
# Relative paths through folder_paths


def test_relative_paths_resolve_in_the_model_folders_including_sub_folders(world, monkeypatch):
    ckpt = world.tmp / "more_checkpoints" / "sd15" / "base.safetensors"
    write_safetensors(ckpt, "base")
    lora = world.models / "loras" / "chars" / "ann.safetensors"
    write_safetensors(lora, "ann")
    monkeypatch.chdir(world.tmp)  # ComfyUI's working folder must not matter
    (world.tmp / "base.safetensors").write_bytes(ckpt.read_bytes())
    assert world.ckpt.load('{"ckpt_path": "sd15/base.safetensors"}')[0] == f"model:{ckpt}"
    assert world.ckpt.load('{"ckpt_path": "sd15\\\\base.safetensors"}')[0] == f"model:{ckpt}"
    with pytest.raises(FileNotFoundError) as missing:
        world.ckpt.load('{"ckpt_path": "base.safetensors"}')  # exists in the CWD only
    assert "in none of the checkpoints folders" in str(missing.value)
    assert str(world.models / "checkpoints") in str(missing.value)
    assert world.lora.load([], [], lora_payload(entry("chars/ann.safetensors")))[0] == [str(lora)]
    with pytest.raises(FileNotFoundError, match="in none of the loras folders"):
        world.lora.load([], [], lora_payload(entry("../../base.safetensors")))  # exists, outside


# ------------------------------------------------------------------------------------------------
# Errors that name the problem


def test_a_file_that_is_no_model_is_named_before_anything_loads(world):
    good = world.models / "loras" / "ok.safetensors"
    write_safetensors(good, "ok")
    (world.models / "loras" / "readme.txt").write_text("hello")
    (world.models / "loras" / "fake.safetensors").write_text("not a tensor file at all")
    (world.models / "loras" / "old.ckpt").write_bytes(b"nope")
    cases = [("readme.txt", "LoRA #2 (readme.txt) is not a model file ('.txt' is not a model file type)"),
             ("fake.safetensors", "LoRA #2 (fake.safetensors) is not a model file (it has no safetensors header)"),
             ("old.ckpt", "LoRA #2 (old.ckpt) is not a model file (it is neither a PyTorch archive")]
    for name, words in cases:
        with pytest.raises(ValueError) as bad:
            world.lora.load([], [], lora_payload(entry("ok.safetensors"), entry(name)))
        assert str(bad.value).startswith("HikazeLoraPowerLoader: " + words)
        assert type_name(bad.value) == "hikaze.ModelFileError"
    assert world.fake.reads == []  # checked before the first file was read
    (world.models / "checkpoints" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint \(notes.txt\) is not a model file"):
        world.ckpt.load('{"ckpt_path": "notes.txt"}')


def test_payload_errors_read_cleanly_and_a_missing_strength_means_one(world):
    with pytest.raises(ValueError) as bad:
        world.lora.load([], [], "{oops")
    assert type_name(bad.value) == "hikaze.PayloadError"
    write_safetensors(world.models / "loras" / "a.safetensors", "a")
    world.lora.load([], [], json.dumps([{"full_path": "a.safetensors"},
                                        {"full_path": "a.safetensors", "strength_clip": 0.5}]))
    assert world.fake.applied == [("a.safetensors", 1.0, 1.0), ("a.safetensors", 1.0, 0.5)]


def test_disabled_and_zero_strength_entries_are_neither_checked_nor_read(world):
    write_safetensors(world.models / "loras" / "a.safetensors", "a")
    payload = lora_payload(entry("gone.safetensors", enabled=False),
                           entry("also-gone.safetensors", strength_model=0, strength_clip=0),
                           entry("a.safetensors"))
    assert world.lora.load([], [], payload)[0] == [str(world.models / "loras" / "a.safetensors")]


# ------------------------------------------------------------------------------------------------
# Nothing read twice


def test_an_unchanged_lora_is_not_read_again_a_changed_one_is(world):
    a = world.models / "loras" / "a.safetensors"
    b = world.models / "loras" / "b.safetensors"
    write_safetensors(a, "a")
    write_safetensors(b, "b")
    both = lora_payload(entry(a), entry("b.safetensors", strength_model=0.5))
    world.lora.load([], [], both)
    world.lora.load(["other model"], [], both)  # e.g. another checkpoint upstream
    assert world.fake.reads == [str(a), str(b)]
    os.utime(b, ns=(1, 1))  # touched on disk: read again
    world.lora.load([], [], both)
    assert world.fake.reads == [str(a), str(b), str(b)]
    world.lora.load([], [], lora_payload(entry(b)))  # a run without `a` releases it
    world.lora.load([], [], both)
    assert world.fake.reads == [str(a), str(b), str(b), str(a)]
    # The same file twice in one list is read once.
    world.fake.reads.clear()
    world.node.HikazeLoraPowerLoader().load([], [], lora_payload(entry(a), entry(a, strength_model=0.3)))
    assert world.fake.reads == [str(a)]


def test_the_same_checkpoint_file_under_another_payload_is_not_read_again(world):
    path = world.models / "checkpoints" / "c.safetensors"
    sha = write_safetensors(path, "c")
    world.ckpt.load(json.dumps({"ckpt_path": str(path)}))
    world.ckpt.load(json.dumps({"ckpt_path": "c.safetensors", "sha256": sha, "name": "C"}))
    assert world.fake.checkpoint_reads == [str(path)]
    write_safetensors(path, "c, retrained")
    os.utime(path, ns=(5, 5))
    world.ckpt.load(json.dumps({"ckpt_path": str(path)}))
    assert world.fake.checkpoint_reads == [str(path), str(path)]


def test_looking_up_by_content_uses_indexes_not_table_scans(world):
    """Upgrade step _content_lookup_indexes: a lookup stays ~0.1 ms at 50k hashed files (a table
    scan took ~100 ms there), so a moved model costs a run nothing noticeable."""
    with connection(world.db) as conn:
        for table in ("models", "file_hashes", "pending_import"):
            plan = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT path FROM {table} WHERE sha256 = ?", ("a" * 64,)
            ).fetchall()
            details = " ".join(row[3] for row in plan)
            assert "USING" in details and "INDEX" in details, (table, details)


# ------------------------------------------------------------------------------------------------
# Third output: the trigger words of the LoRAs applied


def write_lora_with_trigger(path: Path, phrase: str) -> str:
    """A real safetensors LoRA whose ModelSpec header names its trigger phrase."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "__metadata__": {"modelspec.trigger_phrase": phrase,
                                          "modelspec.title": path.stem}}).encode()
    data = struct.pack("<Q", len(header)) + header + b"\0\0\x80?"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_lora_loader_outputs_the_trigger_words_of_the_applied_loras(world):
    loras = world.models / "loras"
    ink = write_lora_with_trigger(loras / "ink.safetensors", "ink style, bold lines")
    glow = write_lora_with_trigger(loras / "glow.safetensors", "glowing, bold lines")
    off = write_lora_with_trigger(loras / "off.safetensors", "never shown")
    import_all(world)
    # What the user typed wins over what the file said, and is what the node outputs.
    patched = world.client.patch(f"/api/models/{glow}", json={"trigger_words": ["neon glow", "bold lines"]})
    assert patched.status_code == 200, patched.get_json()

    assert world.node.HikazeLoraPowerLoader.RETURN_TYPES == ("MODEL", "CLIP", "STRING")
    payload = lora_payload(
        entry(loras / "ink.safetensors", ink),
        entry(loras / "off.safetensors", off, enabled=False),
        entry(loras / "glow.safetensors"),  # no sha256 in the entry: found by its path
    )
    model, clip, words = world.lora.load([], [], payload)
    assert model == [str(loras / "ink.safetensors"), str(loras / "glow.safetensors")]
    assert words == "ink style, bold lines, neon glow"


def test_trigger_words_are_empty_without_a_library_or_loras(world, tmp_path, monkeypatch):
    write_safetensors(world.models / "loras" / "plain.safetensors", "plain")
    assert world.lora.load([], [], lora_payload())[2] == ""
    monkeypatch.setenv("HIKAZE_DATA_DIR", str(tmp_path / "no-library-here"))
    model, _clip, words = world.lora.load([], [], lora_payload(entry("plain.safetensors")))
    assert model == [str(world.models / "loras" / "plain.safetensors")] and words == ""
    assert not (tmp_path / "no-library-here").exists()
class Weights(dict):
    """What a loader returned; unlike a plain dict it can be watched with a weak reference."""


def watch_loads(world, monkeypatch):
    """Make the fake loaders return Weights and record, per read, which earlier ones are alive."""
    import weakref

    seen: list = []
    alive_at_read: list[list[str]] = []

    def load_torch_file(path, safe_load=False):
        alive_at_read.append([name for name, ref in seen if ref() is not None])
        world.fake.reads.append(path)
        weights = Weights(file=path)
        seen.append((Path(path).name, weakref.ref(weights)))
        return weights

    monkeypatch.setattr(world.fake.utils, "load_torch_file", load_torch_file)
    return alive_at_read


def test_a_replaced_file_with_the_same_size_and_mtime_is_read_again(world):
    """Copies made with cp -p / rsync -t keep the mtime, and LoRAs of one shape have one size:
    (size, mtime) alone would hand back the old weights for the new file."""
    path = world.models / "loras" / "v.safetensors"
    write_safetensors(path, "v1")
    world.lora.load([], [], lora_payload(entry(path)))
    before = os.stat(path)
    fresh = world.tmp / "v.download"
    write_safetensors(fresh, "v2")
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(fresh, path)
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    world.lora.load([], [], lora_payload(entry(path)))
    assert world.fake.reads == [str(path), str(path)]
    assert read_header(world.fake.reads[-1])["__metadata__"]["seed"] == "v2"


def test_the_previous_runs_weights_are_released_before_new_ones_are_read(world, monkeypatch):
    """Holding the old LoRAs while reading the new ones would need both in memory at once."""
    alive_at_read = watch_loads(world, monkeypatch)
    a = world.models / "loras" / "a.safetensors"
    b = world.models / "loras" / "b.safetensors"
    write_safetensors(a, "a")
    write_safetensors(b, "b")
    world.lora.load([], [], lora_payload(entry(a), entry(b)))
    world.lora.load([], [], lora_payload(entry(b), entry(a, strength_model=0.2)))  # both kept
    world.lora.load([], [], lora_payload(entry(b)))
    c = world.models / "loras" / "c.safetensors"
    write_safetensors(c, "c")
    world.lora.load([], [], lora_payload(entry(c)))
    assert world.fake.reads == [str(a), str(b), str(c)]
    assert alive_at_read == [[], ["a.safetensors"], []]  # b was released before c was read


def test_two_lora_nodes_each_keep_their_own_last_run(world):
    """ComfyUI keeps one node object per node of the workflow (its LoraLoader caches on self);
    a cache shared by all nodes of a class would re-read every LoRA whenever both nodes run."""
    a = world.models / "loras" / "a.safetensors"
    b = world.models / "loras" / "b.safetensors"
    write_safetensors(a, "a")
    write_safetensors(b, "b")
    first, second = world.node.HikazeLoraPowerLoader(), world.node.HikazeLoraPowerLoader()
    for upstream in (["base"], ["other base"], ["third"]):
        first.load(upstream, [], lora_payload(entry(a)))
        second.load(upstream, [], lora_payload(entry(b)))
    assert world.fake.reads == [str(a), str(b)]


def test_the_same_lora_twice_is_read_once_and_applied_with_each_strength(world):
    a = world.models / "loras" / "a.safetensors"
    write_safetensors(a, "a")
    world.lora.load([], [], lora_payload(entry(a, strength_model=0.3, strength_clip=0.4),
                                         entry(a, strength_model=-1, strength_clip=0.5)))
    assert world.fake.reads == [str(a)]
    assert world.fake.applied == [("a.safetensors", 0.3, 0.4), ("a.safetensors", -1.0, 0.5)]


def test_a_verified_candidate_replaced_with_other_content_is_checked_again(world):
    """The in-memory digest of a candidate is keyed by the file's whole state, not (size, mtime)."""
    gone = world.tmp / "gone" / "m.safetensors"
    home = world.tmp / "lib" / "m.safetensors"
    sha = write_safetensors(home, "m1")
    with connection(world.db) as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, ?, 'M', 'loras', 1, 1)", (sha, str(home)))
    assert world.lora.load([], [], lora_payload(entry(gone, sha)))[0] == [str(home)]
    before = os.stat(home)
    other = world.tmp / "lib" / "m.part"
    write_safetensors(other, "m2")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, home)
    with pytest.raises(FileNotFoundError, match=f"knows no file with SHA-256 {sha}"):
        world.lora.load([], [], lora_payload(entry(gone, sha)))


def test_an_unreadable_library_is_named_in_the_error(world):
    """A library that cannot be read is not 'a library that knows no such file'."""
    with connection(world.db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    Path(world.db).write_bytes(b"this is not a database at all" * 200)
    sha = "b" * 64
    with pytest.raises(FileNotFoundError) as missing:
        world.lora.load([], [], lora_payload(entry(world.tmp / "gone.safetensors", sha, name="Gone")))
    text = str(missing.value)
    assert text.startswith("HikazeLoraPowerLoader: LoRA #1 (Gone) not found: ")
    assert f"the Hikaze library {world.db} could not be read" in text and sha in text
    assert Path(world.db).read_bytes().startswith(b"this is not a database")  # never repaired



def test_a_library_of_another_shape_is_named_not_taken_for_knowing_nothing(world):
    """Only a missing table (an older library) is skipped; any other failure of the lookup
    (a newer library that renamed a column, a lock) is reported, not read as 'no such file'."""
    with connection(world.db) as conn:
        conn.execute("ALTER TABLE file_hashes RENAME COLUMN path TO file_path")
    sha = "c" * 64
    with pytest.raises(FileNotFoundError) as missing:
        world.lora.load([], [], lora_payload(entry(world.tmp / "gone.safetensors", sha)))
    assert f"the Hikaze library {world.db} could not be read (no such column: path)" in str(missing.value)


def test_a_truncated_safetensors_file_is_named_before_anything_loads(world):
    """An unfinished download keeps a valid header; torch would fail later naming no file."""
    good = world.models / "loras" / "ok.safetensors"
    write_safetensors(good, "ok")
    cut = world.models / "loras" / "cut.safetensors"
    write_safetensors(cut, "cut")
    cut.write_bytes(cut.read_bytes()[:-2])
    broken = world.models / "loras" / "broken.safetensors"
    body = b"{not json at all"
    broken.write_bytes(struct.pack("<Q", len(body)) + body)
    cases = [("cut.safetensors", "LoRA #2 (cut.safetensors) is not a model file (it is truncated"),
             ("broken.safetensors", "LoRA #2 (broken.safetensors) is not a model file (its "
                                    "safetensors header is not valid")]
    for name, words in cases:
        with pytest.raises(ValueError) as bad:
            world.lora.load([], [], lora_payload(entry("ok.safetensors"), entry(name)))
        assert str(bad.value).startswith("HikazeLoraPowerLoader: " + words), str(bad.value)
        assert str(bad.value).endswith(str(world.models / "loras" / name))
    assert world.fake.reads == []
    assert world.lora.load([], [], lora_payload(entry("ok.safetensors")))[0] == [str(good)]


def test_a_file_that_fails_while_loading_is_named_and_out_of_memory_passes_through(world, monkeypatch):
    """A file that passes the checks can still fail inside torch (a corrupt archive); the error
    then names the entry and the file. Running out of memory is not the file's fault: ComfyUI
    recognises its own type to free memory and explain, so it is not wrapped."""
    good = world.models / "loras" / "ok.safetensors"
    bad = world.models / "loras" / "bad.safetensors"
    write_safetensors(good, "ok")
    write_safetensors(bad, "bad")

    class OutOfMemoryError(RuntimeError):
        pass

    failure = {"exc": RuntimeError("PytorchStreamReader failed reading zip archive")}

    def load_torch_file(path, safe_load=False):
        if path == str(bad):
            raise failure["exc"]
        return {"file": path}

    monkeypatch.setattr(world.fake.utils, "load_torch_file", load_torch_file)
    payload = lora_payload(entry(good), entry(bad, name="Bad"))
    with pytest.raises(ValueError) as broken:
        world.lora.load([], [], payload)
    assert type_name(broken.value) == "hikaze.ModelFileError"
    assert str(broken.value) == (
        "HikazeLoraPowerLoader: LoRA #2 (Bad) could not be loaded (RuntimeError: PytorchStreamReader "
        f"failed reading zip archive): {bad}")
    for exc in (OutOfMemoryError("CUDA out of memory"), MemoryError()):
        failure["exc"] = exc
        with pytest.raises(type(exc)):
            world.lora.load([], [], payload)
    ckpt = world.models / "checkpoints" / "c.safetensors"
    write_safetensors(ckpt, "c")

    def load_checkpoint(path, output_vae, output_clip, embedding_directory):
        raise KeyError("model.diffusion_model.input_blocks.0.0.weight")

    monkeypatch.setattr(world.fake.sd, "load_checkpoint_guess_config", load_checkpoint)
    with pytest.raises(ValueError, match=r"^HikazeCheckpointLoader: checkpoint \(c.safetensors\) could "
                                         r"not be loaded \(KeyError: .*\): " + str(ckpt)):
        world.ckpt.load('{"ckpt_path": "c.safetensors"}')
