"""TensorRT on an NVIDIA GPU: build, run, parity with onnxruntime CPU / CUDA / TensorRT EP, timings.

    python benchmarks/bench_trt_gpu.py --json trt.json [--ckpt best.pt | --onnx-dir DIR]
                                        [--size 160] [--slices 34] [--reps 5]

Prepared for a machine with an NVIDIA GPU, ``tensorrt`` (10.x) and ``cuda-python``
(``onnxruntime-gpu`` for the CUDA/TensorRT execution providers, optional). On a machine without
them it prints one line saying what is missing and exits with code 2.

What it does:
1. ONNX models: from ``--onnx-dir`` (``model.onnx`` MC with ``dropout_noise``, ``model-det.onnx``
   — export them anywhere with ``ugss-export``; no torch needed here), else exported now with
   ``ugss.export`` from ``--ckpt`` or from a random-weight ResUNet (BatchNorm statistics set on
   random images); plus the MC graph with its noise drawn in the graph (``RandomUniformLike``).
2. TensorRT engines through ``ugss.export.tensorrt.build_engine`` (the ``--trt`` code): det and MC
   in fp16 and fp32, and the in-graph-noise MC in fp16; build seconds.
3. Runs them through ``ugss.runtime.engines.TensorRTEngine`` (the runtime's plan runner) on the
   slices of a synthetic head CT, with the same host noise as onnxruntime CPU, and reports max
   |Δ| of probability / entropy and the largest count difference.
4. Executes the in-graph-noise engine twice on the same input: do TensorRT's random numbers
   change between executions (max |Δ mean_prob| > 0) or are they fixed at build time?
5. The same models in onnxruntime's CUDA and TensorRT execution providers, when present.
6. Medians of ``--reps`` timings for the whole scan (slabs of ``auto_batch_size``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from timing import median_s  # benchmarks/timing.py, beside this script

from ugss.errors import UGSSError
from ugss.runtime.engines import EngineOutput, OnnxEngine, TensorRTEngine, auto_batch_size
from ugss.runtime.model_info import NOISE_INPUT_NAME
from ugss.runtime.preprocess import iter_slabs, preprocess_slices


class FixedNoise:
    """Stands in for an engine's noise source: the same ``dropout_noise`` on every call."""

    def __init__(self, noise: np.ndarray | None) -> None:
        self.noise = noise

    def reseed(self, seed: int | None) -> None:
        pass

    def feed(self) -> dict[str, np.ndarray]:
        return {} if self.noise is None else {NOISE_INPUT_NAME: self.noise}


def stop(message: str) -> None:
    print(f"bench_trt_gpu: {message}", file=sys.stderr)
    sys.exit(2)


def check_machine() -> str:
    """GPU name, or exit 2 with one line saying what is missing."""
    from ugss.export.tensorrt import cuda_device_count, require_tensorrt

    try:
        require_tensorrt()
        import cuda.bindings.runtime  # noqa: F401  (the runtime's TensorRT runner needs it)
    except UGSSError as exc:
        stop(str(exc))
    except ImportError:
        stop("needs cuda-python (pip install cuda-python) to run TensorRT plans")
    print(f"{cuda_device_count()} NVIDIA GPU(s) visible")
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0]
    except Exception:  # nvidia-smi absent: the name is only informative
        return "NVIDIA GPU (name unknown)"


def random_checkpoint(path: Path, size: int) -> Path:
    """A ResUNet with random weights and BatchNorm statistics from random images (needs torch)."""
    import torch

    from ugss.runtime.preprocess import DEFAULT_WINDOWS, windows_to_str
    from ugss.train.checkpoint import save_checkpoint
    from ugss.train.config import DataConfig, TrainConfig
    from ugss.train.model import ResUNet

    torch.manual_seed(0)
    cfg = TrainConfig(data=DataConfig(input_size=size, crop_size=min(96, size)))
    model = ResUNet(cfg.model).train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(4, 3, size, size))
    payload = {
        "config": cfg.to_dict(),
        "model": cfg.model.to_dict(),
        "input_size": size,
        "windows": windows_to_str(DEFAULT_WINDOWS),
        "method": "supervised",
        "eval_model": "student",
        "student": model.state_dict(),
        "teacher": None,
        "data": {},
    }
    return save_checkpoint(path, payload)


