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

What is held fixed within one fraction: the cohort, the split (one ``split_seed`` for every
run, so the same validation and test scans and the same labeled subset), the number of steps
(early stopping off), batch size, learning-rate and λ_u schedules. Per seed only the initial
weights, the batch sampling / augmentation stream and the dropout stream change; every method
gets the same seed. ``--vary-split`` uses ``split_seed = seed`` instead (a different labeled
subset per seed — and then different validation/test scans per seed too, because the project's
splitter draws test, validation and labeled patients from one generator; all methods of one
seed still share them).

``--work DIR`` keeps the cohort, the slice cache and every run; a run whose ``result.json``
exists is not trained again, so an interrupted benchmark continues where it stopped.
``--jobs N`` trains N runs at once in separate processes with ``threads / N`` torch threads each.
See ``benchmarks/README-methods.md`` for the measured results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ugss.train.config import DataConfig, MethodConfig, OptimConfig, RunConfig, TrainConfig
from ugss.train.data import prepare_data
from ugss.train.eval_cli import evaluate_records
from ugss.train.loop import train
from ugss.train.manifest import read_physionet
from ugss.train.model import ModelConfig
from ugss.train.predict import load_checkpoint, predict_volume
from ugss.train.synthetic import ensure_synthetic_cohort

METHODS = ("unet", "supervised", "cutmix", "cutpaste", "ugss")  # unet: supervised plain UNet
RESULT = "result.json"


def _csv(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", default="0.1,0.3", help="labeled fractions of the training scans")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps", type=int, default=75, help="steps per epoch")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--scans", type=int, default=40, help="synthetic cohort size")
    p.add_argument("--matrix", type=int, default=256, help="synthetic scan matrix")
    p.add_argument("--cohort-seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--vary-split", action="store_true", help="split_seed = seed (see docstring)")
    p.add_argument("--size", type=int, default=160, help="model input size")
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (processes)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in all (0: all cores)")
    p.add_argument("--work", type=Path, help="keep cohort, cache and runs here (resumable)")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--tiny", action="store_true", help="CI size: 8 scans at 64², 2 steps")
    args = p.parse_args(argv)
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
    args.methods = _csv(args.methods, str)
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
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
    )


def run_config(args: argparse.Namespace, work: Path, method: str, fraction: float, seed: int):
    out = work / "runs" / f"f{fraction:g}" / f"{method}-s{seed}"
    cfg = TrainConfig(
        data=data_config(args, work, fraction, seed),
        model=ModelConfig(arch="unet" if method == "unet" else "resunet"),
        method=MethodConfig(method="supervised" if method == "unet" else method),
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
    return cfg, out


def evaluate_test(best: str, cohort: Path, test_ids: list[str]) -> dict[str, Any]:
    """Native-grid test metrics of a checkpoint with the project's evaluation code."""
    ck = load_checkpoint(best, device="cpu")
    wanted = set(test_ids)
    records = [r for r in read_physionet(cohort) if r.scan_id in wanted]

    def predict(volume):
        with torch.no_grad():
            prob = predict_volume(
                ck.model, volume, input_size=ck.input_size, windows=ck.windows, batch_size=8
            )
        return prob, None

    s = evaluate_records(records, predict, ck.threshold)
    o = s.overlap
    hem = [r for r in s.scans if r.truth_positive]
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
    test = evaluate_test(res.best_checkpoint, Path(cfg.data.synth_dir), res.data["split"]["test"])
    t2 = time.perf_counter()
    split = res.data["split"]
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
        "test_ids": split["test"],
        "labeled_ids": split["train_labeled"],
        "config": cfg.to_dict(),
    }
    for name in ("last.pt",):  # keep best.pt for re-evaluation, drop the rest
        (out / name).unlink(missing_ok=True)
    (out / RESULT).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


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
        for seed in args.seeds if args.vary_split else args.seeds[:1]:
            d = data_config(args, work, f, seed)
            root = ensure_synthetic_cohort(d)
            data = prepare_data(read_physionet(root), d, cache_root=d.cache_dir)
            splits[f"f{f:g}" + (f"-s{seed}" if args.vary_split else "")] = data.split.to_dict()
    return splits


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ugss-bench-methods-"))
    work.mkdir(parents=True, exist_ok=True)
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
    print(
        f"{len(todo)} run(s) to train, {len(rows)} kept; {args.jobs} job(s) × "
        f"{args.threads_per_job} thread(s); {args.epochs} × {args.steps} steps, batch {args.batch}",
        flush=True,
    )

    def done(doc: dict[str, Any]) -> None:
        rows.append(doc)
        print(
            f"  done   {doc['method']:10s} f={doc['fraction']:g} seed={doc['seed']}: "
            f"test Dice {doc['test']['dice']:.3f}, Jaccard {doc['test']['jaccard']:.3f}, "
            f"val {doc['val_dice']:.3f}, {doc['steps']} steps, {doc['wall_s']:.0f} s",
            flush=True,
        )

    if args.jobs == 1:
        for cfg, out, spec in todo:
            done(run_one(cfg, out, spec))
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_one, *t) for t in todo]
            for fut in as_completed(futures):
                done(fut.result())
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
