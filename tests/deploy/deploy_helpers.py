"""Helpers of tests/deploy: a block-YAML subset reader and the console scripts' flags."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _scalar(text: str):
    text = text.strip()
    if text[:1] in "\"'" and text[-1:] == text[:1]:
        return text[1:-1]
    if text.startswith("["):
        return json.loads(text)
    return text


_KEY = re.compile(r"^([^\s'\"\[][^:]*):(?:\s+|$)")


def mini_yaml(text: str) -> dict:
    """Block-style YAML subset (maps, lists of scalars, quoted or flow-list scalars, comments).

    Enough for docker-compose.yml as written; PyYAML, when installed, cross-checks it.
    """
    lines = []
    for raw in text.splitlines():
        stripped = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if stripped.strip():
            lines.append((len(stripped) - len(stripped.lstrip()), stripped.strip()))

    def block(i: int, indent: int):
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                body = lines[i][1][2:]
                if _KEY.match(body):
                    # a list item that is a map: re-read it at the item's content indent
                    lines[i] = (indent + 2, body)
                    value, i = block(i, indent + 2)
                    items.append(value)
                else:
                    items.append(_scalar(body))
                    i += 1
            return items, i
        out = {}
        while i < len(lines) and lines[i][0] == indent:
            m = _KEY.match(lines[i][1])
            assert m, f"not a mapping line: {lines[i][1]!r}"
            key, rest = m.group(1), lines[i][1][m.end() :]
            i += 1
            if rest.strip():
                out[key.strip()] = _scalar(rest)
            elif i < len(lines) and lines[i][0] > indent:
                out[key.strip()], i = block(i, lines[i][0])
            else:
                out[key.strip()] = None
        return out, i

    doc, end = block(0, 0)
    assert end == len(lines), f"unparsed from line {lines[end]}"
    return doc


def load_yaml(path: Path):
    """mini_yaml, cross-checked by PyYAML when it is installed."""
    text = path.read_text()
    doc = mini_yaml(text)
    try:
        import yaml
    except ImportError:
        return doc
    assert yaml.safe_load(text) == doc
    return doc


_MODULES = {
    "ugss-node": "ugss.dicom_node.cli",
    "ugss-infer": "ugss.runtime.infer_cli",
    "ugss-export": "ugss.export.cli",
    "ugss-train": "ugss.train.cli",
}


@cache
def _all_flags() -> dict[str, frozenset[str]]:
    """Every long option of each console script's typer app (subcommands included)."""
    import importlib

    import typer

    def walk(cmd) -> set[str]:
        flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o[:2] == "--"}
        for sub in getattr(cmd, "commands", {}).values():
            flags |= walk(sub)
        return flags | {"--help"}

    return {
        script: frozenset(walk(typer.main.get_command(importlib.import_module(module).app)))
        for script, module in _MODULES.items()
    }


def cli_flags(script: str) -> frozenset[str]:
    """Long options of a console script, read from its --help."""
    flags = _all_flags()[script]
    assert "--help" in flags, f"{script} --help printed no options"
    return flags
