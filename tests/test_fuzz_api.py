"""Schemathesis over every operation of ``/api/openapi.json``, valid and invalid inputs: no 5xx,
every answer matches its documented status, type and schema, and no 4xx changes the database or
a file. Bounded for CI; ``HIKAZE_FUZZ_EXAMPLES=500`` (say) runs the long version."""

from __future__ import annotations

import io
import os

import pytest

import schemathesis  # requirements-dev.txt
from hypothesis import HealthCheck, settings
from PIL import Image  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hikaze_manager import create_app  # noqa: E402
from hikaze_manager.state import get_state  # noqa: E402

from snapshot_support import snapshot  # noqa: E402

EXAMPLES = int(os.environ.get("HIKAZE_FUZZ_EXAMPLES", "10"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
STATS = {"requests": 0, "5xx": 0, "4xx": 0}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 90), "green").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def fuzz_app(tmp_path, models_root):
    """A library with two models (one with a picture and tags), a pending model and its picture."""
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "MODEL_TYPES": {
        "checkpoints": {"roots": [str(models_root / "checkpoints")]},
        "loras": {"roots": [str(models_root / "loras")]}}})
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a bug is a 500 the checks see, as in production
    client = app.test_client()
    for name in ("one", "two", "three"):
        (models_root / "checkpoints" / f"{name}.safetensors").write_bytes(os.urandom(3000))
    pending = client.post("/api/scan").get_json()["pending_ids"]
    client.post("/api/migration/import_models", json={"id": pending[:2]})
    shas = [m["sha256"] for m in client.get("/api/models?type=checkpoints").get_json()["models"]]
    tags = client.post("/api/tags_add", json={"newtags": ["anime", "style"]}).get_json()["tags"]
    client.patch(f"/api/models/{shas[0]}", json={"tags": [t["id"] for t in tags]})
    client.post("/api/images/upload", data={"sha256": shas[0], "image": (io.BytesIO(_png()), "a.png")},
                content_type="multipart/form-data")
    (get_state(app).paths.pending_dir / "p.png").write_bytes(_png())
    yield app
    _settle(app)


def _settle(app) -> None:
    """Wait for background jobs a 2xx started, so the next snapshot is not taken mid-write."""
    jobs = get_state(app).jobs
    for job in jobs.list():
        jobs.wait(job.id, timeout=60)


@pytest.fixture
def api_schema(fuzz_app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)
    schema.config.generation.update(modes=list(GenerationMode), max_examples=EXAMPLES)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# schemathesis' WSGI transport does not close streamed file answers (index.html, pictures)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz_every_operation(case, fuzz_app):
    _settle(fuzz_app)
    before = snapshot(fuzz_app.config["DATA_DIR"], fuzz_app.config["DATABASE"])
    response = case.call()
    STATS["requests"] += 1
    STATS["5xx"] += response.status_code >= 500
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        STATS["4xx"] += 1
        _settle(fuzz_app)
        after = snapshot(fuzz_app.config["DATA_DIR"], fuzz_app.config["DATABASE"])
        assert after == before, (
            f"{case.method} {case.formatted_path} answered {response.status_code} "
            "but changed the library")


def test_fuzz_figures_are_reported(capsys):
    """Print the run's figures (docs/reliability.md quotes them)."""
    if not STATS["requests"]:
        pytest.skip("the fuzz run did not run in this session")
    with capsys.disabled():
        print(f"\n[fuzz] requests={STATS['requests']} 4xx={STATS['4xx']} 5xx={STATS['5xx']}")
    assert STATS["5xx"] == 0
