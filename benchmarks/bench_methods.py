"""Method comparison in the shape of the paper's Table 3, on a synthetic cohort.

Trains UNet supervised (``unet``: the plain UNet, Table 3's first rows) / ResUNet supervised /
CutMix / CutPaste / UGSS at two labeled fractions over several seeds with
``ugss.train.loop.train`` and scores each best checkpoint on the test split, on the native
grid, with the project's evaluation code (``ugss.train.eval_cli.evaluate_records`` →
``ugss.evaluation.EvaluationAccumulator``: Dice and Jaccard per scan, paper eq. 16–17, and
pixel accuracy, eq. 18). Prints mean ± sd per method × fraction, the paired difference to
supervised, and every run's numbers; ``--json`` writes all of it. The per-scan Dice mean counts
a hemorrhage-free scan with a single false-positive voxel as 0 (both-empty scans are left out),
so the table also gives the mean over the scans with hemorrhage and the number of
hemorrhage-free test scans with any positive voxel.

    .venv/bin/python benchmarks/bench_methods.py --work /tmp/bench_methods --json methods.json
    .venv/bin/python benchmarks/bench_methods.py --tiny                  # seconds, for CI
    .venv/bin/python benchmarks/bench_methods.py --shift --jobs 2 --work runs/bench_shift \
        --json runs/bench_shift/methods.json                             # ≈ 2 h, 2 cores

What is held fixed within one fraction: the cohort, the split (one ``split_seed`` for every
run, so the same validation and test scans and the same labeled subset), the number of steps
(early stopping off), batch size, learning-rate and λ_u schedules. Per seed only the initial
weights, the batch sampling / augmentation stream and the dropout stream change; every method
gets the same seed. ``--vary-split`` uses ``split_seed = seed`` instead (a different labeled
subset per seed — and then different validation/test scans per seed too, because the project's
splitter draws test, validation and labeled patients from one generator; all methods of one
seed still share them).

``--shift``: the domain-shift benchmark (the hospital's situation). Labeled scans come from
synthetic "site A", unlabeled and test scans from "site B" (``ugss.synth.sites``: kernel and
noise, slice thickness, field of view / matrix, head size, atrophy, mimic density differ); the
unlabeled scans enter through the ``--unlabeled`` folder path (``DataConfig.unlabeled_dirs``).
Methods unet / supervised / cutmix / cutpaste / ugss at each fraction, the UGSS ablations
(``ugss-ema``, ``ugss-noconf``, ``ugss-nounc``, ``ugss-smoothl1``) at the lowest fraction, and for
contrast supervised and ugss in the same-site setting (labeled scans from site B too). Scores:
Dice over the site-B test scans with hemorrhage (``dice_hem``) and false-positive volume in mL
over the hemorrhage-free ones (``fp_ml_free``), reported separately; ``--json`` gets the list
of records ``{setting, labeled_fraction, method, seed, dice_hem, fp_ml_free}`` (every run's
details stay in ``--work``), and the table gives paired differences to supervised with p-values.
See ``benchmarks/README-methods.md`` ("Domain shift") for the design, seeds and cost.

``--folds K`` is k-fold cross-validation by patient (the paper reports 5-fold): run i of each
method and fraction tests fold i of one stratified partition of the labeled patients
(``ugss-train --folds K --fold i``) and trains with seed i, so every labeled patient is tested
once; the per-"seed" statistics are then per fold.

``--work DIR`` keeps the cohort, the slice cache and every run; a run whose ``result.json``
exists is not trained again, so an interrupted benchmark continues where it stopped.
``--jobs N`` trains N runs at once in separate processes with ``threads / N`` torch threads each.
See ``benchmarks/README-methods.md`` for the measured results.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ugss.train.config import DataConfig, MethodConfig, OptimConfig, RunConfig, TrainConfig
from ugss.train.data import prepare_data
from ugss.train.eval_cli import evaluate_records
from ugss.train.loop import train
from ugss.train.manifest import read_manifest, read_physionet
from ugss.train.model import ModelConfig
from ugss.train.predict import load_checkpoint, predict_volume
from ugss.train.synthetic import MARKER, ensure_synthetic_cohort
from ugss.train.unlabeled import unlabeled_records

METHODS = ("unet", "supervised", "cutmix", "cutpaste", "ugss")  # unet: supervised plain UNet
RESULT = "result.json"

# --shift: the UGSS ablations (Tables 8–11) as MethodConfig changes; run at the lowest fraction
ABLATIONS: dict[str, dict[str, Any]] = {
    "ugss-ema": {"teacher_update": "ema"},  # plain EMA teacher instead of wEMA
    "ugss-noconf": {"use_confidence": False},  # no confidence weight p_conf (δ mask kept)
    "ugss-nounc": {"uncertainty_mask": False, "use_confidence": False},  # no uncertainty at all
    "ugss-smoothl1": {"consistency": "smoothl1"},  # smooth-L1 instead of KL consistency
}
# UGSS settings tried on the issue's "fixes the paper leaves open" (not in the default plan, run
# at every fraction when named in --methods): λ_u reaches m at half the run and the best
# checkpoint is chosen only among the epochs after that (MethodConfig.select_after_ramp). A key
# goes to the config section that has the field: unlabeled_share (DataConfig) 0.25 gives 6
# labeled + 2 unlabeled crops per batch of 8, where the default 4 + 4 halves the labeled crops a
# supervised run sees in as many steps.
_LATE = {"lambda_ramp": 0.5, "select_after_ramp": True}
TUNING: dict[str, dict[str, Any]] = {
    "ugss-late": _LATE,
    "ugss-late-ema": {**_LATE, "teacher_update": "ema"},
    "ugss-late-lab": {**_LATE, "unlabeled_share": 0.25},
    "ugss-late-m1": {**_LATE, "lambda_max": 1.0},
}
SHIFT_METHODS = (*METHODS, *ABLATIONS)
SHIFT_KNOWN = (*SHIFT_METHODS, *TUNING)  # what --shift --methods accepts
SAME_METHODS = ("supervised", "ugss")  # the same-site contrast
SHIFT_STEPS = 40  # --shift's steps per epoch unless --steps is given (6 × 40 = 240 steps)
# Cohort seeds of the shift benchmark, disjoint from every other seed the project draws cohorts
# with (training cohorts 0 / 1, bench_mimics 7700113, tune_components 900000; make_cohort's scan
# seeds derive from [cohort seed, index], so distinct cohort seeds give distinct scans).
SHIFT_COHORTS: dict[str, tuple[str, int]] = {  # name: (site, cohort seed)
    "A-labeled": ("A", 4_170_001),
    "B-labeled": ("B", 4_170_002),  # the same-site setting's labeled scans
    "B-unlabeled": ("B", 4_170_003),
    "B-test": ("B", 4_170_004),
}


def _csv(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", default="0.1,0.3", help="labeled fractions of the training scans")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps", type=int, help="steps per epoch (default 75; --shift: 40)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--scans", type=int, default=40, help="synthetic cohort size")
    p.add_argument("--matrix", type=int, default=256, help="synthetic scan matrix")
    p.add_argument("--cohort-seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--vary-split", action="store_true", help="split_seed = seed (see docstring)")
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        help="k-fold cross-validation by patient: k runs per method and fraction, run i tests "
        "fold i and trains with seed i (replaces --seeds; not with --shift or --vary-split)",
    )
    p.add_argument("--size", type=int, default=160, help="model input size")
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (processes)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in all (0: all cores)")
    p.add_argument("--work", type=Path, help="keep cohort, cache and runs here (resumable)")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--tiny", action="store_true", help="CI size: 8 scans at 64², 2 steps")
    p.add_argument(
        "--shift",
        action="store_true",
        help="domain shift: labeled site A, unlabeled and test site B",
    )
    p.add_argument("--unlabeled-scans", type=int, default=28, help="--shift: site-B unlabeled")
    p.add_argument(
        "--val-scans", type=int, default=4, help="--shift: validation scans (labeled site)"
    )
    p.add_argument("--test-scans", type=int, default=16, help="--shift: site-B test scans")
    p.add_argument(
        "--test-free", type=float, default=0.375, help="--shift: hemorrhage-free test share"
    )
    p.add_argument("--no-same", action="store_true", help="--shift: skip the same-site runs")
    p.add_argument("--no-ablations", action="store_true", help="--shift: skip the ablations")
    args = p.parse_args(argv)
    if args.shift and args.methods == p.get_default("methods"):
        args.methods = ",".join(SHIFT_METHODS)
    if args.steps is None:
        # --shift: 54 runs, two thirds of them teacher methods (~2× a supervised step, plus a
        # second validation): 6 × 40 steps keeps the plan near two hours on 2 cores
        args.steps = SHIFT_STEPS if args.shift else 75
    if args.tiny and args.shift:
        args.unlabeled_scans, args.val_scans, args.test_scans = 5, 2, 4
        args.test_free = 0.5
    if args.tiny:
        args.scans, args.matrix, args.size, args.crop = 8, 64, 32, 32
        args.epochs, args.steps, args.batch = 1, 2, 4
        if args.jobs == p.get_default("jobs"):
            args.jobs = 1
        args.threads = args.threads or 1  # one thread: robust on a busy machine
        if args.seeds == p.get_default("seeds"):
            args.seeds = "0,1"
    args.fractions = _csv(args.fractions, float)
    args.seeds = _csv(args.seeds, int)
    if args.folds:
        if args.folds < 2 or args.shift or args.vary_split:
            p.error("--folds needs k >= 2 and neither --shift nor --vary-split")
        args.seeds = list(range(args.folds))  # run i: fold i, seed i
    args.methods = _csv(args.methods, str)
    known = SHIFT_KNOWN if args.shift else METHODS
    bad = [m for m in args.methods if m not in known]
    if bad:
        p.error(f"unknown method(s) {bad}; choose from {', '.join(known)}")
    if args.shift and (args.unlabeled_scans < 1 or args.val_scans < 1 or args.test_scans < 2):
        p.error("--shift needs >= 1 unlabeled, >= 1 validation and >= 2 test scans")
    if args.shift and any(not 0.0 < f < 1.0 for f in args.fractions):
        p.error("--shift: labeled fractions must be in (0, 1)")
    if not args.fractions or not args.seeds or not args.methods:
        p.error("need at least one fraction, seed and method")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    total = args.threads or os.cpu_count() or 1
    args.threads_per_job = max(1, total // args.jobs)
    return args


def data_config(args: argparse.Namespace, work: Path, fraction: float, seed: int) -> DataConfig:
    return DataConfig(
        synth_scans=args.scans,
        synth_matrix=args.matrix,
        synth_seed=args.cohort_seed,
        synth_dir=str(work / "cohort"),
        cache_dir=str(work / "cache"),
        input_size=args.size,
        crop_size=min(args.crop, args.size),
        labeled_fraction=fraction,
        split_seed=seed if args.vary_split else args.split_seed,
        folds=args.folds,
        fold=seed if args.folds else 0,  # with --folds, run "seed" i tests fold i
    )


def run_config(args: argparse.Namespace, work: Path, method: str, fraction: float, seed: int):
    folder = work / "runs" / (f"k{args.folds}" if args.folds else "")
    out = folder / f"f{fraction:g}" / f"{method}-s{seed}"
    return train_config(args, data_config(args, work, fraction, seed), method, seed, out), out


def changes_for(method: str, section: type) -> dict[str, Any]:
    """The ablation's or tuning setting's changes that are fields of ``section``."""
    names = {f.name for f in dataclasses.fields(section)}
    return {k: v for k, v in {**ABLATIONS, **TUNING}.get(method, {}).items() if k in names}


def method_config(method: str) -> MethodConfig:
    """``unet`` is supervised with the plain UNet; the ablations and tuning settings are UGSS
    with their changes."""
    if method == "unet":
        return MethodConfig(method="supervised")
    if method in ABLATIONS or method in TUNING:
        return MethodConfig(method="ugss", **changes_for(method, MethodConfig))
    return MethodConfig(method=method)


def train_config(
    args: argparse.Namespace, data: DataConfig, method: str, seed: int, out: Path
) -> TrainConfig:
    return TrainConfig(
        data=dataclasses.replace(data, **changes_for(method, DataConfig)),
        model=ModelConfig(arch="unet" if method == "unet" else "resunet"),
        method=method_config(method),
        optim=OptimConfig(
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            batch_size=args.batch,
            warmup_epochs=min(1.0, args.epochs / 4),
            patience=args.epochs,  # no early stopping: every run takes the same steps
        ),
        run=RunConfig(
            out=str(out), device="cpu", seed=seed, threads=args.threads_per_job, val_batch_size=8
        ),
    )


def evaluate_test(best: str, cohort: Path, test_ids: list[str] | None) -> dict[str, Any]:
    """Native-grid test metrics of a checkpoint with the project's evaluation code
    (``test_ids`` None: every scan of ``cohort``)."""
    ck = load_checkpoint(best, device="cpu")
    records = read_physionet(cohort)
    if test_ids is not None:
        wanted = set(test_ids)
        records = [r for r in records if r.scan_id in wanted]

    def predict(volume):
        with torch.no_grad():
            prob = predict_volume(
                ck.model, volume, input_size=ck.input_size, windows=ck.windows, batch_size=8
            )
        return prob, None

    s = evaluate_records(records, predict, ck.threshold)
    o = s.overlap
    hem = [r for r in s.scans if r.truth_positive]
    free = [r for r in s.scans if not r.truth_positive]
    return {
        "dice": o.dice_mean,
        "dice_sd_scans": o.dice_std,
        "jaccard": o.jaccard_mean,
        "jaccard_sd_scans": o.jaccard_std,
        "dice_pooled": o.dice_pooled,
        "jaccard_pooled": o.jaccard_pooled,
        "dice_empty_as_one": o.dice_mean_empty_as_one,
        "pixel_accuracy": s.pixel_accuracy,
        "n_scans": s.n_scans,
        "n_scored": o.n_scans_scored,
        "per_scan_dice": {r.scan_id: r.dice for r in s.scans},
        # the per-scan mean above counts a hemorrhage-free scan with any false-positive voxel
        # as Dice 0 (eq. 16): also the mean over the scans with hemorrhage, and that count
        "dice_hemorrhage": _mean_sd([r.dice for r in hem])[0],
        "jaccard_hemorrhage": _mean_sd([r.jaccard for r in hem])[0],
        "n_hemorrhage": len(hem),
        "fp_on_empty": sum(1 for r in s.scans if not r.truth_positive and r.pred_positive),
        "n_empty": sum(1 for r in s.scans if not r.truth_positive),
        # every voxel called blood on a hemorrhage-free scan is a false positive: mean mL
        "fp_ml_free": _mean_sd([r.pred_volume_ml for r in free])[0],
        "test_ids": [r.scan_id for r in s.scans],
        "scans": [r.to_dict() for r in s.scans],
    }


def run_one(cfg: TrainConfig, out: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run, score its best checkpoint on the test split, write ``result.json``."""
    if out.exists():  # an interrupted run: start it again from scratch
        shutil.rmtree(out)
    torch.set_num_threads(cfg.run.threads)
    t0 = time.perf_counter()
    res = train(cfg)
    t1 = time.perf_counter()
    split = res.data["split"]
    if spec.get("test_cohort"):  # --shift: every scan of the site-B test cohort
        test = evaluate_test(res.best_checkpoint, Path(spec["test_cohort"]), None)
    else:
        test = evaluate_test(res.best_checkpoint, Path(cfg.data.synth_dir), split["test"])
    t2 = time.perf_counter()
    doc = {
        **spec,
        "val_dice": res.best_val_dice,
        "best_epoch": res.best_epoch,
        "epochs": res.epochs_run,
        "steps": res.steps,
        "test_dice_model_grid": res.test_dice,
        "test": test,
        "train_s": t1 - t0,
        "eval_s": t2 - t1,
        "wall_s": t2 - t0,
        "threads": cfg.run.threads,
        "n_labeled": len(split["train_labeled"]),
        "n_unlabeled": len(split["train_unlabeled"]),
        "val_ids": split["val"],
        "test_ids": test["test_ids"] if spec.get("test_cohort") else split["test"],
        "labeled_ids": split["train_labeled"],
        "eval_model": getattr(res, "eval_model", None),
        "lambda_u_reached": getattr(res, "lambda_u_reached", None),
        "config": cfg.to_dict(),
    }
    for name in ("last.pt",):  # keep best.pt for re-evaluation, drop the rest
        (out / name).unlink(missing_ok=True)
    (out / RESULT).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def train_runs(
    todo: list[tuple[TrainConfig, Path, dict[str, Any]]],
    kept: int,
    args: argparse.Namespace,
    done: Callable[[dict[str, Any]], None],
) -> None:
    """Say the plan, then train ``todo`` (``--jobs`` processes) and hand each result to
    ``done`` as it finishes."""
    print(
        f"{len(todo)} run(s) to train, {kept} kept; {args.jobs} job(s) × "
        f"{args.threads_per_job} thread(s); {args.epochs} × {args.steps} steps, batch {args.batch}",
        flush=True,
    )
    if args.jobs == 1:
        for t in todo:
            done(run_one(*t))
        return
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        for fut in as_completed([pool.submit(run_one, *t) for t in todo]):
            done(fut.result())