def onnx_models(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """``det``, ``mc`` (host noise) and ``mc_graph`` (in-graph noise) ONNX files."""
    import onnx

    from ugss.export.onnx_edit import noise_in_graph

    if args.onnx_dir:
        paths = {"det": args.onnx_dir / "model-det.onnx", "mc": args.onnx_dir / "model.onnx"}
    else:
        from ugss.export.api import ExportOptions, export_checkpoint

        ckpt = args.ckpt or random_checkpoint(work / "random.pt", args.size)
        opts = ExportOptions(onnx=work / "model.onnx", mc_samples=8, interval_calibration=False)
        res = export_checkpoint(ckpt, opts)
        paths = {"det": res.artifacts[0].path, "mc": res.artifacts[1].path}
    graph = noise_in_graph(onnx.load(str(paths["mc"])))
    paths["mc_graph"] = work / "model-graph-noise.onnx"
    onnx.save(graph, str(paths["mc_graph"]))
    return paths


def build_plans(paths: dict[str, Path], work: Path, args) -> dict[str, dict[str, Any]]:
    from ugss.export.metadata import read_onnx_metadata
    from ugss.export.tensorrt import build_engine

    plans = {}
    jobs = [("det", "fp16"), ("det", "fp32"), ("mc", "fp16"), ("mc", "fp32"), ("mc_graph", "fp16")]
    for key, precision in jobs:
        plan = work / f"{key}-{precision}.plan"
        build = build_engine(
            paths[key], plan, read_onnx_metadata(paths[key]), fp16=precision == "fp16"
        )
        plans[f"{key} {precision}"] = {"plan": plan, "build_s": build.seconds}
        print(f"built {plan.name} in {build.seconds:.1f} s", flush=True)
    return plans


def scan_slices(size: int, n: int) -> np.ndarray:
    from ugss.synth import make_scan

    vol, _, _ = make_scan(7, matrix=512, slice_thickness=5.0, hemorrhage="any")
    hu = vol.hu
    while hu.shape[0] < n:
        hu = np.concatenate([hu, hu])
    return preprocess_slices(hu[:n], size)


def run_scan(engine, x: np.ndarray) -> EngineOutput:
    outs = [engine.run(x[sl]) for sl in iter_slabs(len(x), auto_batch_size(engine.info))]
    ent = [o.entropy for o in outs]
    cnt = [o.sample_counts for o in outs]
    return EngineOutput(
        prob=np.concatenate([o.prob for o in outs]),
        entropy=None if ent[0] is None else np.concatenate(ent),
        sample_counts=None if cnt[0] is None else np.concatenate(cnt),
    )


def diff(a: EngineOutput, b: EngineOutput) -> dict[str, float]:
    out = {"prob": float(np.abs(a.prob - b.prob).max())}
    if a.entropy is not None and b.entropy is not None:
        out["entropy"] = float(np.abs(a.entropy - b.entropy).max())
        out["sample_counts"] = float(np.abs(a.sample_counts - b.sample_counts).max())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, required=True, help="write the figures here")
    p.add_argument("--ckpt", type=Path, help="checkpoint to export (default: random weights)")
    p.add_argument("--onnx-dir", type=Path, help="use model.onnx + model-det.onnx from here")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--slices", type=int, default=34)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    gpu = check_machine()
    work = Path(tempfile.mkdtemp(prefix="ugss-trt-"))
    paths = onnx_models(args, work)
    plans = build_plans(paths, work, args)
    cpu = {k: OnnxEngine(v, provider="cpu") for k, v in paths.items() if k != "mc_graph"}
    size = cpu["det"].info.input_size
    x = scan_slices(size, args.slices)
    noise = np.random.default_rng(0).random(cpu["mc"].noise.shape, dtype=np.float32)
    cpu["mc"].noise = FixedNoise(noise)
    ref = {k: run_scan(e, x) for k, e in cpu.items()}
    results: dict[str, Any] = {"gpu": gpu, "input_size": size, "slices": len(x), "runs": {}}
    timings = {
        f"ort cpu {k}": median_s(lambda e=e: run_scan(e, x), args.reps) for k, e in cpu.items()
    }

    for name, entry in plans.items():
        engine = TensorRTEngine(entry["plan"])
        key = name.split()[0]
        row: dict[str, Any] = {"build_s": entry["build_s"]}
        if key == "mc_graph":
            a, b = run_scan(engine, x), run_scan(engine, x)
            row["run_to_run_max_abs_diff"] = diff(a, b)
            row["random_changes_between_executions"] = bool(np.abs(a.prob - b.prob).max() > 0)
            row["mean_prob_vs_cpu_host_noise_mean_abs"] = float(
                np.abs(a.prob - ref["mc"].prob).mean()
            )
        else:
            if key == "mc":
                engine.noise = FixedNoise(noise)
            out = run_scan(engine, x)
            row["vs_ort_cpu"] = diff(out, ref[key])
            row["repeat_identical"] = bool(np.array_equal(out.prob, run_scan(engine, x).prob))
        timings[f"trt {name}"] = median_s(lambda e=engine: run_scan(e, x), args.reps)
        results["runs"][f"trt {name}"] = row
        print(f"trt {name}: {row}", flush=True)

    available = ort.get_available_providers()
    for provider in ("cuda", "tensorrt"):
        ep = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[provider]
        if ep not in available:
            results["runs"][f"ort {provider}"] = "not available"
            continue
        for key in ("det", "mc"):
            try:
                engine = OnnxEngine(paths[key], provider=provider, trt_cache_dir=work / "ort-trt")
            except UGSSError as exc:
                results["runs"][f"ort {provider} {key}"] = str(exc)
                continue
            if key == "mc":
                engine.noise = FixedNoise(noise)
            row = {"vs_ort_cpu": diff(run_scan(engine, x), ref[key])}
            timings[f"ort {provider} {key}"] = median_s(lambda e=engine: run_scan(e, x), args.reps)
            results["runs"][f"ort {provider} {key}"] = row
            print(f"ort {provider} {key}: {row}", flush=True)

    results["timings_s"] = timings
    results["versions"] = {"onnxruntime": ort.__version__, "python": platform.python_version()}
    print(f"\n{'variant':<28}{'seconds':>10}{'× ort cpu det':>15}")
    for k, v in timings.items():
        print(f"{k:<28}{v:10.3f}{v / timings['ort cpu det']:15.2f}")
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
