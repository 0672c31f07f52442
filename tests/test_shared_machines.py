"""Machines of one shared library (issue 10): what one machine's tag counts must include of the
others, one machine name per live server, and a role or standby that may only read."""

from __future__ import annotations

import pytest

from hikaze_manager.state import get_state

from metadata_support import write_safetensors
from test_shared_library import machines  # noqa: F401 (fixture)


def link_pending_tag(machine, tag_id: int) -> int:
    """Tag ``machine``'s one pending model (as its legacy migration would): the pending id."""
    pending = machine.ok("GET", "/api/migration/pending_models")["models"]
    with get_state(machine.app).store.connection() as conn:
        conn.execute("INSERT INTO pending_model_tags(model_id, tag_id) VALUES (?, ?)",
                     (pending[0]["id"], tag_id))
    return pending[0]["id"]


@pytest.fixture
def tag_pending_on_b(machines):  # noqa: F811 (the fixture imported above)
    """Machine B has one pending model carrying tag ``legacy``, made on A; the tag's id."""
    write_safetensors(machines.b.models / "loras" / "p.safetensors", {"seed": "p"})
    assert machines.b.scan()["added"] == 1
    tag = machines.a.ok("POST", "/api/tags_add", {"newtags": ["legacy"]})["tags"][0]["id"]
    link_pending_tag(machines.b, tag)
    return tag


def test_tag_usage_counts_every_machines_pending_models(machines, tag_pending_on_b):
    usage = {"id": tag_pending_on_b, "name": "legacy", "models": 0, "pending": 1}
    assert machines.a.ok("GET", "/api/tags/usage")["tags"] == [usage]
    assert machines.b.ok("GET", "/api/tags/usage")["tags"] == [usage]


def test_dry_run_delete_shows_the_pending_links_it_would_remove_on_other_machines(
        machines, tag_pending_on_b):
    a, b = machines.a, machines.b
    dry = a.ok("POST", "/api/tags/delete", {"id": [tag_pending_on_b], "dry_run": True})
    assert dry["deleted"] == [{"id": tag_pending_on_b, "name": "legacy", "models": 0, "pending": 1}]
    done = a.ok("POST", "/api/tags/delete", {"id": [tag_pending_on_b]})
    assert done["deleted"] == dry["deleted"] and done["dry_run"] is False
    assert b.ok("GET", "/api/migration/pending_models")["models"][0]["tags"] == []


def test_merge_and_rename_count_and_move_every_machines_pending_links(machines, tag_pending_on_b):
    a, b = machines.a, machines.b
    other = a.ok("POST", "/api/tags_add", {"newtags": ["other"]})["tags"][0]["id"]
    merged = a.ok("POST", "/api/tags/merge", {"source": [tag_pending_on_b], "target": other,
                                              "dry_run": True})
    assert [t["pending"] for t in merged["before"]] == [1, 0] and merged["tag"]["pending"] == 1
    renamed = a.ok("POST", "/api/tags/rename", {"id": tag_pending_on_b, "name": "OTHER"})
    assert renamed["merged"] is True and renamed["tag"] == {
        "id": other, "name": "other", "models": 0, "pending": 1}
    assert [t["pending"] for t in renamed["before"]] == [1, 0]
    assert [t["name"] for t in b.ok("GET", "/api/migration/pending_models")["models"][0]["tags"]] \
        == ["other"]
