"""The loop's rules: early stopping waits for the λ_u ramp; ``eval_model`` is the better model.

Validation is replaced by fixed scores so the rules, not the training noise, decide.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ugss.train.loop as loop
from ugss.train.checkpoint import read_checkpoint
from ugss.train.config import DataConfig, MethodConfig, OptimConfig, RunConfig, TrainConfig
from ugss.train.loop import checkpoint_eligible, early_stopping_counts, pick_eval_model, train
from ugss.train.predict import load_checkpoint
from ugss.train.validate import ValidationResult


def config(cohort: Path, out: Path, *, epochs=4, patience=1, **method) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(
            data_dir=str(cohort),
            input_size=32,
            crop_size=32,
            labeled_fraction=0.5,
            test_fraction=0.0,
            cache_dir=str(out.parent / "cache"),
        ),
        method=MethodConfig(mc_samples=2, **method),
        optim=OptimConfig(epochs=epochs, steps_per_epoch=1, batch_size=4, patience=patience),
        run=RunConfig(out=str(out), threads=1, val_batch_size=32),
    )


def fixed_validation(monkeypatch, scores: dict[str, float]) -> None:
    """Validation Dice ``scores[name]`` for the student / teacher, every epoch."""

    def validate(net, scans, **kw):
        name = "student" if next(net.parameters()).requires_grad else "teacher"
        return ValidationResult(scores[name])

    monkeypatch.setattr(loop, "validate", validate)


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_early_stopping_counts_only_after_the_ramp():
    assert not early_stopping_counts(5, 10, uses_lambda=True)
    assert early_stopping_counts(10, 10, uses_lambda=True)
    assert early_stopping_counts(5, 10, uses_lambda=False)  # supervised: no ramp to wait for


@pytest.mark.parametrize(
    ("method", "ramp", "epochs_run", "lambdas"),
    [
        ("ugss", 1.0, 4, [0.6 * (k / 4) ** 2 for k in (1, 2, 3, 4)]),  # never stops early
        ("ugss", 0.75, 3, [0.6 * (k / 3) ** 2 for k in (1, 2, 3)]),  # stops once λ_u = m
        ("supervised", 1.0, 2, None),  # nothing to ramp: patience 1 stops it at epoch 2
    ],
)
@pytest.mark.slow
def test_no_early_stop_before_lambda_reaches_its_maximum(
    toy_cohort, tmp_path, monkeypatch, method, ramp, epochs_run, lambdas
):
    fixed_validation(monkeypatch, {"student": 0.5, "teacher": 0.5})  # never improves
    out = tmp_path / "run"
    result = train(config(toy_cohort, out, method=method, lambda_ramp=ramp))
    assert result.epochs_run == epochs_run
    recs = records(out)
    assert [r["epoch"] for r in recs] == list(range(1, epochs_run + 1))
    if lambdas is not None:
        assert [r["lambda_u"] for r in recs] == pytest.approx(lambdas)
        assert result.lambda_u_reached == pytest.approx(0.6)  # the log shows λ_u reached m
        assert [r["ramp_done"] for r in recs][-1] and not recs[0]["ramp_done"]


def test_checkpoint_eligible_waits_for_the_ramp_only_when_asked():
    late = MethodConfig(select_after_ramp=True)
    assert not checkpoint_eligible(False, late)
    assert checkpoint_eligible(True, late)
    assert checkpoint_eligible(False, MethodConfig())  # the default: every epoch may be best
    assert checkpoint_eligible(False, MethodConfig(method="supervised", select_after_ramp=True))


@pytest.mark.slow
def test_select_after_ramp_never_keeps_an_epoch_before_lambda_reaches_m(
    toy_cohort, tmp_path, monkeypatch
):
    """Validation gets worse every epoch: the best is epoch 1 unless selection waits."""
    scores = iter([0.9, 0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6])  # (student, teacher) per epoch

    def validate(net, scans, **kw):
        return ValidationResult(next(scores))

    monkeypatch.setattr(loop, "validate", validate)
    out = tmp_path / "run"
    cfg = config(toy_cohort, out, patience=4, lambda_ramp=0.5, select_after_ramp=True)
    result = train(cfg)
    assert result.best_epoch == 2  # the first epoch that ended with λ_u = m (2 of 4 steps)
    assert [r["best"] for r in records(out)] == [False, True, False, False]


def test_pick_eval_model():
    assert pick_eval_model({"student": 0.7, "teacher": 0.8}) == "teacher"
    assert pick_eval_model({"student": 0.8, "teacher": 0.7}) == "student"
    assert pick_eval_model({"student": 0.7, "teacher": 0.7}) == "student"  # the paper's output
    assert pick_eval_model({"student": 0.7}) == "student"


@pytest.mark.slow
@pytest.mark.parametrize("better", ["student", "teacher"])
def test_checkpoint_records_both_dice_and_auto_loads_the_better(
    toy_cohort, tmp_path, monkeypatch, better
):
    scores = {"student": 0.4, "teacher": 0.4, better: 0.6}
    fixed_validation(monkeypatch, scores)
    out = tmp_path / "run"
    result = train(config(toy_cohort, out, epochs=1))
    doc = read_checkpoint(out / "best.pt")
    assert doc["val_dice"] == pytest.approx(scores)
    assert doc["eval_model"] == better == result.eval_model
    assert load_checkpoint(out / "best.pt").which == better
    (rec,) = records(out)
    assert rec["val_dice"] == 0.6 and rec["eval_model"] == better
    assert (rec["val_dice_student"], rec["val_dice_teacher"]) == (
        scores["student"],
        scores["teacher"],
    )


@pytest.mark.slow
@pytest.mark.parametrize("update", ["wema", "none"])
def test_tiny_run_logs_the_diagnostics(toy_cohort, tmp_path, update):
    from ugss.train.teacher import effective_decay

    out = tmp_path / "run"
    # raw outputs (no prior correction) of a barely trained net: both masks have foreground
    cfg = config(toy_cohort, out, epochs=2, patience=5, teacher_update=update, calibrate=False)
    train(cfg.replace(optim={"steps_per_epoch": 3}))
    recs = records(out)
    assert len(recs) == 2
    for r in recs:
        assert 0.0 <= r["unl_pass_delta"] <= 1.0 and 0.0 <= r["unl_conf"] <= 1.0
        assert r["lambda_u"] > 0.0
        assert r["teacher_decay"] == pytest.approx(effective_decay(update, r["alpha"], 0.5))
        assert 0.0 < r["ts_dice_unlabeled"] <= 1.0
    ts = recs[-1]["ts_dice_unlabeled"]
    assert ts == 1.0 if update == "none" else ts < 1.0  # θ′ = θ: the same masks; wEMA lags
    assert recs[-1]["lambda_u"] == pytest.approx(0.6)
