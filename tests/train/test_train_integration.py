"""A few real training steps of every method on a tiny cohort; checkpoints, resume, prediction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ugss.errors import ConfigError
from ugss.runtime.nifti import read_nifti
from ugss.synth import make_cohort
from ugss.train.checkpoint import read_checkpoint
from ugss.train.config import DataConfig, MethodConfig, OptimConfig, RunConfig, TrainConfig
from ugss.train.eval_cli import app as eval_app
from ugss.train.loop import TrainHooks, train
from ugss.train.manifest import read_physionet
from ugss.train.predict import load_checkpoint, predict_volume, predict_volume_mc

pytestmark = pytest.mark.slow  # real training steps of every method: about a minute in all


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root, n_scans=5, seed=3, matrix=64, thin_fraction=0.0, free_fraction=0.2)
    return root


def tiny_config(cohort: Path, out: Path, **method) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(
            data_dir=str(cohort),
            input_size=32,
            crop_size=32,
            labeled_fraction=0.5,
            test_fraction=0.2,
            cache_dir=str(out.parent / "cache"),
        ),
        method=MethodConfig(mc_samples=4, **method),
        optim=OptimConfig(epochs=1, steps_per_epoch=2, batch_size=4),
        run=RunConfig(out=str(out), threads=2, val_batch_size=32),
    )


VARIANTS = [
    {"method": "ugss"},
    {"method": "supervised"},
    {"method": "cutmix"},
    {"method": "cutpaste"},
    {"method": "ugss", "teacher_update": "none", "consistency": "smoothl1"},
    {"method": "ugss", "teacher_update": "ema", "uncertainty_mask": False, "use_confidence": False},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_every_method_trains_and_writes_checkpoints(cohort: Path, tmp_path: Path, variant):
    cfg = tiny_config(cohort, tmp_path / "run", **variant)
    result = train(cfg)
    assert result.steps == 2 and result.epochs_run == 1
    assert 0.0 <= result.best_val_dice <= 1.0
    doc = read_checkpoint(result.best_checkpoint)
    assert doc["config"] == cfg.to_dict()
    assert doc["input_size"] == 32 and doc["windows"].startswith("brain:40/80")
    assert doc["model"]["dropout_at"] == "head"
    assert doc["data"]["w_pos"] >= 1.0
    split = doc["data"]["split"]
    assert split["train_labeled"] and split["val"] and split["test"]
    assert (doc["teacher"] is None) == (variant["method"] == "supervised")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    for key in ("loss", "sup", "lambda_u", "alpha", "lr", "val_dice", "time_s", "eval_model"):
        assert key in rec
    assert rec["val_dice"] == max(doc["val_dice"].values())
    if variant["method"] != "supervised":
        assert "cons" in rec


class StopAfterFirstEpoch(TrainHooks):
    def on_epoch(self, record):
        raise KeyboardInterrupt


def test_resume_continues_exactly(cohort: Path, tmp_path: Path):
    def cfg(out: Path, resume=False) -> TrainConfig:
        c = tiny_config(cohort, out)
        return c.replace(optim={"epochs": 2}, run={"resume": resume})

    straight = train(cfg(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "b"), StopAfterFirstEpoch())
    assert read_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = train(cfg(tmp_path / "b", resume=True))
    assert resumed.steps == straight.steps == 4
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    for name in ("student", "teacher"):
        for k in a[name]:
            torch.testing.assert_close(a[name][k], b[name][k], rtol=0, atol=0)
    la = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lb] == [1, 2]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg(tmp_path / "a"))


@pytest.fixture(scope="module")
def trained(cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    return train(tiny_config(cohort, tmp_path_factory.mktemp("trained") / "run"))


def test_predict_volume_on_native_grid(cohort: Path, trained):
    result = trained
    ck = load_checkpoint(result.best_checkpoint)
    doc = read_checkpoint(result.best_checkpoint)
    assert set(doc["val_dice"]) == {"student", "teacher"}
    assert ck.which == doc["eval_model"] == result.eval_model and ck.input_size == 32
    raw = load_checkpoint(result.best_checkpoint, calibrated=False)
    w_pos = ck.data["w_pos"]
    assert ck.logit_offset == pytest.approx(-math.log(w_pos))  # prior correction of eq. 6
    bias_shift = (ck.model.head.bias - raw.model.head.bias).item()
    assert bias_shift == pytest.approx(-math.log(w_pos), rel=1e-5)
    rec = read_physionet(cohort)[0]
    vol = read_nifti(rec.scan_path)
    prob = predict_volume(ck.model, vol, input_size=32, windows=ck.windows, batch_size=8)
    assert prob.shape == vol.shape and prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1))
    mean, ent = predict_volume_mc(
        ck.model, vol, input_size=32, windows=ck.windows, batch_size=8, mc_samples=4
    )
    assert mean.shape == vol.shape and ent is not None and np.all((ent >= 0) & (ent <= 1 + 1e-6))


def test_ugss_eval_scores_the_checkpoints_test_split(cohort: Path, trained, tmp_path: Path):
    out = tmp_path / "eval"
    args = [trained.best_checkpoint, "--data", str(cohort), "--split", "test", "--out", str(out)]
    result = CliRunner().invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "evaluation.json").read_text())
    test_ids = read_checkpoint(trained.best_checkpoint)["data"]["split"]["test"]
    assert [s["scan_id"] for s in summary["scans"]] == test_ids
    assert (out / "evaluation.md").is_file()
    assert (out / "training.png").stat().st_size > 10_000  # the run's diagnostics (issue 17)
    assert "training.png" in result.output
