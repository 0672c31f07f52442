"""docs/api-contracts.md lists every route the app serves, each with its handler file."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LINE = re.compile(r"^- `(GET|POST|PATCH|DELETE|PUT) (\S+)` -> (?:`([^`]+)`|Flask's static route)", re.M)


def _shape(path: str) -> str:
    """A route with its parameter names left out: ``/api/jobs/{}``, whatever each side calls them
    (the document spells an image ident ``{sha256}_{seq}``: one parameter)."""
    shaped = re.sub(r"\{[^}]*\}", "{}", re.sub(r"<(?:[^:>]+:)?[^>]+>", "{}", path))
    return shaped.replace("{}_{}", "{}")


def test_every_route_is_listed_with_its_handler_file(app):
    doc = (ROOT / "docs" / "api-contracts.md").read_text(encoding="utf-8")
    listed = {(method, _shape(path)): target for method, path, target in _LINE.findall(doc)}
    served = set()
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            key = (method, _shape(rule.rule))
            served.add(key)
            assert key in listed, f"{method} {rule.rule} is not in docs/api-contracts.md"
            if rule.endpoint != "static":
                source = Path(inspect.getsourcefile(app.view_functions[rule.endpoint]))
                assert listed[key] == source.relative_to(ROOT).as_posix(), (method, rule.rule)
    assert set(listed) - served == set(), "listed routes the app does not serve"
