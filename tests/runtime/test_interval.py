"""The MC volume interval: conformal rank and quantile, scaled interval, metadata round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ugss.errors import InputError
from ugss.runtime.interval import (
    FLOOR_UNIT_ML,
    METADATA_KEY,
    NOMINAL_COVERAGE,
    IntervalCalibration,
    LabeledVolume,
    calibrate,
    conformal_quantile,
    conformal_rank,
    coverage_of,
    raw_interval,
    score,
    volume_interval,
)
from ugss.runtime.model_info import KIND_MC, ModelInfo

CAL = IntervalCalibration(0.9, 2.0, 0.5, 40, 0.925, "validation split of abc", 0.4)


def test_nominal_coverage_is_the_percentile_span() -> None:
    assert round(NOMINAL_COVERAGE, 9) == 0.9


@pytest.mark.parametrize(
    ("n", "coverage", "rank"),
    [(9, 0.9, 9), (10, 0.9, 10), (19, 0.9, 18), (40, 0.9, 37), (99, 0.9, 90), (3, 0.9, 4)],
)
def test_conformal_rank(n: int, coverage: float, rank: int) -> None:
    assert conformal_rank(n, coverage) == rank == math.ceil((n + 1) * coverage - 1e-9)


def test_conformal_rank_refuses_bad_input() -> None:
    with pytest.raises(InputError):
        conformal_rank(0, 0.9)
    with pytest.raises(InputError):
        conformal_rank(10, 1.0)


def test_conformal_quantile_is_the_ranked_score() -> None:
    scores = np.arange(1.0, 20.0)[::-1]  # 19 scores, shuffled order does not matter
    assert conformal_quantile(scores, 0.9) == 18.0  # ⌈20·0.9⌉ = 18th smallest
    assert conformal_quantile([3.0, 1.0, 2.0], 0.9) == 3.0  # rank 4 > n: the largest


def test_conformal_quantile_covers_exchangeable_data() -> None:
    """Marginal coverage ≥ nominal (and not far above) over many calibration draws."""
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(2000):
        s = rng.exponential(size=20)
        hits.append(rng.exponential() <= conformal_quantile(s, 0.9))
    assert 0.9 <= np.mean(hits) < 0.93  # exact: 19/21 ≈ 0.905


def test_uncalibrated_is_todays_percentile_interval() -> None:
    samples = [1.0, 2.0, 3.0, 4.0, 5.0]
    iv = volume_interval(samples, 3.0, None)
    lo, hi = np.percentile(samples, (5, 95))
    assert (iv.low_ml, iv.high_ml) == (pytest.approx(lo), pytest.approx(hi))
    assert not iv.calibrated and iv.method.startswith("uncalibrated")
    widened = volume_interval(samples, 9.0, None)  # samples all below: widened to 9
    assert widened.high_ml == 9.0 and widened.low_ml == pytest.approx(lo)


def test_calibrated_interval_scales_half_width_and_adds_floor() -> None:
    samples = [1.0, 2.0, 3.0, 4.0, 5.0]
    lo, hi = raw_interval(samples, 3.0)
    iv = volume_interval(samples, 3.0, CAL)
    half = 2.0 * (hi - lo) / 2 + 0.5
    assert iv.low_ml == pytest.approx(max(3.0 - half, 0.0))
    assert iv.high_ml == pytest.approx(3.0 + half)
    assert iv.calibrated and "split-conformal" in iv.method and "40 labeled scans" in iv.method


def test_calibrated_interval_is_clipped_at_zero_and_floored() -> None:
    iv = volume_interval([0.0] * 8, 0.0, CAL)  # hemorrhage-free prediction: [0, floor]
    assert (iv.low_ml, iv.high_ml) == (0.0, 0.5)
    near = volume_interval([0.1, 0.2, 0.3], 0.2, CAL)
    assert near.low_ml == 0.0


def test_weak_calibration_says_so() -> None:
    weak = IntervalCalibration(0.9, 1.0, 0.5, 3, 1.0, "validation split of abc", 0.0)
    assert weak.weak and not CAL.weak
    assert "only 3 calibration scan" in volume_interval([1.0, 2.0], 1.5, weak).method
    assert "WARNING" in weak.describe()


def test_volume_interval_refuses_empty_or_nan_samples() -> None:
    with pytest.raises(InputError):
        volume_interval([], 1.0, None)
    with pytest.raises(InputError):
        volume_interval([1.0, float("nan")], 1.0, CAL)


def _scans(n: int, seed: int) -> list[LabeledVolume]:
    """Predictions whose MC spread is 5x too narrow, plus hemorrhage-free scans (0/0)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 4 == 0:
            out.append(LabeledVolume((0.0,) * 8, 0.0, 0.0))
            continue
        v = float(rng.uniform(1.0, 60.0))
        spread = 0.05 * v
        samples = tuple(float(x) for x in v + spread * rng.standard_normal(8))
        out.append(LabeledVolume(samples, v, max(v + 5 * spread * rng.standard_normal(), 0.0)))
    return out


def test_score_of_a_hemorrhage_free_scan_is_zero() -> None:
    assert score(LabeledVolume((0.0,) * 8, 0.0, 0.0)) == 0.0
    assert score(LabeledVolume((0.0,) * 8, 0.0, 1.0)) == pytest.approx(1.0 / FLOOR_UNIT_ML)


def test_calibrate_restores_coverage_on_held_out_scans() -> None:
    cal, test = _scans(80, 1), _scans(400, 2)
    c = calibrate(cal, "synthetic")
    raw, _ = coverage_of(test, None)
    after, _ = coverage_of(test, c)
    assert raw < 0.6 and 0.85 <= after <= 0.97
    assert c.n_scans == 80 and c.empirical_coverage >= 0.9 and c.uncalibrated_coverage < 0.6
    assert c.floor_ml == pytest.approx(c.scale * FLOOR_UNIT_ML)


def test_calibration_json_round_trip() -> None:
    assert IntervalCalibration.from_json(CAL.to_json()) == CAL
    old = json.loads(CAL.to_json())
    del old["uncalibrated_coverage"]
    assert IntervalCalibration.from_json(json.dumps(old)).uncalibrated_coverage is None


@pytest.mark.parametrize(
    "text", ["", "[]", "{}", '{"coverage": 1.5, "scale": 1, "floor_ml": 0, "n_scans": 3}', "x"]
)
def test_malformed_calibration_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError):
        IntervalCalibration.from_json(text)


def _mc_info(**kw) -> ModelInfo:
    return ModelInfo(kind=KIND_MC, mc_samples=8, dropout_rate=0.2, dropout_at="head", **kw)


def test_model_info_round_trips_the_calibration() -> None:
    info = _mc_info(interval_calibration=CAL)
    meta = info.to_metadata()
    assert json.loads(meta[METADATA_KEY])["scale"] == 2.0
    assert ModelInfo.from_metadata(meta) == info


def test_model_info_without_calibration_reads_none() -> None:
    meta = _mc_info().to_metadata()
    assert METADATA_KEY not in meta
    assert ModelInfo.from_metadata(meta).interval_calibration is None


def test_model_info_refuses_malformed_calibration() -> None:
    meta = _mc_info().to_metadata() | {METADATA_KEY: '{"scale": "wide"}'}
    with pytest.raises(InputError, match="interval_calibration"):
        ModelInfo.from_metadata(meta)


def test_deterministic_model_cannot_carry_a_calibration() -> None:
    with pytest.raises(InputError):
        ModelInfo(interval_calibration=CAL)
