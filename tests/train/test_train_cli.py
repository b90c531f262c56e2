"""``ugss-train`` from outside: user errors, a tiny real run, two processes under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ugss.train.checkpoint import read_checkpoint
from ugss.train.cli import app, main

TINY = [
    "--input-size", "32", "--crop-size", "32", "--epochs", "1", "--steps-per-epoch", "2",
    "--batch-size", "4", "--mc-samples", "2", "--threads", "1", "--labeled-fraction", "0.5",
]  # fmt: skip


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ugss.train.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.integration
def test_bad_data_folder_exits_2_with_one_error_line(tmp_path: Path):
    proc = run_cli("--data", "/nonexistent/cohort", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["Error: /nonexistent/cohort: no such data folder"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labeled-fraction", "1.5"], "labeled fraction"),
        (["--labeled-fraction", "0"], "labeled fraction"),
        (["--method", "mixmatch"], "method must be one of"),
        (["--input-size", "100"], "multiple of 16"),
        (["--manifest", "EMPTY"], "lists no scans"),
        (["--manifest", "MISSING_MASK"], "does not exist"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path: Path, monkeypatch, capsys, args, message):
    (tmp_path / "empty.csv").write_text("scan,mask\n")
    (tmp_path / "scan.nii").write_bytes(b"")
    (tmp_path / "missing.csv").write_text("scan,mask\nscan.nii,nope.nii\n")
    names = {"EMPTY": "empty.csv", "MISSING_MASK": "missing.csv"}
    args = [str(tmp_path / names[a]) if a in names else a for a in args]
    monkeypatch.setattr(sys, "argv", ["ugss-train", *args, "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], lines


@pytest.mark.slow
def test_tiny_cli_run(toy_cohort: Path, tmp_path: Path):
    out = tmp_path / "run"
    args = ["--data", str(toy_cohort), "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(app, [*args, *TINY])
    assert result.exit_code == 0, result.output
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2
    again = CliRunner().invoke(app, [*args, *TINY, "--resume"])  # finished run: nothing to do
    assert again.exit_code == 0, again.output


@pytest.mark.integration
def test_two_processes_with_gloo(toy_cohort: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "ugss.train.cli", "--data", str(toy_cohort), "--out", str(out),
        "--cache-dir", str(tmp_path / "c"), "--device", "cpu", *TINY,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = read_checkpoint(out / "last.pt")
    assert doc["step"] == 2 and len(doc["rng"]) == 2  # one generator state per rank
    assert time.perf_counter() - t0 < 300


@pytest.mark.parametrize(
    ("flags", "mask", "confidence"),
    [
        ([], True, True),
        (["--no-uncertainty"], False, False),  # no uncertainty anywhere: mask and weight gone
        (["--no-uncertainty-mask"], False, True),
        (["--no-confidence"], True, False),
    ],
)
def test_uncertainty_switches_do_what_they_say(tmp_path, monkeypatch, flags, mask, confidence):
    import ugss.train.cli as cli

    seen = []
    monkeypatch.setattr(cli, "train", lambda config, hooks=None: seen.append(config))
    args = ["--out", str(tmp_path / "run"), "--quiet", *flags]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.method.uncertainty_mask, cfg.method.use_confidence) == (mask, confidence)
    assert cfg.method.uncertainty_guided == (mask or confidence)


@pytest.mark.slow
def test_uncertainty_switches_help_text():
    result = CliRunner().invoke(app, ["--help"], terminal_width=240)
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert (
        "--no-uncertainty Ablation: no uncertainty anywhere (no û < δ·û_max mask and no p_conf "
        "weight): plain consistency, the paper's not uncertainty-guided rows" in text
    ), text
    assert (
        "--no-uncertainty-mask Ablation: keep every pixel (no û < δ·û_max mask); the p_conf "
        "weight stays" in text
    )
    no_conf = "--no-confidence Ablation: no p_conf weight on the consistency loss; the δ mask stays"
    assert no_conf in text
