"""EvaluationAccumulator end to end on the three hand-worked scans of eval_cases.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from eval_cases import VOXEL_ML, filled, three_scans

from ugss.errors import ConfigError, InputError
from ugss.evaluation import EvaluationAccumulator, render_markdown, volume_agreement


def test_per_scan_rows(summary):
    a, b, c = summary.scans
    assert (a.dice, a.jaccard) == pytest.approx((2 * 3 / (6 + 4), 3 / 7))
    assert a.pixel_accuracy == pytest.approx(60 / 64)
    assert (a.true_volume_ml, a.pred_volume_ml) == pytest.approx((0.6, 0.4))
    assert (a.truth_positive_slices, a.pred_positive_slices) == (2, 1)
    assert b.both_empty and math.isnan(b.dice) and b.pixel_accuracy == 1.0
    assert (c.dice, c.jaccard) == pytest.approx((4 / 7, 2 / 5))
    assert c.volume_diff_ml == pytest.approx(0.3)


def test_overlap_summary(summary):
    o = summary.overlap
    assert (o.n_scans_scored, o.n_scans_both_empty) == (2, 1)
    assert o.dice_mean == pytest.approx((0.6 + 4 / 7) / 2)
    assert o.dice_std == pytest.approx(np.std([0.6, 4 / 7], ddof=1))
    assert o.jaccard_mean == pytest.approx((3 / 7 + 2 / 5) / 2)
    assert o.dice_mean_empty_as_one == pytest.approx((0.6 + 4 / 7 + 1) / 3)
    assert o.jaccard_mean_empty_as_one == pytest.approx((3 / 7 + 2 / 5 + 1) / 3)
    assert (o.dice_pooled, o.jaccard_pooled) == pytest.approx((10 / 17, 5 / 12))
    # scored slices: a1 (0.75, 0.6), a2 (0, 0), c0 (1, 1), c2 (0, 0)
    assert o.n_slices_scored == 4
    assert (o.slice_dice_mean, o.slice_jaccard_mean) == pytest.approx((0.4375, 0.4))


def test_pixel_accuracy(summary):
    assert summary.pixel_accuracy == pytest.approx(153 / 160)  # 7 wrong of 64 + 48 + 48
    assert summary.pixel_accuracy_mean == pytest.approx((60 / 64 + 1 + 45 / 48) / 3)


def test_slice_and_scan_detection(summary):
    d = summary.slice_detection
    assert (d.counts.tp, d.counts.fp, d.counts.tn, d.counts.fn) == (2, 1, 6, 1)
    assert d.counts.kappa == pytest.approx((0.8 - 0.58) / 0.42)
    # positives score 0.9, 0.8, 0.2 against 7 negatives; 0.2 beats 4 of them
    assert d.auc == pytest.approx((7 + 7 + 4) / 21)
    s = summary.scan_detection
    assert (s.counts.tp, s.counts.tn, s.auc, s.counts.kappa) == (2, 1, 1.0, 1.0)


def test_min_slice_voxels_changes_detection():
    d = filled(min_slice_voxels=3).summary().slice_detection
    # truth slices with >= 3 voxels: a1 only; predicted: a1 (4) and c2 (3)
    assert (d.counts.tp, d.counts.fp, d.counts.fn) == (1, 1, 0)


def test_volume_agreement_over_all_or_positive_scans(summary):
    expected = volume_agreement(np.array([0.6, 0.0, 0.2]), np.array([0.4, 0.0, 0.5]))
    assert summary.volume.to_dict() == pytest.approx(expected.to_dict())
    assert summary.volume.bias_ml == pytest.approx(0.1 / 3)
    pos = filled(volume_scans="truth_positive").summary()
    assert pos.volume.n == 2 and pos.volume_pairs()[0].tolist() == pytest.approx([0.6, 0.2])


def test_json_and_definitions(summary, tmp_path):
    path = summary.write_json(tmp_path / "out" / "eval.json")
    data = json.loads(path.read_text())
    assert data["n_scans"] == 3 and len(data["scans"]) == 3
    assert data["scans"][1]["dice"] is None and data["scans"][1]["both_empty"] is True
    assert data["slice_detection"]["roc"]["thresholds"][0] is None
    for key in ("dice", "per_slice", "r2", "pearson_r2", "bland_altman", "slice_detection"):
        assert data["definitions"][key]
    assert "excluded" in data["definitions"]["dice"]
    md = render_markdown(summary)
    assert "Dice per scan" in md and "| b |" in md and "Bland-Altman" in md


def test_threshold_and_pred_mask_overrides():
    _, truth, prob = three_scans()[0]
    acc = EvaluationAccumulator()
    acc.add("low", truth, prob, VOXEL_ML, threshold=0.15)  # + slice 2, 0.3 and 0.4 voxels
    acc.add("mask", truth, prob, VOXEL_ML, pred_mask=truth)
    low, mask = acc.summary().scans
    assert low.threshold == 0.15 and low.dice == pytest.approx(2 * 6 / (6 + 8))
    assert mask.dice == 1.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5), np.float32)), "same shape"),
        ((np.zeros((4, 4), bool), np.zeros((4, 4), np.float32)), r"\(z, y, x\)"),
        ((np.zeros((2, 4, 4), bool), np.full((2, 4, 4), 3.0, np.float32)), "logits"),
        ((np.zeros((2, 4, 4), bool), np.full((2, 4, 4), np.nan, np.float32)), "finite"),
    ],
)
def test_bad_scans_are_input_errors(args, match):
    with pytest.raises(InputError, match=match):
        EvaluationAccumulator().add("x", *args, VOXEL_ML)


def test_other_input_errors():
    acc = EvaluationAccumulator()
    with pytest.raises(InputError, match="no scans"):
        acc.summary()
    t, p = np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), np.float32)
    with pytest.raises(InputError, match="voxel volume"):
        acc.add("x", t, p, 0.0)
    acc.add("x", t, p, 1.0)
    with pytest.raises(InputError, match="twice"):
        acc.add("x", t, p, 1.0)
    with pytest.raises(InputError, match="same shape"):
        acc.add("y", t, p, 1.0, pred_mask=np.zeros((1, 2, 3), bool))
    with pytest.raises(ConfigError):
        EvaluationAccumulator(threshold=0.0)
    with pytest.raises(ConfigError):
        EvaluationAccumulator(min_slice_voxels=0)
