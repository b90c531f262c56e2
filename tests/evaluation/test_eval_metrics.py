"""Each metric pinned on tiny arrays computed by hand (paper eq. 16–19)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from ugss.errors import InputError
from ugss.evaluation import (
    BinaryCounts,
    detection_metrics,
    dice,
    jaccard,
    pearson_r2,
    per_slice_overlap,
    pixel_accuracy,
    r2_identity,
    roc_auc,
    roc_curve,
    slice_labels,
    slice_scores,
    volume_agreement,
)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """2×2×2 volume: |truth| = 3, |pred| = 2, |truth ∩ pred| = 1."""
    t = np.zeros((2, 2, 2), bool)
    p = np.zeros((2, 2, 2), bool)
    t[0, 0, 0] = t[0, 0, 1] = t[1, 1, 1] = True
    p[0, 0, 0] = p[1, 0, 0] = True
    return t, p


def test_dice_and_jaccard_by_hand():
    t, p = _pair()
    assert dice(t, p) == pytest.approx(2 * 1 / (3 + 2))
    assert jaccard(t, p) == pytest.approx(1 / 4)  # union = 3 + 2 − 1
    assert dice(t, t) == 1.0 and jaccard(t, t) == 1.0
    assert dice(t, np.zeros_like(t)) == 0.0  # truth only: a miss, not undefined


def test_empty_vs_empty_is_undefined_unless_asked():
    e = np.zeros((3, 4, 4), bool)
    assert math.isnan(dice(e, e)) and math.isnan(jaccard(e, e))
    assert dice(e, e, empty=1.0) == 1.0 and jaccard(e, e, empty=1.0) == 1.0


def test_integer_masks_count_nonzero_as_positive():
    t, p = _pair()
    assert dice(t.astype(np.uint8) * 3, p.astype(np.int16)) == pytest.approx(0.4)


def test_per_slice_overlap_skips_slices_empty_in_both():
    t = np.zeros((3, 2, 2), bool)
    p = np.zeros((3, 2, 2), bool)
    t[0, 0, :] = True  # slice 0: truth 2, pred 1, inter 1
    p[0, 0, 0] = True
    p[2, 1, 1] = True  # slice 2: prediction only; slice 1: empty in both
    idx, d, j = per_slice_overlap(t, p)
    assert idx.tolist() == [0, 2]
    np.testing.assert_allclose(d, [2 / 3, 0.0])
    np.testing.assert_allclose(j, [1 / 2, 0.0])


def test_pixel_accuracy_counts_background():
    t, p = _pair()
    # wrong voxels: |t| + |p| − 2|t∩p| = 3; 5 of 8 correct
    assert pixel_accuracy(t, p) == pytest.approx(5 / 8)


@pytest.mark.parametrize("fn", [dice, jaccard, pixel_accuracy])
def test_shape_mismatch_is_input_error(fn):
    with pytest.raises(InputError, match="same shape"):
        fn(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))


def test_kappa_sens_spec_on_known_table():
    c = BinaryCounts(tp=20, fp=5, tn=15, fn=10)
    assert c.sensitivity == pytest.approx(20 / 30)
    assert c.specificity == pytest.approx(15 / 20)
    assert c.accuracy == pytest.approx(35 / 50)
    # p_o = 0.7, p_e = (25·30 + 25·20) / 50² = 0.5 → κ = 0.2 / 0.5
    assert c.kappa == pytest.approx(0.4)
    assert BinaryCounts(tp=5, fp=0, tn=5, fn=0).kappa == 1.0
    assert math.isnan(BinaryCounts(tp=0, fp=0, tn=9, fn=0).kappa)  # one class everywhere
    assert math.isnan(BinaryCounts(tp=0, fp=1, tn=9, fn=0).sensitivity)


def test_counts_from_labels():
    c = BinaryCounts.from_labels(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 1, 1)


LABELS = np.array([1, 1, 0, 0, 1, 0], bool)
SCORES = np.array([0.9, 0.5, 0.5, 0.1, 0.3, 0.3])


def test_auc_with_ties_by_hand_and_scipy():
    # pos {0.9, 0.5, 0.3} vs neg {0.5, 0.1, 0.3}: 3 + (2 + ½) + (1 + ½) = 7 of 9 pairs
    assert roc_auc(LABELS, SCORES) == pytest.approx(7 / 9)
    u = mannwhitneyu(SCORES[LABELS], SCORES[~LABELS]).statistic
    assert roc_auc(LABELS, SCORES) == pytest.approx(u / 9)
    assert math.isnan(roc_auc(np.ones(3, bool), np.arange(3.0)))


def test_roc_curve_points_and_area():
    roc = roc_curve(LABELS, SCORES)
    assert roc.thresholds == (math.inf, 0.9, 0.5, 0.3, 0.1)
    np.testing.assert_allclose(roc.fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 2 / 3, 1, 1])
    assert np.trapezoid(roc.tpr, roc.fpr) == pytest.approx(roc_auc(LABELS, SCORES))
    assert roc.to_dict()["thresholds"][0] is None  # JSON has no infinity


def test_roc_area_matches_auc_on_random_ties():
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # many ties
    roc = roc_curve(labels, scores)
    assert np.trapezoid(roc.tpr, roc.fpr) == pytest.approx(roc_auc(labels, scores))


def test_slice_labels_and_scores():
    m = np.zeros((3, 4, 4), bool)
    m[0, 0, 0] = True
    m[1, :2, :2] = True
    assert slice_labels(m).tolist() == [True, True, False]
    assert slice_labels(m, min_voxels=2).tolist() == [False, True, False]
    prob = np.zeros((3, 4, 4), np.float32)
    prob[2, 3, 3] = 0.7
    assert slice_scores(prob).tolist() == pytest.approx([0.0, 0.0, 0.7])


def test_detection_metrics_bundle():
    d = detection_metrics(LABELS, SCORES >= 0.5, SCORES)
    assert (d.counts.tp, d.counts.fp, d.n_positive, d.n_negative) == (2, 1, 3, 3)
    assert d.to_dict()["auc"] == pytest.approx(7 / 9)


def test_volume_agreement_on_known_numbers():
    true = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([2.0, 2.0, 4.0, 4.0])
    va = volume_agreement(true, pred)
    assert va.n == 4
    assert va.r2 == pytest.approx(1 - 2 / 5)  # SS_res = 2, SS_tot = 5
    assert va.pearson_r2 == pytest.approx(16 / 20)  # (Σ dt·dp)² / (Σdt² Σdp²)
    assert (va.slope, va.intercept) == pytest.approx((0.8, 1.0))
    assert va.mean_abs_diff_ml == pytest.approx(0.5)
    assert va.bias_ml == pytest.approx(0.5)
    sd = math.sqrt(1 / 3)  # Δ = [1, 0, 1, 0], sample sd
    assert va.sd_diff_ml == pytest.approx(sd)
    assert (va.loa_lower_ml, va.loa_upper_ml) == pytest.approx((0.5 - 1.96 * sd, 0.5 + 1.96 * sd))
    assert r2_identity(true, pred) == va.r2 and pearson_r2(true, pred) == va.pearson_r2


def test_r2_identity_differs_from_pearson_for_biased_predictions():
    true = np.array([1.0, 2.0, 3.0])
    pred = 2 * true
    assert pearson_r2(true, pred) == pytest.approx(1.0)
    assert r2_identity(true, pred) == pytest.approx(1 - 14 / 2)  # Σt² / Σ(t − 2)²
    assert math.isnan(r2_identity(np.ones(3), pred))  # zero variance in truth


def test_volume_agreement_degenerate_and_bad_input():
    va = volume_agreement(np.array([2.0]), np.array([3.0]))
    assert va.bias_ml == 1.0 and math.isnan(va.sd_diff_ml) and math.isnan(va.r2)
    assert volume_agreement(np.array([]), np.array([])).to_dict()["bias_ml"] is None
    with pytest.raises(InputError):
        volume_agreement(np.zeros(3), np.zeros(4))
    with pytest.raises(InputError):
        volume_agreement(np.array([np.nan]), np.zeros(1))
