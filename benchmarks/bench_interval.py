"""Coverage of the MC volume interval on held-out synthetic scans: uncalibrated vs calibrated.

    .venv/bin/python benchmarks/bench_interval.py                  # bundled model, 40 + 60 scans
    .venv/bin/python benchmarks/bench_interval.py --model m.onnx --json out.json
    .venv/bin/python benchmarks/bench_interval.py --tiny           # CI size (a few small scans)

Each scan is ``ugss.synth.make_scan(seed, matrix=…)`` with everything else drawn (about 75 %
with hemorrhage, 15 % thin-slice) and goes through the deployment path
(``ugss.export.interval_calibration.measure_volume``: ``segment_volume`` with an onnxruntime
engine, ``ugss-infer``'s defaults). Its interval is scored against the true mask volume.

Seeds, disjoint by construction:

- calibration: ``CALIBRATION_SEED + i`` (700000, 700001, …), ``i < --calibration-scans``;
- test (held out): ``TEST_SEED + i`` (800000, 800001, …), ``i < --test-scans`` (< 100000).

Neither range is used for training or for any other calibration: training cohorts
(``ugss.train.synthetic``, ``make_cohort``) draw each scan's seed from
``SeedSequence([cohort seed, i])`` (63-bit numbers; the bundled model's cohort seed is 0), int8
calibration uses 9000+, ``bench_export`` 101 and 1000+.

A model that already carries a calibration (``ugss-export`` stores one) is scored with it and
the calibration scans are not generated, unless ``--refit`` asks to calibrate anew on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ugss.export.interval_calibration import mc_engine, measure_volume
from ugss.runtime.engines import Engine, bundled_model_path
from ugss.runtime.interval import (
    IntervalCalibration,
    LabeledVolume,
    calibrate,
    covers,
    volume_interval,
)

CALIBRATION_SEED = 700_000
TEST_SEED = 800_000
MAX_SCANS = 100_000  # per set: keeps the two seed ranges apart


def labeled_scans(
    engine: Engine, seeds: range, matrix: int, max_slices: int | None
) -> tuple[list[LabeledVolume], float]:
    """Synthetic scans of ``seeds`` through the runtime, and the mean seconds per scan."""
    from ugss.synth import make_scan

    out, t0 = [], time.perf_counter()
    for seed in seeds:
        volume, mask, _ = make_scan(seed, matrix=matrix, max_slices=max_slices)
        scan = measure_volume(engine, volume, mask)
        if scan is not None:  # not assessed (not a head CT): no interval to score
            out.append(scan)
    return out, (time.perf_counter() - t0) / max(len(seeds), 1)


def score_set(scans: list[LabeledVolume], cal: IntervalCalibration | None) -> dict:
    """Coverage (all, with and without hemorrhage) and widths of one kind of interval."""
    intervals = [volume_interval(s.sample_volumes_ml, s.volume_ml, cal) for s in scans]
    hit = np.array([covers(iv, s.true_ml) for iv, s in zip(intervals, scans, strict=True)])
    width = np.array([iv.high_ml - iv.low_ml for iv in intervals])
    pos = np.array([s.true_ml > 0 for s in scans])

    def share(sel: np.ndarray) -> float | None:
        return float(hit[sel].mean()) if sel.any() else None

    return {
        "coverage": share(np.ones_like(pos)),
        "coverage_hemorrhage": share(pos),
        "coverage_no_hemorrhage": share(~pos),
        "median_width_ml": float(np.median(width)),
        "mean_width_ml": float(width.mean()),
    }


def run(args: argparse.Namespace) -> dict:
    engine = mc_engine(args.model)
    stored = engine.info.interval_calibration
    cal_seeds = range(CALIBRATION_SEED, CALIBRATION_SEED + args.calibration_scans)
    test_seeds = range(TEST_SEED, TEST_SEED + args.test_scans)
    doc: dict = {"model": str(args.model), "matrix": args.matrix}
    doc["seeds"] = {"calibration": [], "test": list(test_seeds)}
    if stored is not None and not args.refit:
        cal, doc["calibration"] = stored, {"stored": True, **asdict(stored)}
    else:
        scans, per_scan = labeled_scans(engine, cal_seeds, args.matrix, args.max_slices)
        cal = calibrate(scans, f"synthetic seeds {cal_seeds.start}-{cal_seeds.stop - 1}")
        doc["seeds"]["calibration"] = list(cal_seeds)
        doc["calibration"] = {"stored": False, "seconds_per_scan": per_scan, **asdict(cal)}
    test, per_scan = labeled_scans(engine, test_seeds, args.matrix, args.max_slices)
    doc["test"] = {
        "n_scans": len(test),
        "n_hemorrhage": sum(s.true_ml > 0 for s in test),
        "seconds_per_scan": per_scan,
        "uncalibrated": score_set(test, None),
        "calibrated": score_set(test, cal),
    }
    return doc


def print_summary(doc: dict) -> None:
    c, t = doc["calibration"], doc["test"]
    where = "stored in the model" if c["stored"] else "fitted here"
    print(f"calibration ({where}): {IntervalCalibration(**_fields(c)).describe()}")
    print(f"held-out test: {t['n_scans']} scans ({t['n_hemorrhage']} with hemorrhage)")
    for kind in ("uncalibrated", "calibrated"):
        r = t[kind]
        parts = [f"coverage {r['coverage']:.0%}"]
        for key, label in (("coverage_hemorrhage", "blood"), ("coverage_no_hemorrhage", "none")):
            if r[key] is not None:
                parts.append(f"{label} {r[key]:.0%}")
        parts.append(f"median width {r['median_width_ml']:.2f} mL")
        print(f"  {kind:>12}: " + ", ".join(parts))


def _fields(c: dict) -> dict:
    names = IntervalCalibration.__dataclass_fields__
    return {k: v for k, v in c.items() if k in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="MC ONNX model (default: bundled)")
    p.add_argument("--calibration-scans", type=int, default=40)
    p.add_argument("--test-scans", type=int, default=60)
    p.add_argument("--matrix", type=int, default=256, help="synthetic matrix (training: 256)")
    p.add_argument("--max-slices", type=int, default=None, help="cap slices per scan")
    p.add_argument("--refit", action="store_true", help="calibrate anew even if stored")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--tiny", action="store_true", help="CI size: 3 + 3 small scans")
    args = p.parse_args(argv)
    if args.tiny:
        args.calibration_scans, args.test_scans, args.matrix, args.max_slices = 3, 3, 96, 8
    if not (1 <= args.calibration_scans < MAX_SCANS and 1 <= args.test_scans < MAX_SCANS):
        p.error(f"--calibration-scans and --test-scans must be in 1..{MAX_SCANS - 1}")
    args.model = args.model or bundled_model_path()
    doc = run(args)
    print_summary(doc)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