def upgrade(doc: dict[str, Any], out: Path) -> dict[str, Any]:
    """A result written before the hemorrhage-scan metrics existed: score its best.pt again."""
    if "dice_hemorrhage" in doc["test"] or not (out / "best.pt").is_file():
        return doc
    cohort = Path(doc["config"]["data"]["synth_dir"])
    doc["test"] = evaluate_test(str(out / "best.pt"), cohort, doc["test_ids"])
    (out / RESULT).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _mean_sd(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def _pm(values: list[float], spec: str = ".3f") -> str:
    m, s = _mean_sd(values)
    return f"{m:{spec}} ± {s:{spec}}"


def aggregate(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for f in args.fractions:
        sup = {r["seed"]: r for r in rows if r["fraction"] == f and r["method"] == "supervised"}
        for m in args.methods:
            rs = sorted(
                (r for r in rows if r["fraction"] == f and r["method"] == m),
                key=lambda r: r["seed"],
            )
            if not rs:
                continue
            agg: dict[str, Any] = {"fraction": f, "method": m, "n_seeds": len(rs)}
            cols = {
                "test_dice": [r["test"]["dice"] for r in rs],
                "test_jaccard": [r["test"]["jaccard"] for r in rs],
                "test_dice_pooled": [r["test"]["dice_pooled"] for r in rs],
                "test_dice_hemorrhage": [r["test"].get("dice_hemorrhage") for r in rs],
                "fp_on_empty": [r["test"].get("fp_on_empty") for r in rs],
                "pixel_accuracy": [r["test"]["pixel_accuracy"] for r in rs],
                "val_dice": [r["val_dice"] for r in rs],
                "steps": [r["steps"] for r in rs],
                "wall_s": [r["wall_s"] for r in rs],
            }
            if m != "supervised" and sup:
                cols["test_dice_minus_supervised"] = [
                    r["test"]["dice"] - sup[r["seed"]]["test"]["dice"]
                    for r in rs
                    if r["seed"] in sup
                ]
            for k, v in cols.items():
                mean, sd = _mean_sd(v)
                agg[k] = {"mean": mean, "sd": sd, "values": v}
            agg["n_labeled"] = rs[0]["n_labeled"]
            agg["n_unlabeled"] = rs[0]["n_unlabeled"]
            out.append(agg)
    return out


def markdown(rows: list[dict[str, Any]], agg: list[dict[str, Any]]) -> str:
    lines = [
        "| labeled | method | seeds | test Dice | test Jaccard | Dice pooled | Dice hem. scans "
        "| FP empty scans | PA | val Dice | Δ Dice vs sup (paired) | steps | wall s / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in agg:
        d = a.get("test_dice_minus_supervised")
        delta = "—" if d is None else f"{d['mean']:+.3f} ± {d['sd']:.3f}"
        lines.append(
            f"| {a['fraction']:g} ({a['n_labeled']} L + {a['n_unlabeled']} U) | {a['method']} "
            f"| {a['n_seeds']} | {_pm(a['test_dice']['values'])} "
            f"| {_pm(a['test_jaccard']['values'])} | {_pm(a['test_dice_pooled']['values'])} "
            f"| {_pm(a['test_dice_hemorrhage']['values'])} "
            f"| {_pm(a['fp_on_empty']['values'], '.1f')} "
            f"| {_pm(a['pixel_accuracy']['values'], '.4f')} | {_pm(a['val_dice']['values'])} "
            f"| {delta} | {a['steps']['mean']:.0f} | {a['wall_s']['mean']:.0f} |"
        )
    lines += [
        "",
        "Per run:",
        "",
        "| labeled | method | seed | test Dice | test Jaccard | Dice pooled | Dice hem. scans "
        "| FP empty | PA | val Dice | best epoch | steps | train s | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["fraction"], METHODS.index(r["method"]), r["seed"])):
        t = r["test"]
        lines.append(
            f"| {r['fraction']:g} | {r['method']} | {r['seed']} | {t['dice']:.3f} "
            f"| {t['jaccard']:.3f} | {t['dice_pooled']:.3f} "
            f"| {t.get('dice_hemorrhage', float('nan')):.3f} "
            f"| {t.get('fp_on_empty', '?')}/{t.get('n_empty', '?')} | {t['pixel_accuracy']:.4f} "
            f"| {r['val_dice']:.3f} | {r['best_epoch']} | {r['steps']} | {r['train_s']:.0f} "
            f"| {r['eval_s']:.1f} |"
        )
    return "\n".join(lines)


def prepare_cohort(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate and cache the cohort once (runs in parallel must not race on the cache)."""
    splits = {}
    for f in args.fractions:
        per_run = args.vary_split or args.folds
        for seed in args.seeds if per_run else args.seeds[:1]:
            d = data_config(args, work, f, seed)
            root = ensure_synthetic_cohort(d)
            data = prepare_data(read_physionet(root), d, cache_root=d.cache_dir)
            tag = f"-fold{seed}" if args.folds else (f"-s{seed}" if args.vary_split else "")
            splits[f"f{f:g}{tag}"] = data.split.to_dict()
    return splits


# ---------------------------------------------------------------------------------------------
# --shift: labeled scans from site A, unlabeled and test scans from site B


def n_labeled_for(fraction: float, n_unlabeled: int) -> int:
    """Labeled training scans so that labeled / (labeled + unlabeled) ≈ ``fraction``."""
    return max(1, round(fraction / (1.0 - fraction) * n_unlabeled))


def ensure_site_cohort(root: Path, site: str, seed: int, n: int, matrix: int, free: float) -> Path:
    """A site cohort (``ugss.synth.sites``), written once to a temporary folder and renamed."""
    from ugss.synth.cohort import write_cohort
    from ugss.synth.sites import site_options

    if (root / MARKER).is_file():
        return root
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    write_cohort(
        tmp,
        n,
        seed,
        matrix=matrix,
        thin_fraction=0.0,  # the site profile sets the slice thickness
        free_fraction=free,
        scan_options=site_options(site, seed),
    )
    (tmp / MARKER).write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)  # an incomplete earlier attempt
    os.replace(tmp, root)
    return root


def shift_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Cohort sizes, labeled counts per fraction and the runs, all from the arguments."""
    labeled = {f: n_labeled_for(f, args.unlabeled_scans) for f in args.fractions}
    n_lab_cohort = args.val_scans + max(labeled.values())
    sizes = {
        "A-labeled": (n_lab_cohort, 0.25),
        "B-labeled": (n_lab_cohort, 0.25),
        "B-unlabeled": (args.unlabeled_scans, 0.25),
        "B-test": (args.test_scans, args.test_free),
    }
    low = min(args.fractions)
    runs = []  # (setting, fraction, method)
    for f in args.fractions:
        for m in args.methods:
            if m in ABLATIONS and (f != low or args.no_ablations):
                continue
            runs.append(("shift", f, m))
        if not args.no_same:
            runs += [("same", f, m) for m in SAME_METHODS if m in args.methods]
    return {"labeled": labeled, "sizes": sizes, "runs": runs, "ablation_fraction": low}


def shift_cohorts(args: argparse.Namespace, work: Path, plan: dict[str, Any]) -> dict[str, Path]:
    roots = {}
    for name, (site, seed) in SHIFT_COHORTS.items():
        if name == "B-labeled" and args.no_same:
            continue
        n, free = plan["sizes"][name]
        root = work / "cohorts" / f"{name}-n{n}-m{args.matrix}-s{seed}"
        roots[name] = ensure_site_cohort(root, site, seed, n, args.matrix, free)
    return roots


def shift_manifest(work: Path, setting: str, fraction: float, cohort: Path, n: int) -> Path:
    """The labeled site's first ``n`` scans (validation + labeled training) as a manifest."""
    records = read_physionet(cohort)[:n]
    path = work / "manifests" / f"{setting}-f{fraction:g}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = "A" if setting == "shift" else "B"
    lines = ["scan_id,scan,mask,patient_id"]
    for r in records:
        sid = f"{prefix}{r.scan_id}"
        lines.append(f"{sid},{Path(r.scan_path).resolve()},{Path(r.mask_path).resolve()},{sid}")
    path.write_text("\n".join(lines) + "\n")
    return path


def shift_data_config(
    args: argparse.Namespace, work: Path, roots: dict[str, Path], setting: str, f: float, L: int
) -> DataConfig:
    lab = roots["A-labeled" if setting == "shift" else "B-labeled"]
    n = args.val_scans + L
    return DataConfig(
        manifest=str(shift_manifest(work, setting, f, lab, n)),
        unlabeled_dirs=(str(roots["B-unlabeled"] / "ct_scans"),),
        cache_dir=str(work / "cache"),
        input_size=args.size,
        crop_size=min(args.crop, args.size),
        test_fraction=0.0,  # the test scans are the site-B test cohort
        val_fraction=args.val_scans / n,
        labeled_fraction=1.0,
        split_seed=args.split_seed,
    )


def _records_of(d: DataConfig):
    records = read_manifest(d.manifest)
    return records + unlabeled_records(d.unlabeled_dirs, records)


def record_of(doc: dict[str, Any]) -> dict[str, Any]:
    """One run as the issue's record (``benchmarks/results/methods.json``)."""
    t = doc["test"]
    return {
        "setting": doc["setting"],
        "labeled_fraction": doc["fraction"],
        "method": doc["method"],
        "seed": doc["seed"],
        "dice_hem": t["dice_hemorrhage"],
        "fp_ml_free": t["fp_ml_free"],
    }


def _paired(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """Mean and sd of a − b, paired t-test and Wilcoxon signed-rank p-values (nan if n < 2)."""
    import warnings

    from scipy import stats

    d = [x - y for x, y in zip(a, b, strict=True)]
    m, sd = _mean_sd(d)
    p_t = p_w = float("nan")
    if len(d) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(ValueError):
                p_t = float(stats.ttest_rel(a, b).pvalue)
            with contextlib.suppress(ValueError):  # every difference zero
                p_w = float(stats.wilcoxon(d).pvalue)
    return m, sd, p_t, p_w


def _p(x: float) -> str:
    return "—" if x != x else f"{x:.3f}"


def _delta_cells(x: dict[int, dict], y: dict[int, dict]) -> str:
    """``Δ Dice | p | Δ FP | p`` of runs ``x`` against ``y`` (seed → record), paired by seed."""
    seeds = sorted(set(x) & set(y))
    out = []
    for key, spec in (("dice_hem", ".3f"), ("fp_ml_free", ".2f")):
        m, sd, pt, pw = _paired([x[s][key] for s in seeds], [y[s][key] for s in seeds])
        out += [f"{m:+{spec}} ± {sd:{spec}}", f"{_p(pt)} / {_p(pw)}"]
    return " | ".join(out)


def shift_markdown(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def cell(setting, f, m):
        rs = sorted(
            (
                r
                for r in records
                if (r["setting"], r["labeled_fraction"], r["method"]) == (setting, f, m)
            ),
            key=lambda r: r["seed"],
        )
        return {r["seed"]: r for r in rs}

    def pair(x, y, key):
        seeds = sorted(set(x) & set(y))
        return _paired([x[s][key] for s in seeds], [y[s][key] for s in seeds]), len(seeds)

    lines = [
        "Dice hem. = mean Dice over the site-B test scans with hemorrhage; FP mL = mean predicted "
        "volume on the hemorrhage-free ones. Δ: paired per seed against ResUNet supervised of "
        "the same setting and fraction (p: paired t-test / Wilcoxon signed-rank).",
        "",
        "| setting | labeled | method | seeds | Dice hem. | FP mL free | Δ Dice hem. | p t / W "
        "| Δ FP mL | p t / W |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(SHIFT_KNOWN)}
    keys = sorted(
        {(r["setting"], r["labeled_fraction"], r["method"]) for r in records},
        key=lambda k: (k[0] != "shift", k[1], order.get(k[2], 99)),
    )
    for setting, f, m in keys:
        c = cell(setting, f, m)
        dice = [r["dice_hem"] for r in c.values()]
        fp = [r["fp_ml_free"] for r in c.values()]
        sup = cell(setting, f, "supervised")
        delta = _delta_cells(c, sup) if m != "supervised" and sup else "— | — | — | —"
        lines.append(
            f"| {setting} | {f:g} | {m} | {len(c)} | {_pm(dice)} | {_pm(fp, '.2f')} | {delta} |"
        )
    # the ablations against full UGSS, the cost of the shift, and the issue's target
    low = min(args.fractions)
    ugss = cell("shift", low, "ugss")
    abl = [m for m in ABLATIONS if cell("shift", low, m)]
    if ugss and abl:
        lines += [
            "",
            f"Ablations at {low:g} against full UGSS (paired per seed):",
            "",
            "| ablation | Δ Dice hem. | p t / W | Δ FP mL | p t / W |",
            "|---|---|---|---|---|",
        ]
        for m in abl:
            lines.append(f"| {m} | {_delta_cells(cell('shift', low, m), ugss)} |")
    contrast = []
    for f in args.fractions:
        for m in SAME_METHODS:
            sh, sa = cell("shift", f, m), cell("same", f, m)
            if sh and sa:
                (dm, dsd, pt, pw), _ = pair(sh, sa, "dice_hem")
                contrast.append(f"| {f:g} | {m} | {dm:+.3f} ± {dsd:.3f} | {_p(pt)} / {_p(pw)} |")
    if contrast:
        lines += [
            "",
            "Cost of the shift (shift − same-site Dice hem., paired per seed):",
            "",
            "| labeled | method | Δ Dice hem. | p t / W |",
            "|---|---|---|---|",
            *contrast,
        ]
    verdict = []
    for f, m in ((f, m) for f in args.fractions for m in ("ugss", *TUNING)):
        u, s_ = cell("shift", f, m), cell("shift", f, "supervised")
        seeds = sorted(set(u) & set(s_))
        if not seeds:
            continue
        d = [u[s]["dice_hem"] - s_[s]["dice_hem"] for s in seeds]
        fpd = statistics.fmean(u[s]["fp_ml_free"] - s_[s]["fp_ml_free"] for s in seeds)
        ok = all(x > 0 for x in d) and statistics.fmean(d) >= 0.03 and fpd <= 0
        verdict.append(
            f"- {f:g}, {m}: − supervised Dice hem. per seed "
            f"{', '.join(f'{x:+.3f}' for x in d)} (mean {statistics.fmean(d):+.3f}), "
            f"FP mL {fpd:+.2f} → target {'met' if ok else 'NOT met'}"
        )
    if verdict:
        lines += [
            "",
            "Issue 17 target (UGSS > ResUNet supervised in every seed, by ≥ 0.03 on "
            "average, no more FP volume), shift setting:",
            "",
            *verdict,
        ]
    return "\n".join(lines)


def main_shift(args: argparse.Namespace, work: Path) -> int:
    t_start = time.perf_counter()
    plan = shift_plan(args)
    roots = shift_cohorts(args, work, plan)
    test_root = roots["B-test"]
    data = {}
    splits = {}
    for setting in ("shift", "same"):
        if setting == "same" and args.no_same:
            continue
        for f, L in plan["labeled"].items():
            d = shift_data_config(args, work, roots, setting, f, L)
            data[(setting, f)] = d
            # cache every scan once, before runs in parallel could race on the cache
            split = prepare_data(_records_of(d), d, cache_root=d.cache_dir).split.to_dict()
            splits[f"{setting}-f{f:g}"] = split
            print(
                f"{setting} f={f:g}: {len(split['train_labeled'])} labeled "
                f"({'site A' if setting == 'shift' else 'site B'}), "
                f"{len(split['train_unlabeled'])} unlabeled (site B), val {split['val']}",
                flush=True,
            )
    n_test = len(read_physionet(test_root))
    print(f"test: {n_test} site-B scans in {test_root}", flush=True)
    todo, rows = [], []
    for seed in args.seeds:  # seed-major: an interrupted benchmark leaves whole seeds
        for setting, f, m in plan["runs"]:
            out = work / "runs" / setting / f"f{f:g}" / f"{m}-s{seed}"
            cfg = train_config(args, data[(setting, f)], m, seed, out)
            spec = {
                "setting": setting,
                "method": m,
                "fraction": f,
                "seed": seed,
                "test_cohort": str(test_root),
            }
            if (out / RESULT).is_file():
                rows.append(json.loads((out / RESULT).read_text()))
                print(f"  kept   {setting:5s} {m:13s} f={f:g} seed={seed}", flush=True)
            else:
                todo.append((cfg, out, spec))

    def done(doc: dict[str, Any]) -> None:
        rows.append(doc)
        t = doc["test"]
        print(
            f"  done   {doc['setting']:5s} {doc['method']:13s} f={doc['fraction']:g} "
            f"seed={doc['seed']}: Dice hem. {t['dice_hemorrhage']:.3f}, FP {t['fp_ml_free']:.2f} "
            f"mL, val {doc['val_dice']:.3f}, {doc['steps']} steps, {doc['wall_s']:.0f} s",
            flush=True,
        )

    train_runs(todo, len(rows), args, done)
    wall = time.perf_counter() - t_start
    order = {m: i for i, m in enumerate(SHIFT_KNOWN)}
    rows.sort(key=lambda r: (r["setting"] != "shift", r["fraction"], order[r["method"]], r["seed"]))
    records = [record_of(r) for r in rows]
    print()
    print(shift_markdown(records, args))
    print(f"\nwall time {wall:.0f} s for {len(todo)} run(s) trained")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
        details = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "python": sys.version.split()[0],
            },
            "cohorts": {
                k: {"root": str(v), "site": SHIFT_COHORTS[k][0], "seed": SHIFT_COHORTS[k][1]}
                for k, v in roots.items()
            },
            "labeled_per_fraction": {f"{f:g}": n for f, n in plan["labeled"].items()},
            "wall_s": wall,
            "runs_trained": len(todo),
            "splits": splits,
            "runs": [
                {k: v for k, v in r.items() if k != "config"} | {"config": r["config"]}
                for r in rows
            ],
        }
        side = args.json.with_name(args.json.stem + "-details.json")
        side.write_text(json.dumps(details, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ugss-bench-methods-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.shift:
        return main_shift(args, work)
    t_start = time.perf_counter()
    splits = prepare_cohort(args, work)
    for name, s in splits.items():
        print(
            f"{name}: {len(s['train_labeled'])} labeled, {len(s['train_unlabeled'])} unlabeled, "
            f"val {s['val']}, test {s['test']}",
            flush=True,
        )
    todo, rows = [], []
    for seed in args.seeds:  # seed-major: an interrupted benchmark leaves whole seeds
        for f in args.fractions:
            for m in args.methods:
                cfg, out = run_config(args, work, m, f, seed)
                spec = {"method": m, "fraction": f, "seed": seed}
                if (out / RESULT).is_file():
                    rows.append(upgrade(json.loads((out / RESULT).read_text()), out))
                    print(f"  kept   {m:10s} f={f:g} seed={seed}", flush=True)
                else:
                    todo.append((cfg, out, spec))

    def done(doc: dict[str, Any]) -> None:
        rows.append(doc)
        print(
            f"  done   {doc['method']:10s} f={doc['fraction']:g} seed={doc['seed']}: "
            f"test Dice {doc['test']['dice']:.3f}, Jaccard {doc['test']['jaccard']:.3f}, "
            f"val {doc['val_dice']:.3f}, {doc['steps']} steps, {doc['wall_s']:.0f} s",
            flush=True,
        )

    train_runs(todo, len(rows), args, done)
    wall = time.perf_counter() - t_start
    agg = aggregate(rows, args)
    table = markdown(rows, agg)
    print()
    print(table)
    print(f"\nwall time {wall:.0f} s for {len(todo)} run(s) trained")
    if args.json:
        doc = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "python": sys.version.split()[0],
            },
            "wall_s": wall,
            "runs_trained": len(todo),
            "splits": splits,
            "summary": agg,
            "runs": sorted(rows, key=lambda r: (r["fraction"], r["method"], r["seed"])),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
