"""The training validation scores Dice by the evaluation's one rule (issue 18 item 1)."""

from __future__ import annotations

import numpy as np

from ugss.evaluation import EvaluationAccumulator
from ugss.evaluation.metrics import dice as eval_dice
from ugss.train.validate import dice as val_dice


def test_validation_dice_is_the_evaluation_dice() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((4, 8, 8)) > 0.6
    pred = rng.random((4, 8, 8)) > 0.5
    assert val_dice(pred, truth) == eval_dice(truth, pred)
    acc = EvaluationAccumulator()
    acc.add("a", truth, pred.astype(np.float32), 1.0)
    assert acc.summary().scans[0].dice == eval_dice(truth, pred)


def test_empty_vs_empty_is_undefined_everywhere() -> None:
    empty = np.zeros((2, 4, 4), dtype=bool)
    assert val_dice(empty, empty) is None
    assert np.isnan(eval_dice(empty, empty))
    acc = EvaluationAccumulator()
    acc.add("e", empty, np.zeros((2, 4, 4), dtype=np.float32), 1.0)
    summary = acc.summary()
    assert np.isnan(summary.scans[0].dice)
    assert np.isnan(summary.overlap.dice_pooled)
