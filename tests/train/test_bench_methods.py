"""benchmarks/bench_methods.py --tiny: the method comparison runs end to end at its CI size,
covers every method × fraction × seed, prints its table, and resumes from ``--work``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_methods.py"
METHODS = {"unet", "supervised", "cutmix", "cutpaste", "ugss"}


def _run(
    out: Path, work: Path, *extra: str, timeout: int = 180
) -> subprocess.CompletedProcess[str]:
    """bench_methods.py --tiny with ``extra`` options, its runs kept in ``work``."""
    cmd = [sys.executable, str(BENCH), "--tiny", *extra, "--work", str(work), "--json", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_bench_methods_tiny(tmp_path: Path):
    out = tmp_path / "methods.json"
    proc = _run(out, tmp_path / "work", "--seeds", "0,1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    fractions = doc["args"]["fractions"]
    assert len(fractions) == 2
    runs = {(r["method"], r["fraction"], r["seed"]) for r in doc["runs"]}
    assert runs == {(m, f, s) for m in METHODS for f in fractions for s in (0, 1)}
    assert len(doc["runs"]) == len(runs)
    for r in doc["runs"]:
        assert r["config"]["model"]["arch"] == ("unet" if r["method"] == "unet" else "resunet")
        t = r["test"]
        assert r["steps"] == 2
        assert 0.0 <= t["pixel_accuracy"] <= 1.0
        assert t["n_hemorrhage"] + t["n_empty"] == t["n_scans"] == len(r["test_ids"])
        assert 0 <= t["fp_on_empty"] <= t["n_empty"]
        assert t["dice"] != t["dice"] or 0.0 <= t["dice"] <= 1.0  # nan: every scan empty
        # the same split for every method at one fraction
        same = [x for x in doc["runs"] if x["fraction"] == r["fraction"]]
        assert all(x["test_ids"] == r["test_ids"] and x["val_ids"] == r["val_ids"] for x in same)
        assert all(x["labeled_ids"] == r["labeled_ids"] for x in same if x["seed"] == r["seed"])
    assert {(a["method"], a["fraction"]) for a in doc["summary"]} == {
        (m, f) for m in METHODS for f in fractions
    }
    assert all(a["n_seeds"] == 2 for a in doc["summary"])
    assert "| labeled | method | seeds | test Dice | test Jaccard" in proc.stdout
    assert "Per run:" in proc.stdout

    # --work keeps the runs: a second call trains nothing and reports the same numbers
    again = tmp_path / "again.json"
    proc2 = _run(again, tmp_path / "work", "--seeds", "0,1")
    assert proc2.returncode == 0, proc2.stderr[-2000:]
    doc2 = json.loads(again.read_text())
    assert doc2["runs_trained"] == 0
    assert [r["test"]["dice"] for r in doc2["runs"]] == [r["test"]["dice"] for r in doc["runs"]]


ABLATIONS = {"ugss-ema", "ugss-noconf", "ugss-nounc", "ugss-smoothl1"}
RECORD_KEYS = {"setting", "labeled_fraction", "method", "seed", "dice_hem", "fp_ml_free"}


@pytest.mark.slow
def test_bench_methods_shift_tiny(tmp_path: Path):
    """--shift --tiny: every planned (setting, fraction, method, seed) once, as the issue's
    records; labeled scans from site A (shift) or B (same), one site-B test cohort for all."""
    out = tmp_path / "methods.json"
    # one seed: the plan's seed loop is the same code for every seed (test_bench_methods_tiny
    # covers several), and 18 runs instead of 36 keep the suite short
    proc = _run(out, tmp_path / "work", "--shift", "--seeds", "0", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads(out.read_text())
    assert isinstance(records, list) and records
    assert all(set(r) == RECORD_KEYS for r in records)
    keys = [(r["setting"], r["labeled_fraction"], r["method"], r["seed"]) for r in records]
    assert len(keys) == len(set(keys))
    expected = set()
    for s in (0,):
        expected |= {("shift", 0.1, m, s) for m in METHODS | ABLATIONS}
        expected |= {("shift", 0.3, m, s) for m in METHODS}
        expected |= {("same", f, m, s) for f in (0.1, 0.3) for m in ("supervised", "ugss")}
    assert set(keys) == expected
    for r in records:
        assert r["dice_hem"] != r["dice_hem"] or 0.0 <= r["dice_hem"] <= 1.0
        assert r["fp_ml_free"] >= 0.0

    details = json.loads((tmp_path / "methods-details.json").read_text())
    runs = details["runs"]
    assert len(runs) == len(records)
    test_ids = runs[0]["test_ids"]
    assert len(test_ids) == 4
    for r in runs:
        assert r["test_ids"] == test_ids  # one site-B test cohort for every run
        site = "A" if r["setting"] == "shift" else "B"
        assert r["labeled_ids"] and all(i.startswith(site) for i in r["labeled_ids"])
        assert all(i.startswith(site) for i in r["val_ids"])
        assert r["n_unlabeled"] == 5  # the site-B unlabeled folder, nothing of site A
        t = r["test"]
        assert t["n_hemorrhage"] == 2 and t["n_empty"] == 2
        method = r["config"]["method"]
        if r["method"] == "ugss-nounc":
            assert not method["uncertainty_mask"] and not method["use_confidence"]
        elif r["method"] == "ugss-noconf":
            assert method["uncertainty_mask"] and not method["use_confidence"]
        elif r["method"] == "ugss-ema":
            assert method["teacher_update"] == "ema"
        elif r["method"] == "ugss-smoothl1":
            assert method["consistency"] == "smoothl1"
        if r["method"].startswith("ugss"):
            assert method["method"] == "ugss"
    cohorts = details["cohorts"]
    assert {k: v["site"] for k, v in cohorts.items()} == {
        "A-labeled": "A",
        "B-labeled": "B",
        "B-unlabeled": "B",
        "B-test": "B",
    }
    assert len({v["seed"] for v in cohorts.values()}) == 4
    assert not {v["seed"] for v in cohorts.values()} & {0, 1, 7700113, 900000}
    assert "| setting | labeled | method | seeds | Dice hem. | FP mL free" in proc.stdout
    assert "Issue 17 target" in proc.stdout


@pytest.mark.slow
def test_bench_methods_folds_tiny(tmp_path: Path):
    """--folds 2: run i tests fold i; the two test splits partition the labeled patients."""
    out = tmp_path / "folds.json"
    plan = ("--folds", "2", "--methods", "supervised,ugss", "--fractions", "0.5")
    proc = _run(out, tmp_path / "w", *plan)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert {(r["method"], r["seed"]) for r in doc["runs"]} == {
        (m, k) for m in ("supervised", "ugss") for k in (0, 1)
    }
    tests = {r["seed"]: set(r["test_ids"]) for r in doc["runs"]}
    assert tests[0] and tests[1] and not tests[0] & tests[1]
    for r in doc["runs"]:
        assert r["config"]["data"]["folds"] == 2 and r["config"]["data"]["fold"] == r["seed"]
        assert not set(r["labeled_ids"] + r["val_ids"]) & tests[r["seed"]]
    assert set(doc["splits"]) == {"f0.5-fold0", "f0.5-fold1"}


def test_tuning_settings_reach_the_sections_that_hold_their_fields():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_methods", BENCH)
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)
    from ugss.train.config import DataConfig, MethodConfig

    keys = {k for changes in (*bm.ABLATIONS.values(), *bm.TUNING.values()) for k in changes}
    fields = {f.name for cls in (DataConfig, MethodConfig) for f in dataclasses.fields(cls)}
    assert keys <= fields  # a misspelt change would otherwise be dropped silently
    lab = bm.method_config("ugss-late-lab")
    assert (lab.method, lab.lambda_ramp, lab.select_after_ramp) == ("ugss", 0.5, True)
    assert bm.changes_for("ugss-late-lab", DataConfig) == {"unlabeled_share": 0.25}
    assert bm.changes_for("ugss-ema", DataConfig) == {}
    assert bm.method_config("ugss-late-ema").teacher_update == "ema"
