"""Crash test: a real server process, SIGKILLed at random moments during every kind of write.

Each round starts ``python -m hikaze_manager`` on the same data folder (start-up runs the
recovery), checks the folder and the database, then runs one kind of write (PATCH, tags, upload,
delete, scan, promotion, legacy migration) from a client thread and kills the server at a random
moment. Every picture is a solid colour of its own, so a set whose tiers come from two pictures
shows as two colours. ``HIKAZE_CRASH_KILLS`` sets the number of kills (default 30);
``HIKAZE_CRASH_SEED`` the random seed; ``HIKAZE_CRASH_KINDS`` (e.g. ``delete,legacy``) the kinds
of write, in turn. See docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from legacy_v1 import V1Library
from PIL import Image

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL needs POSIX")

ROOT = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("HIKAZE_CRASH_KILLS", "30"))
SEED = int(os.environ.get("HIKAZE_CRASH_SEED", str(random.SystemRandom().randrange(10**6))))
ALL_KINDS = ("legacy", "scan", "promotion", "upload", "patch", "delete", "tags")
KINDS = tuple(k for k in os.environ.get("HIKAZE_CRASH_KINDS", ",".join(ALL_KINDS)).split(",")
              if k in ALL_KINDS) or ALL_KINDS
LEVELS = (20, 70, 120, 170, 220)  # colour channel values, far apart for lossy WebP
TOLERANCE = 12
SET_NAME = re.compile(r"([0-9a-f]{64})_([0-9]+)_(high|medium|low)\.webp\Z")


def colour(n: int) -> tuple[int, int, int]:
    n %= len(LEVELS) ** 3
    return LEVELS[n % 5], LEVELS[n // 5 % 5], LEVELS[n // 25]


def png(rgb) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), rgb).save(buffer, "PNG")
    return buffer.getvalue()


def snap(rgb) -> tuple[int, int, int] | None:
    """The palette colour a decoded pixel stands for, or None if it is none of them."""
    out = []
    for value in rgb[:3]:
        level = min(LEVELS, key=lambda lv: abs(lv - value))
        if abs(level - value) > TOLERANCE:
            return None
        out.append(level)
    return tuple(out)


class Server:
    """One ``python -m hikaze_manager`` process on the shared data folder."""

    def __init__(self, data_dir: Path, models_dir: Path, log: Path):
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hikaze_manager", "--data-dir", str(data_dir),
             "--models-dir", str(models_dir), "--port", "0", "--threads", "4"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        self.port = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            found = re.search(r"running at http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
                break
        if self.port is None:
            self.kill()
            raise AssertionError(f"server did not start; see {log}")

    def request(self, method: str, path: str, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        finally:
            conn.close()

    def json(self, method: str, path: str, payload=None):
        body = None if payload is None else json.dumps(payload).encode()
        return self.request(method, path, body, {"Content-Type": "application/json"})

    def upload(self, sha: str, data: bytes):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"sha256\"\r\n\r\n{sha}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                f"filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
            f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", "/api/images/upload", body,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()
        self.log.close()


class World:
    """The data folder, the model files, the v1 libraries and what every answered write promised."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.models = root / "models"
        for folder in ("checkpoints", "loras"):
            (self.models / folder).mkdir(parents=True)
        self.log = root / "server.log"
        self.colours = 0
        self.sets: dict[str, list] = {}      # sha -> colours of its sets, as last verified
        self.known: dict[str, tuple] = {}    # sha -> the one picture it must show (legacy/promoted)
        self.file_colour: dict[str, tuple] = {}  # model file path -> colour of its v1 picture
        self.libraries: list[dict] = []
        self.names: dict[str, set] = {}      # sha -> acceptable names
        self.tag_sets: dict[str, list] = {}  # sha -> acceptable tag-id sets
        self.tag_names: set[str] = set()     # answered tags_add
        self.targets: list[str] = []         # models uploads, deletes and PATCHes use
        self.stats = {"kills": 0, "restarts": 0, "answered": 0, "checks": 0}

    def next_colour(self):
        self.colours += 1
        return colour(self.colours)

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.data / "hikaze_model_manager.db", timeout=15)
        conn.row_factory = sqlite3.Row
        return conn

    def new_library(self, rows: int = 4) -> dict:
        """A v1 library: rows with a hash (library entries) and without (pending), each pictured."""
        n = len(self.libraries)
        lib = V1Library(self.root / f"v1-{n}" / "data")
        entry = {"db": str(lib.db_path), "answered": False, "models": [], "files": []}
        for i in range(rows):
            rgb = self.next_colour()
            if i % 2 == 0:
                sha = hashlib.sha256(f"v1 {n} {i}".encode()).hexdigest()
                lib.add_model(f"/elsewhere/checkpoints/m{n}-{i}.safetensors", hash_hex=sha,
                              image=png(rgb))
                entry["models"].append(sha)
                self.known[sha] = rgb
            else:
                path = self.models / "loras" / f"v1-{n}-{i}.safetensors"
                path.write_bytes(os.urandom(2048))
                lib.add_model(str(path), image=png(rgb))
                entry["files"].append(str(path))
                self.file_colour[str(path)] = rgb
        lib.close()
        self.libraries.append(entry)
        return entry

    # -- checks after every restart

    def verify(self) -> dict[str, list]:
        """The invariants; returns the sets found (sha -> colours)."""
        self.stats["checks"] += 1
        with self.db() as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            assert conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0
            library = {r[0] for r in conn.execute("SELECT sha256 FROM models")}
        for folder in (self.data, self.data / "images", self.data / "images" / "pending"):
            leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".hikaze-")]
            assert leftovers == [], f"temporary or journal files left in {folder}: {leftovers}"
        tiers: dict[str, dict[int, set]] = {}
        for path in (self.data / "images").iterdir():
            match = SET_NAME.match(path.name)
            if match:
                tiers.setdefault(match.group(1), {}).setdefault(int(match.group(2)), set()).add(
                    match.group(3))
        found = {}
        for sha, seqs in tiers.items():
            assert sha in library, f"orphan picture set for {sha[:12]} (not in the library)"
            assert sorted(seqs) == list(range(len(seqs))), f"sets of {sha[:12]}: {sorted(seqs)}"
            colours = []
            for seq in range(len(seqs)):
                assert seqs[seq] == {"high", "medium", "low"}, f"{sha[:12]}_{seq}: {seqs[seq]}"
                shown = set()
                for tier in ("high", "medium", "low"):
                    with Image.open(self.data / "images" / f"{sha}_{seq}_{tier}.webp") as im:
                        rgb = im.convert("RGB")
                        shown.add(snap(rgb.getpixel((rgb.width // 2, rgb.height // 2))))
                assert len(shown) == 1 and None not in shown, \
                    f"set {sha[:12]}_{seq} is made of several pictures: {shown}"
                colours.append(shown.pop())
            found[sha] = colours
        for sha in library & set(self.known):
            assert found.get(sha) == [self.known[sha]], \
                f"{sha[:12]} must show its one picture, has {found.get(sha)}"
        return found


def one_of(actual, *accepted):
    assert actual in accepted, f"{actual!r} is none of {accepted!r}"


class Round:
    """One kind of write, run until the kill; remembers answered writes and the one in flight."""

    def __init__(self, world: World, server: Server, kind: str, rng: random.Random):
        self.world, self.server, self.kind, self.rng = world, server, kind, rng
        self.answered: list = []
        self.in_flight = None
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            getattr(self, "_" + self.kind)()
        except (OSError, http.client.HTTPException):
            pass  # the kill
        except BaseException as exc:  # e.g. a 5xx: reported by the main thread
            self.error = exc

    def _call(self, op, fn, *args):
        self.in_flight = op
        status, body = fn(*args)
        assert status < 500, (self.kind, status, body)
        self.in_flight = None
        self.answered.append((op, status, body))
        self.world.stats["answered"] += 1
        return status, body

    def _patch(self):
        w = self.world
        while not self.stop.is_set():
            sha, name = self.rng.choice(w.targets), f"name-{uuid.uuid4().hex[:8]}"
            self._call(("name", sha, name), self.server.json, "PATCH", f"/api/models/{sha}",
                       {"name": name})

    def _tags(self):
        w = self.world
        while not self.stop.is_set():
            names = [f"tag-{uuid.uuid4().hex[:6]}" for _ in range(self.rng.randint(1, 3))]
            _, body = self._call(("tags_add", names), self.server.json, "POST", "/api/tags_add",
                                 {"newtags": names})
            ids = sorted(t["id"] for t in body["tags"])
            sha = self.rng.choice(w.targets)
            self._call(("tags", sha, ids), self.server.json, "PATCH", f"/api/models/{sha}",
                       {"tags": ids})

    def _upload(self):
        while not self.stop.is_set():
            sha, rgb = self.rng.choice(self.world.targets), self.world.next_colour()
            self._call(("upload", sha, rgb), self.server.upload, sha, png(rgb))

    def _delete(self):
        sets = {sha: list(self.world.sets.get(sha, [])) for sha in self.world.targets}
        while not self.stop.is_set():
            candidates = [sha for sha, colours in sets.items() if colours]
            if not candidates:
                return
            sha = self.rng.choice(candidates)
            seq = self.rng.randrange(len(sets[sha]))
            status, _ = self._call(("delete", sha, seq), self.server.request, "DELETE",
                                   f"/api/images/delete?sha256={sha}&seq={seq}")
            assert status == 200
            sets[sha].pop(seq)

    def _scan(self):
        for i in range(self.rng.randint(1, 4)):
            path = self.world.models / "checkpoints" / f"scan-{uuid.uuid4().hex[:8]}.safetensors"
            path.write_bytes(os.urandom(1024 + i))
        self._call(("scan",), self.server.json, "POST", "/api/scan", {})

    def _promotion(self):
        with self.world.db() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM pending_import ORDER BY id")]
        if ids:
            self._call(("promotion", ids), self.server.json, "POST",
                       "/api/migration/import_models", {"id": ids})

    def _legacy(self):
        w = self.world
        todo = [lib for lib in w.libraries if not lib["answered"]]
        if todo:
            lib = todo[0]  # retry the interrupted one until it answers
        elif w.libraries and self.rng.random() < 0.3:
            lib = self.rng.choice(w.libraries)  # a re-run must change nothing
        else:
            lib = w.new_library()
        status, body = self._call(("legacy", lib), self.server.json, "POST",
                                  "/api/migration/migrate_legacy_db", {"legacy_db_path": lib["db"]})
        assert status == 200, body
        lib["answered"] = True

    # -- after the restart

    def check(self, found: dict[str, list]) -> None:
        w = self.world
        with w.db() as conn:
            models = {r["sha256"]: dict(r) for r in conn.execute("SELECT * FROM models")}
            pending = {r["id"]: r["path"] for r in conn.execute("SELECT id, path FROM pending_import")}
            tag_names = {r[0] for r in conn.execute("SELECT name FROM tags")}
            model_tags = {}
            for sha, tag_id in conn.execute("SELECT model_hash, tag_id FROM model_tags"):
                model_tags.setdefault(sha, []).append(tag_id)
        expected_sets = {sha: list(c) for sha, c in w.sets.items()}
        for op, _, _ in self.answered:
            if op[0] == "name":
                w.names[op[1]] = {op[2]}
            elif op[0] == "tags":
                w.tag_sets[op[1]] = [op[2]]
            elif op[0] == "tags_add":
                w.tag_names.update(op[1])
            elif op[0] == "upload":
                expected_sets.setdefault(op[1], []).append(op[2])
            elif op[0] == "delete":
                expected_sets[op[1]].pop(op[2])
        if self.in_flight and self.in_flight[0] == "name":
            names = w.names.setdefault(self.in_flight[1], set())
            accepted = names | {self.in_flight[2]}
            one_of(models[self.in_flight[1]]["name"], *accepted)
            w.names[self.in_flight[1]] = {models[self.in_flight[1]]["name"]}
        if self.in_flight and self.in_flight[0] == "tags":
            sha = self.in_flight[1]
            accepted = [*w.tag_sets.get(sha, []), self.in_flight[2]]
            one_of(sorted(model_tags.get(sha, [])), *accepted)
            w.tag_sets[sha] = [sorted(model_tags.get(sha, []))]
        for sha, names in w.names.items():
            one_of(models[sha]["name"], *names)
        for sha, sets in w.tag_sets.items():
            one_of(sorted(model_tags.get(sha, [])), *sets)
        assert w.tag_names <= tag_names, w.tag_names - tag_names
        for sha in w.targets:
            want = expected_sets.get(sha, [])
            accepted = [want]
            if self.in_flight and self.in_flight[0] == "upload" and self.in_flight[1] == sha:
                accepted.append(want + [self.in_flight[2]])
            if self.in_flight and self.in_flight[0] == "delete" and self.in_flight[1] == sha:
                accepted.append(want[: self.in_flight[2]] + want[self.in_flight[2] + 1:])
            one_of(found.get(sha, []), *accepted)
        for op, _, body in self.answered:
            if op[0] == "scan":
                assert set(body["pending_ids"]) <= set(pending), "an answered scan row is gone"
            if op[0] == "promotion":
                assert not set(body["success"]) & set(pending), "an answered promotion undone"
            if op[0] == "legacy":
                assert set(op[1]["models"]) <= set(models), "an answered migration is missing"
        for lib in w.libraries:  # one transaction: all of a library or none of it
            present = [sha in models for sha in lib["models"]]
            assert all(present) or not any(present), "a migration applied in part"
        paths = {m["path"]: sha for sha, m in models.items()}
        answered_files = {f for lib in w.libraries if lib["answered"] for f in lib["files"]}
        for path, rgb in w.file_colour.items():  # promoted from a pictured pending row
            sha = paths.get(path)
            if sha is None:
                continue
            # Promoted from a scan's row before its v1 picture came over: none yet.
            accepted = [[rgb]] if path in answered_files else [[rgb], []]
            one_of(found.get(sha, []), *accepted)
            if found.get(sha):
                w.known[sha] = rgb
        assert len(set(pending.values())) == len(pending)


def test_sigkill_during_every_kind_of_write_loses_nothing_answered(tmp_path):
    rng = random.Random(SEED)
    world = World(tmp_path)
    print(f"crash test: seed {SEED}, {KILLS} kills")
    server = Server(world.data, world.models, world.log)
    try:  # the models uploads, deletes and PATCHes use, each with two pictures
        lib = V1Library(tmp_path / "v1-base" / "data")
        base = [hashlib.sha256(f"base {i}".encode()).hexdigest() for i in range(4)]
        for i, sha in enumerate(base):
            lib.add_model(f"/elsewhere/loras/base{i}.safetensors", hash_hex=sha)
        lib.close()
        assert server.json("POST", "/api/migration/migrate_legacy_db",
                           {"legacy_db_path": str(lib.db_path)})[0] == 200
        for sha in base:
            for _ in range(2):
                rgb = world.next_colour()
                assert server.upload(sha, png(rgb))[0] == 200
                world.sets.setdefault(sha, []).append(rgb)
        world.targets = base
    finally:
        server.kill()
    with world.db() as conn:
        for sha in base:
            world.names[sha] = {conn.execute(
                "SELECT name FROM models WHERE sha256 = ?", (sha,)).fetchone()[0]}
            world.tag_sets[sha] = [sorted(r[0] for r in conn.execute(
                "SELECT tag_id FROM model_tags WHERE model_hash = ?", (sha,)))]
    started = time.monotonic()
    previous = None
    for n in range(KILLS + 1):
        server = Server(world.data, world.models, world.log)
        world.stats["restarts"] += 1
        try:
            found = world.verify()  # the start-up recovery has run
            if previous is not None:
                previous.check(found)
        except AssertionError as exc:
            server.kill()
            raise AssertionError(f"after kill {n} during {previous.kind} (seed {SEED}): "
                                 f"{exc}") from None
        world.sets = {sha: found.get(sha, []) for sha in world.targets}
        if n == KILLS:
            server.kill()
            break
        previous = Round(world, server, KINDS[n % len(KINDS)], rng)
        thread = threading.Thread(target=previous.run, daemon=True)
        try:
            thread.start()
            time.sleep(rng.uniform(0.01, 0.5))
            previous.stop.set()
        finally:
            server.kill()
        world.stats["kills"] += 1
        world.stats.setdefault("in_flight_at_kill", 0)
        thread.join(30)
        if previous.in_flight is not None:
            world.stats["in_flight_at_kill"] += 1
        assert not thread.is_alive()
        assert previous.error is None, f"{previous.kind}: {previous.error!r}"
    elapsed = time.monotonic() - started
    print(f"crash test: {world.stats} in {elapsed:.1f} s")
    assert world.stats["kills"] == KILLS
