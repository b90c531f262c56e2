"""``ugss-eval`` on an exported model: the split it records, the weights it holds, quiet logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "runtime"))
import onnx_models as om

from ugss.synth.cohort import write_cohort
from ugss.train.eval_cli import main

SPLIT = {"train_labeled": ["001", "003"], "train_unlabeled": [], "val": [], "test": ["002"]}


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ugss-eval", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"), 3, 0, matrix=32).out_dir


def det_model(path: Path, training: dict) -> Path:
    return om.save(om.build_det_model(om.det_info(training=training)), path)


@pytest.mark.slow
def test_onnx_eval_scores_only_the_recorded_split(cohort, tmp_path, monkeypatch, capsys):
    training = {"weights": "teacher", "data": {"split_ids": SPLIT}}
    model = det_model(tmp_path / "m.onnx", training)
    code, out, err = run(monkeypatch, capsys, model, "--data", cohort, "--split", "test")
    assert code == 0, err
    doc = json.loads((tmp_path / "eval-test" / "evaluation.json").read_text())
    assert doc["n_scans"] == 1
    assert "teacher" in out  # the weights the model holds are in the table


@pytest.mark.slow
def test_onnx_eval_without_a_recorded_split_says_so(cohort, tmp_path, monkeypatch, capsys):
    model = det_model(tmp_path / "m.onnx", {})
    out_dir = tmp_path / "ev"
    code, out, err = run(
        monkeypatch, capsys, model, "--data", cohort, "--split", "test", "-o", out_dir
    )
    assert code == 0, err
    assert f"note: {model} records no training split: scoring every scan given" in err
    assert "all (no split recorded)" in out
    assert json.loads((out_dir / "evaluation.json").read_text())["n_scans"] == 3
    assert " INFO " not in err  # the ONNX path prints no INFO lines without -v


def test_eval_and_export_share_the_default_weights():
    from ugss.export.api import ExportOptions
    from ugss.train import eval_cli

    assert ExportOptions(onnx=Path("m.onnx")).weights == eval_cli.DEFAULT_WEIGHTS == "auto"


def test_eval_checks_the_report_folder_before_the_work(cohort, tmp_path, monkeypatch, capsys):
    model = det_model(tmp_path / "m.onnx", {})
    (tmp_path / "file").write_text("x")
    code, _, err = run(monkeypatch, capsys, model, "--data", cohort, "-o", tmp_path / "file/sub")
    assert code == 2
    assert err.strip() == (
        f"Error: {tmp_path}/file/sub: cannot write the report folder there (Not a directory)"
    )


@pytest.mark.slow
def test_one_scan_console_says_what_the_markdown_says(cohort, tmp_path, monkeypatch, capsys):
    """Item 14: no ``nan`` or "1 scans" on the console where evaluation.md says n/a, 1 scan;
    item 9: ``--threads 0`` is all cores here too."""
    model = det_model(tmp_path / "m.onnx", {"data": {"split_ids": SPLIT}})
    code, out, err = run(
        monkeypatch, capsys, model, "--data", cohort, "--split", "test", "--threads", "0"
    )
    assert code == 0, err
    markdown = (tmp_path / "eval-test" / "evaluation.md").read_text()
    assert "1 scan," in markdown and "n/a" in markdown
    assert "ugss-eval: 1 scan" in out and "1 scans" not in out
    assert "nan" not in out and "n/a" in out
