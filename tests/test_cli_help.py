"""Every console script of the project answers --help with text for each option."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

SCRIPTS = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
    "scripts"
]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_command_has_help(name):
    module_name, _, func = SCRIPTS[name].partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, func))
    result = CliRunner().invoke(module.app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    # each option listed carries a help text (typer prints it on the same line)
    option_lines = [ln for ln in result.output.splitlines() if ln.strip("│ ").startswith("--")]
    assert option_lines, result.output
    for line in option_lines:
        words = line.strip("│ ").split()
        assert len(words) >= 2, f"{name}: option without help: {line!r}"


def _help(module_name: str) -> str:
    module = importlib.import_module(module_name)
    result = CliRunner().invoke(module.app, ["--help"], terminal_width=400)
    return " ".join(result.output.replace("│", " ").split())


def test_synth_help_says_what_a_rerun_does_and_what_matrix_means():
    """Issue 16 items 4 and 12: the help tells a user what they would otherwise find out."""
    text = _help("ugss.synth.cli")
    rerun = (
        "An earlier cohort there is replaced: its scans that this cohort does not hold are "
        "removed, so the folder holds exactly what truth.csv lists."
    )
    matrix = "Nominal image matrix (32–1024): most scans are MATRIX×MATRIX, one in four has a"
    assert rerun in text and matrix in text
