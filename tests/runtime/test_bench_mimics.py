"""benchmarks/bench_mimics.py runs end to end at its CI size and its summary is computed right."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mimics.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_mimics", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_mimics"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_held_out_seeds_are_disjoint_from_training_and_calibration():
    bm = _module()
    cases = bm.plan(20, 1, bm.SIZES_ML)
    assert len({c.seed for c in cases}) == len(cases)
    assert bm.HELD_OUT_SEED not in (0, 1)  # the training and calibration cohort seeds


def test_summary_counts_false_positives_coverage_and_large_errors():
    bm = _module()
    o = bm.Outcome
    rows = [
        o(0, "none", 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.97),
        o(1, "none", 0.0, 0.4, 0.0, 0.0, 0.6, 0.5, 0.96),
        o(2, "subdural", 40.0, 36.0, 0.8, 35.0, 41.0, 0.7, 0.98),
        o(3, "epidural", 10.0, 12.0, 0.9, 11.0, 13.0, 0.6, None),
    ]
    s = bm.summarize(rows)
    assert s["fp_ml_median"] == pytest.approx(0.2)
    assert s["fp_share_any"] == 0.5
    assert s["large_n"] == 1 and s["large_err_median"] == pytest.approx(0.1)
    assert s["interval_coverage"] == 0.75  # the epidural's interval misses 10 mL
    assert s["dice_by_type"] == {"subdural": 0.8, "epidural": 0.9}
    assert s["icv_dice_min"] == pytest.approx(0.96)


@pytest.mark.integration
@pytest.mark.slow
def test_bench_mimics_tiny(tmp_path: Path):
    out = tmp_path / "mimics.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hemorrhage-free: median FP mL" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["seed"] == 7_700_113
    assert [r["kind"] for r in doc["scans"]["model"]] == ["none", "intraparenchymal"]


@pytest.mark.slow
def test_bench_mimics_on_tuning_seeds_says_so(tmp_path: Path, capsys):
    """--seed 900000 (the tuning seed): other scans, and the output does not call them held out."""
    bm = _module()
    out = tmp_path / "tuning.json"
    assert bm.main(["--tiny", "--seed", "900000", "--json", str(out)]) == 0
    assert "tuning scans (seed 900000)" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["seed"] == 900_000
    tuning = bm.plan(1, 1, (12.0,), 900_000)[:2]  # the scans --tiny reads, from that seed
    assert not {c.seed for c in tuning} & {c.seed for c in bm.plan(1, 1, (12.0,))[:2]}
    read = [r["true_ml"] for r in doc["scans"]["model"]]
    assert read == [bm.make(c, 96, 12)[2] for c in tuning]  # those scans, not the held-out ones
    assert read[1] != bm.make(bm.plan(1, 1, (12.0,))[1], 96, 12)[2]


TUNE = BENCH.parent / "tune_components.py"


def test_tuning_seeds_are_not_the_held_out_ones():
    bm = _module()
    spec = importlib.util.spec_from_file_location("tune_components", TUNE)
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    assert tune.TUNING_SEED not in (0, 1, bm.HELD_OUT_SEED)
    held = {c.seed for c in bm.plan(20, 1, bm.SIZES_ML)}
    tuning = {c.seed for c in bm.plan(20, 1, bm.SIZES_ML, tune.TUNING_SEED)}
    assert not held & tuning


@pytest.mark.integration
@pytest.mark.slow
def test_tune_components_tiny(tmp_path: Path):
    out = tmp_path / "findings.json"
    proc = subprocess.run(
        [sys.executable, str(TUNE), "--tiny", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "min_component_slices  FP median / p95" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["tuning_seed"] == 900_000
    assert all({"ml", "slices", "true", "overlap"} <= set(r) for r in doc["findings"])
    assert any(r["true"] for r in doc["findings"])  # the subdural slab is found


def test_soft_kernel_summary_leaves_out_the_noisy_scans():
    bm = _module()
    o = bm.Outcome
    rows = [
        o(0, "none", 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.97, noise_hu=4.0),
        o(1, "none", 0.0, 3.0, 0.0, 0.0, 3.5, 0.5, 0.96, noise_hu=30.0),  # sharp: left out
        o(2, "subdural", 40.0, 38.0, 0.9, 35.0, 41.0, 0.7, 0.98, noise_hu=None),  # unmeasured
    ]
    soft = bm.soft_summaries({"model": rows})["model"]
    assert soft["n_scans"] == 2 and soft["fp_ml_p95"] == 0.0
    only_sharp = bm.soft_summaries({"model": rows[1:2]})["model"]
    assert only_sharp == {"n_scans": 0}
