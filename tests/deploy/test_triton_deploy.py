"""deploy/triton and the deployment docs: compose structure, and every flag the docs use exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from deploy_helpers import ROOT, cli_flags, load_yaml

TRITON = ROOT / "deploy" / "triton"
DOCS = [
    TRITON / "README.md",
    ROOT / "deploy" / "README.md",
    ROOT / "docs" / "operations.md",
]
SCRIPTS = ("ugss-node", "ugss-infer", "ugss-export", "ugss-train")


def test_triton_compose():
    doc = load_yaml(TRITON / "docker-compose.yml")
    triton = doc["services"]["triton"]
    assert "--model-repository=/models" in triton["command"]
    assert "./models:/models:ro" in triton["volumes"]
    assert "127.0.0.1:8000:8000" in triton["ports"]
    infer = doc["services"]["infer"]
    entry = infer["entrypoint"]
    assert entry[0] == "ugss-infer"
    assert entry[entry.index("--triton-url") + 1] == "triton:8000"
    assert set(entry[1::2]) <= cli_flags("ugss-infer")
    assert infer["depends_on"] == ["triton"]


def _commands(path: Path) -> list[tuple[str, list[str]]]:
    """(script, words) for each ugss-* command in the fenced code blocks of a Markdown file."""
    text = path.read_text()
    found = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n", " ", block)
        for line in block.splitlines():
            line = line.split(" #", 1)[0]
            try:
                words = shlex.split(line)
            except ValueError:
                words = line.split()
            for i, word in enumerate(words):
                name = Path(word).name
                at_start = i == 0 or words[i - 1] in ("&&", ";", "|", "do", "then", "sudo")
                if (name in SCRIPTS and (at_start or "/" in word)) or (
                    word == "ugss.train.cli" and words[i - 1] == "-m"
                ):
                    found.append(("ugss-train" if word == "ugss.train.cli" else name, words[i:]))
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_flags_exist(path):
    commands = _commands(path)
    for script, words in commands:
        flags = {w.split("=")[0] for w in words[1:] if w.startswith("--")}
        # stop at shell separators: flags after them belong to other programs
        for sep in ("|", "&&", ";", "&"):
            if sep in words:
                cut = words.index(sep)
                flags = {w.split("=")[0] for w in words[1:cut] if w.startswith("--")}
        unknown = flags - cli_flags(script)
        assert not unknown, f"{path.name}: {script} has no {sorted(unknown)}: {' '.join(words)}"


def test_triton_readme_covers_the_choices():
    text = (TRITON / "README.md").read_text()
    for needed in ("--triton-url", "dynamic_batching", "torchrun --nproc-per-node", "--provider"):
        assert needed in text
    assert "nvidia-pytriton" in text  # the limit of what was validated is stated
