"""``training.png`` from a run's metrics.jsonl: the semi-supervised diagnostics per epoch."""

from __future__ import annotations

import json

import pytest

from ugss.evaluation.training_plot import PANELS, plot_run, plot_training, read_metrics


def _ugss_records(n: int = 4) -> list[dict]:
    return [
        {
            "epoch": e, "val_dice_student": 0.5 + e / 20, "val_dice_teacher": 0.52 + e / 20,
            "lambda_u": 0.6 * min(1.0, e / 3) ** 2, "teacher_decay": 0.95,
            "unl_pass_delta": 0.9, "unl_conf": 0.8, "ts_dice_unlabeled": None if e == 1 else 0.9,
        }
        for e in range(1, n + 1)
    ]  # fmt: skip


def test_every_logged_diagnostic_has_a_curve():
    logged = {key for rec in _ugss_records() for key in rec}
    assert {key for _, curves in PANELS for key, _ in curves} <= logged


@pytest.mark.slow  # matplotlib draws two figures
def test_the_plot_is_written_for_ugss_and_for_a_supervised_run(tmp_path):
    full = plot_training(_ugss_records(), tmp_path / "ugss.png")
    plain = plot_training([{"epoch": 1, "val_dice_student": 0.4}], tmp_path / "sup.png")
    assert full.stat().st_size > 10_000 and plain.stat().st_size > 10_000
    assert full.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_are_read_beside_the_checkpoint_and_bad_lines_skipped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"event": "start"}), "{torn", *map(json.dumps, _ugss_records(2))]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]
    written = plot_run(run / "best.pt", tmp_path / "eval")
    assert written == tmp_path / "eval" / "training.png" and written.is_file()
    assert plot_run(tmp_path / "elsewhere" / "best.pt", tmp_path / "eval2") is None
