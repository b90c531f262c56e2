"""The conventions every command shares (issue 16 items 8, 9, 12): one-line usage errors with
exit 2, --version, -h, -q, --threads 0 = all cores, --device, help without Python's words."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ugss

SCRIPTS = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
    "scripts"
]
NAMES = sorted(SCRIPTS)


def run(monkeypatch, capsys, name: str, *args: str) -> tuple[int, str, str]:
    """Run a console script's ``main`` as the shell would (``run_cli`` included)."""
    module = importlib.import_module(SCRIPTS[name].partition(":")[0])
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as exc:
        module.main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def help_text(name: str, *args: str) -> str:
    module = importlib.import_module(SCRIPTS[name].partition(":")[0])
    result = CliRunner().invoke(module.app, [*args, "-h"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())  # as read, not as wrapped


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_is_one_line_and_exit_2(name, monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, name, "--no-such-thing", "x")
    assert code == 2 and out == ""
    assert re.fullmatch(
        rf"Error: No such option: --no-such-thing( \(Possible options: [-\w, ]+\))? "
        rf"\(see {name} --help\)\n",
        err,
    ), err


def test_subcommand_usage_error_points_at_its_own_help(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "ugss-node", "status", "--no-such-thing")
    assert (code, err) == (
        2,
        "Error: No such option: --no-such-thing (see ugss-node status --help)\n",
    )


@pytest.mark.parametrize(
    ("name", "args", "line"),
    [
        ("ugss-infer", ["x", "--threads", "-1"], "Error: Invalid value for '--threads': Input "
         "should be greater than or equal to 0 (see ugss-infer --help)"),
        ("ugss-infer", ["x", "--batch-size", "-1"], "Error: Invalid value for '--batch-size': "
         "Input should be greater than or equal to 1 (see ugss-infer --help)"),
        ("ugss-eval", ["m.onnx", "--batch-size", "-1"], "Error: Invalid value for "
         "'--batch-size': Input should be greater than or equal to 1 (see ugss-eval --help)"),
        ("ugss-export", ["--threads", "-1", "m.pt"], "Error: Invalid value for '--threads': "
         "Input should be greater than or equal to 0 (see ugss-export --help)"),
        ("ugss-export", [], "Error: no checkpoint: give CHECKPOINT or -i FILE"),
        ("ugss-eval", [], "Error: Missing argument 'MODEL' (see ugss-eval --help)"),
        ("ugss-node", ["--port", "x"], "Error: Invalid value for '--port': Input should be a "
         "valid integer, unable to parse string as an integer (see ugss-node --help)"),
        ("ugss-node", ["--device", "gpu"],
         "Error: --device must be one of auto, cpu, cuda, got 'gpu'"),
        ("ugss-node", ["--device", "cuda", "--provider", "cpu"],
         "Error: --device cuda and --provider cpu disagree: give one"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(name, args, line, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, name, *args)
    assert (code, err.splitlines()) == (2, [line])


@pytest.mark.parametrize("name", NAMES)
def test_version(name, monkeypatch, capsys):
    assert run(monkeypatch, capsys, name, "--version") == (0, f"ugss {ugss.__version__}\n", "")


@pytest.mark.integration
def test_python_m_ugss_version():
    proc = subprocess.run(
        [sys.executable, "-m", "ugss", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (0, f"ugss {ugss.__version__}\n"), proc.stderr
    listing = subprocess.run([sys.executable, "-m", "ugss"], capture_output=True, text=True)
    assert all(name in listing.stdout for name in NAMES), listing.stdout


@pytest.mark.parametrize("name", NAMES)
def test_help_speaks_the_users_words(name):
    """-h is --help; -q, --version and (where threads are used) --threads 0 = all cores; no
    ``<bool>`` after a flag, no ``<list[str]>``, no ``{out}`` in the usage line."""
    text = help_text(name)
    assert "--quiet" in text and "-q" in text and "--version" in text
    for python_word in ("<bool>", "<list[", " range>", "{"):
        assert python_word not in text, f"{name}: {python_word} in its help"
    if name != "ugss-synth" and name != "ugss-node":
        assert "CPU threads (0 = all cores)." in text


@pytest.mark.parametrize("name", ["ugss-infer", "ugss-node"])
def test_device_option(name):
    assert "--device" in help_text(name) and "auto, cpu or cuda" in help_text(name)


def test_node_subcommand_help_has_no_bool():
    assert "<bool>" not in help_text("ugss-node", "status")


def test_node_device_is_the_provider(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "ugss-node", "--device", "cuda", "--print-config")
    assert code == 0, err
    assert '"provider": "cuda"' in out
