"""docs/operations.md: its log-field table matches the node's log_event calls exactly."""

from __future__ import annotations

import ast
import re

from deploy_helpers import ROOT

DOC = ROOT / "docs" / "operations.md"


def logged_events() -> dict[str, set[str]]:
    """event name → keyword fields, from every ``log_event("name", k=...)`` call in the node."""
    events: dict[str, set[str]] = {}
    for path in (ROOT / "ugss" / "dicom_node").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "log_event"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                fields = {k.arg for k in node.keywords if k.arg not in (None, "level")}
                events.setdefault(node.args[0].value, set()).update(fields)
    return events


def documented_events() -> dict[str, set[str]]:
    rows = re.findall(r"^\| `([a-z_]+)` \| [A-Z]+ \| `([^`]*)` \|", DOC.read_text(), flags=re.M)
    return {name: set(fields.split()) for name, fields in rows}


def test_every_logged_event_and_field_is_documented():
    logged, documented = logged_events(), documented_events()
    assert len(logged) >= 15
    for name in sorted(set(logged) | set(documented)):
        assert logged.get(name) == documented.get(name), (
            f"log event {name!r}: code logs {sorted(logged.get(name, ()))}, docs/operations.md "
            f"lists {sorted(documented.get(name, ()))}; update the 'Log fields' table"
        )


def test_sizing_sources_are_cited():
    text = DOC.read_text()
    for source in ("benchmarks/README-train.md", "deploy/orthanc/README.md", "bench_trt_gpu.py"):
        assert source in text
        assert (ROOT / source).exists() or (ROOT / "benchmarks" / source).exists()
    assert ".backup" in text and "WAL" in text
