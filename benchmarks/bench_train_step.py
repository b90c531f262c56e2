"""Training-step cost: UGSS vs supervised, batched vs sequential teacher MC, dropout placement.

    .venv/bin/python benchmarks/bench_train_step.py [--tiny] [--json out.json]

Three tables (medians of repeated timings, random inputs of the training crop size):
1. one optimizer step of each method (same batch of B crops: UGSS/CutMix/CutPaste split it
   into labeled + unlabeled halves as ``ugss-train`` does when unlabeled scans exist, or take
   all labeled when there are none) and its ratio to a supervised step;
2. the teacher's T MC passes: one batched forward with the shared trunk vs T full passes;
3. MC T passes / one deterministic pass at the inference input size for each dropout placement
   (what ``ugss-export``'s MC graph will cost relative to the deterministic one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from ugss.train.data import Batch
from ugss.train.model import ModelConfig, ResUNet
from ugss.train.step import StepSettings, compute_loss
from ugss.train.teacher import make_teacher, teacher_mc, teacher_mc_sequential, wema_update

CPU_TIMES: dict[str, float] = {}  # median process CPU seconds of the last ``median_times`` call


def median_times(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict:
    """Median wall seconds per function, timed round-robin so load changes hit all alike.

    The median process CPU time (all threads) goes to ``CPU_TIMES``: on a machine shared with
    other jobs it measures the work itself and is the steadier basis for ratios.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    CPU_TIMES.clear()
    CPU_TIMES.update({k: statistics.median(v) for k, v in cpu.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def make_batch(n_l: int, n_u: int, crop: int, channels_last: bool) -> Batch:
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand(n_l, 1, crop, crop, generator=gen) > 0.95).float()
    b = Batch(
        torch.rand(n_l, 3, crop, crop, generator=gen),
        y,
        torch.rand(n_u, 3, crop, crop, generator=gen),
    )
    return b.to("cpu", channels_last)


def step_fn(method: str, batch: Batch, mc_samples: int, channels_last: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    student = ResUNet(ModelConfig())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    student.to(memory_format=fmt).train()
    teacher = make_teacher(student).to(memory_format=fmt) if method != "supervised" else None
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    settings = StepSettings(method=method, mc_samples=mc_samples, w_pos=5.0)
    rng = np.random.default_rng(0)

    def run() -> None:
        parts = compute_loss(student, teacher, batch, settings, lambda_u=0.3, rng=rng)
        opt.zero_grad(set_to_none=True)
        parts.total.backward()
        opt.step()
        if teacher is not None:
            wema_update(teacher, student, 0.95, 0.5)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="small sizes for CI")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--reps", type=int, default=0, help="timed repetitions (default 7, tiny 3)")
    ap.add_argument("--batch", type=int, default=0, help="crops per step (default 8, tiny 4)")
    ap.add_argument("--crop", type=int, default=0, help="crop size (default 96, tiny 32)")
    ap.add_argument("--input-size", type=int, default=0, help="inference size (default 160)")
    ap.add_argument("--mc", type=int, default=8, help="MC samples T")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    args = ap.parse_args()
    reps = args.reps or (3 if args.tiny else 7)
    batch_size = args.batch or (4 if args.tiny else 8)
    crop = args.crop or (32 if args.tiny else 96)
    size = args.input_size or (32 if args.tiny else 160)
    if args.threads:
        torch.set_num_threads(args.threads)
    cl = True
    t = args.mc
    results: dict[str, object] = {
        "torch": torch.__version__,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "settings": {"batch": batch_size, "crop": crop, "input_size": size, "mc": t, "reps": reps},
    }

    # 1. training steps
    n_u = batch_size // 2
    fns = {"supervised": step_fn("supervised", make_batch(batch_size, 0, crop, cl), t, cl)}
    for method in ("ugss", "cutmix", "cutpaste"):
        batch = make_batch(batch_size - n_u, n_u, crop, cl)
        fns[f"{method} (B/2 unlabeled)"] = step_fn(method, batch, t, cl)
    fns["ugss (all labeled)"] = step_fn("ugss", make_batch(batch_size, 0, crop, cl), t, cl)
    steps = median_times(fns, reps)
    cpu = dict(CPU_TIMES)
    base, cbase = steps["supervised"], cpu["supervised"]
    threads = torch.get_num_threads()
    print(f"\nTraining step, batch {batch_size} × {crop}², T = {t}, {threads} threads")
    print(f"{'method':28s} {'wall s':>8s} {'× sup':>6s} {'CPU s':>8s} {'× sup':>6s}")
    for name, s in steps.items():
        print(f"{name:28s} {s:8.3f} {s / base:6.2f} {cpu[name]:8.3f} {cpu[name] / cbase:6.2f}")
    results["step_s"] = steps
    results["step_ratio"] = {k: v / base for k, v in steps.items()}
    results["step_cpu_s"] = cpu
    results["step_cpu_ratio"] = {k: v / cbase for k, v in cpu.items()}

    # 2. teacher MC: batched shared trunk vs T full passes
    torch.manual_seed(0)
    teacher = ResUNet(ModelConfig()).to(memory_format=torch.channels_last).eval()
    x = torch.rand(batch_size, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        mc = median_times(
            {
                "single": lambda: teacher(x),
                "batched": lambda: teacher_mc(teacher, x, t),
                "sequential": lambda: teacher_mc_sequential(teacher, x, t),
            },
            reps,
        )
    mc_cpu = dict(CPU_TIMES)
    print(f"\nTeacher MC, batch {batch_size} × {crop}², T = {t}")
    print(f"{'variant':28s} {'wall s':>8s} {'× one':>6s} {'CPU s':>8s} {'× one':>6s}")
    names = {
        "single": "one deterministic pass",
        "batched": "batched, shared trunk",
        "sequential": "sequential, T full passes",
    }
    for key, name in names.items():
        w, c = mc[key], mc_cpu[key]
        print(f"{name:28s} {w:8.3f} {w / mc['single']:6.2f} {c:8.3f} {c / mc_cpu['single']:6.2f}")
    seq_wall = mc["sequential"] / mc["batched"]
    seq_cpu = mc_cpu["sequential"] / mc_cpu["batched"]
    print(f"sequential / batched: {seq_wall:.2f}× wall, {seq_cpu:.2f}× CPU")
    results["teacher_mc_s"] = mc
    results["teacher_mc_cpu_s"] = mc_cpu
    results["teacher_sequential_over_batched"] = seq_wall
    results["teacher_sequential_over_batched_cpu"] = seq_cpu

    # 3. inference: MC T / deterministic per dropout placement
    n_inf = 4 if args.tiny else 8
    xi = torch.rand(n_inf, 3, size, size).contiguous(memory_format=torch.channels_last)
    placement = {}
    print(f"\nInference, {n_inf} slices × {size}², MC T = {t} over one deterministic pass")
    print(f"{'dropout at':28s} {'det s':>8s} {'MC s':>8s} {'ratio':>7s} {'CPU ratio':>10s}")
    for at, kind in (("head", "channel"), ("head", "element"), ("dec1", "channel"),
                     ("decoder", "channel"), ("bottleneck", "channel")):  # fmt: skip
        torch.manual_seed(0)
        m = ResUNet(ModelConfig(dropout_at=at, dropout_kind=kind))
        m = m.to(memory_format=torch.channels_last).eval()
        with torch.no_grad():
            r = median_times({"det": lambda m=m: m(xi), "mc": lambda m=m: m.mc_logits(xi, t)}, reps)
        name = f"{at} ({kind})"
        c = dict(CPU_TIMES)
        placement[name] = {
            "det_s": r["det"],
            "mc_s": r["mc"],
            "ratio": r["mc"] / r["det"],
            "cpu_ratio": c["mc"] / c["det"],
        }
        ratio, cratio = r["mc"] / r["det"], c["mc"] / c["det"]
        print(f"{name:28s} {r['det']:8.3f} {r['mc']:8.3f} {ratio:7.2f} {cratio:10.2f}")
    results["mc_over_det_by_placement"] = placement

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
