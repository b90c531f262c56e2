"""The model on an NVIDIA GPU: TensorRT plans, onnxruntime GPU providers, PyTorch CUDA; parity with
onnxruntime CPU and timings, all in one JSON.

    python benchmarks/bench_trt_gpu.py --json gpu.json [--ckpt best.pt | --onnx-dir DIR]
                                        [--size 160] [--slices 34] [--reps 5]

Runs what the machine has, each part on its own (an error is recorded in the JSON and the next
part runs):

1. ONNX models: ``--onnx-dir`` (``model.onnx`` MC with ``dropout_noise``, ``model-det.onnx``),
   else exported now by ``ugss.export`` from ``--ckpt`` or a random-weight ResUNet (needs torch),
   else the bundled default model; plus the MC graph with its noise drawn in the graph.
2. With ``tensorrt`` + ``cuda-python``: plans through ``ugss.export.tensorrt.build_engine`` (the
   ``--trt`` code, TensorRT 10 or 11 path; det/MC, fp16/fp32, graph-noise MC fp16), each build's
   error caught; run by the runtime's ``TensorRTEngine`` with the same host noise as onnxruntime
   CPU; max |Δ| of probability / entropy, count differences, mask Dice; build seconds; whether
   the in-graph random numbers change between executions.
3. With ``onnxruntime-gpu``: the CUDA and TensorRT execution providers, and which provider
   actually ran.
4. With torch built for CUDA: PyTorch CUDA eager (fp32 and fp16 autocast) and ``torch.compile``
   on the same weights and noise, against onnxruntime CPU (parity and timings). This is what a
   GPU machine without TensorRT or onnxruntime-gpu measures.
5. Medians of ``--reps`` timings for the whole scan (slabs of the runtime's size), versions of
   every library and the issue's targets (MC T=8, 34 slices: ≤ 50 ms in a TensorRT fp16 plan;
   parity ≤ 1e-3 in probability, mask Dice ≥ 0.99).

Without an NVIDIA GPU, or with a GPU but none of tensorrt / onnxruntime-gpu / CUDA torch, it
prints one line saying what is missing and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from timing import median_s  # benchmarks/timing.py, beside this script

from ugss.evaluation import dice
from ugss.export.plan_parity import MAX_PROB_DIFF, MIN_MASK_DICE
from ugss.runtime.engines import (
    PROVIDERS,
    EngineOutput,
    OnnxEngine,
    cuda_device_count,
    profile_batches,
)
from ugss.runtime.model_info import NOISE_INPUT_NAME
from ugss.runtime.preprocess import iter_slabs, preprocess_slices
from ugss.runtime.segment import DEFAULT_SLAB

TARGET_MC_PLAN_S = 0.050  # MC T=8, 34 slices, TensorRT fp16 plan


class FixedNoise:
    """Stands in for an engine's noise source: the same ``dropout_noise`` on every call."""

    def __init__(self, noise: np.ndarray | None) -> None:
        self.noise = noise
        self.shape = None if noise is None else noise.shape

    def reseed(self, seed: int | None) -> None:
        pass

    def feed(self) -> dict[str, np.ndarray]:
        return {} if self.noise is None else {NOISE_INPUT_NAME: self.noise}


def stop(message: str) -> None:
    print(f"bench_trt_gpu: {message}", file=sys.stderr)
    sys.exit(2)


@dataclass(frozen=True)
class Machine:
    gpu: str
    tensorrt: str  # "" when not usable, else the version
    ort_gpu: tuple[str, ...]  # onnxruntime's GPU providers
    torch_cuda: str  # "" when not usable, else torch's version


def _tensorrt() -> str:
    try:
        import tensorrt as trt

        try:
            from cuda.bindings import runtime  # noqa: F401
        except ImportError:
            from cuda import cudart  # noqa: F401
    except ImportError:
        return ""
    return str(trt.__version__)


def _torch_cuda() -> str:
    try:
        import torch
    except ImportError:
        return ""
    return torch.__version__ if torch.cuda.is_available() else ""


def _gpu_name() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0]
    except Exception:  # nvidia-smi absent: the name is only informative
        return "NVIDIA GPU (name unknown)"


def check_machine() -> Machine:
    """What this machine can run, or exit 2 with one line saying what is missing."""
    if cuda_device_count() < 1:
        stop("needs an NVIDIA GPU, and none is visible here (no CUDA driver)")
    gpu_eps = tuple(
        p for p in (PROVIDERS["cuda"], PROVIDERS["tensorrt"]) if p in ort.get_available_providers()
    )
    machine = Machine(_gpu_name(), _tensorrt(), gpu_eps, _torch_cuda())
    if not (machine.tensorrt or machine.ort_gpu or machine.torch_cuda):
        stop(
            "a GPU is here but nothing to run on it: install tensorrt + cuda-python "
            "(pip install 'ugss[trt]'), onnxruntime-gpu ('ugss[gpu]') or torch for CUDA"
        )
    print(
        f"{machine.gpu}: TensorRT {machine.tensorrt or '-'}, onnxruntime GPU providers "
        f"{', '.join(machine.ort_gpu) or '-'}, torch CUDA {machine.torch_cuda or '-'}"
    )
    return machine


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "onnxruntime": ort.__version__}
    for name in ("tensorrt", "torch", "onnx", "onnxconverter_common", "numpy"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            out[name] = "not installed"
    try:
        from cuda.bindings import __version__ as cuda_bindings

        out["cuda-python"] = str(cuda_bindings)
    except ImportError:
        out["cuda-python"] = "not installed"
    return out


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


def onnx_models(args: argparse.Namespace, work: Path) -> tuple[dict[str, Path], Path | None]:
    """``det``, ``mc`` (host noise), ``mc_graph`` (in-graph noise) ONNX files, and the
    checkpoint they came from (None for given or bundled files)."""
    import onnx

    from ugss.export.onnx_edit import noise_in_graph

    ckpt = None
    if args.onnx_dir:
        paths = {"det": args.onnx_dir / "model-det.onnx", "mc": args.onnx_dir / "model.onnx"}
    elif _torch_importable():
        from ugss.export.api import ExportOptions, export_checkpoint

        ckpt = args.ckpt or random_checkpoint(work / "random.pt", args.size)
        options = ExportOptions(onnx=work / "model.onnx", mc_samples=8, interval_calibration=False)
        res = export_checkpoint(ckpt, options)
        paths = {"det": res.artifacts[0].path, "mc": res.artifacts[1].path}
    else:
        from ugss.runtime.engines import bundled_model_path, model_twin

        mc = bundled_model_path()
        paths = {"det": model_twin(mc, det=True), "mc": mc}
    graph = noise_in_graph(onnx.load(str(paths["mc"])))
    paths["mc_graph"] = work / "model-graph-noise.onnx"
    onnx.save(graph, str(paths["mc_graph"]))
    return paths, ckpt


def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def scan_slices(size: int, n: int) -> np.ndarray:
    from ugss.synth import make_scan

    vol, _, _ = make_scan(7, matrix=512, slice_thickness=5.0, hemorrhage="any")
    hu = vol.hu
    while hu.shape[0] < n:
        hu = np.concatenate([hu, hu])
    return preprocess_slices(hu[:n], size)


def slab(engine) -> int:
    return profile_batches(engine.info, DEFAULT_SLAB)[1]


def run_scan(engine, x: np.ndarray) -> EngineOutput:
    outs = [engine.run(x[sl]) for sl in iter_slabs(len(x), slab(engine))]
    ent = [o.entropy for o in outs]
    cnt = [o.sample_counts for o in outs]
    return EngineOutput(
        prob=np.concatenate([o.prob for o in outs]),
        entropy=None if ent[0] is None else np.concatenate(ent),
        sample_counts=None if cnt[0] is None else np.concatenate(cnt),
    )


def diff(a: EngineOutput, b: EngineOutput, threshold: float) -> dict[str, float]:
    out = {
        "prob": float(np.abs(a.prob - b.prob).max()),
        "mask_dice": float(dice(a.prob >= threshold, b.prob >= threshold, empty=1.0)),
    }
    if a.entropy is not None and b.entropy is not None:
        out["entropy"] = float(np.abs(a.entropy - b.entropy).max())
    if a.sample_counts is not None and b.sample_counts is not None:
        out["sample_counts"] = float(np.abs(a.sample_counts - b.sample_counts).max())
    return out


def guarded(results: dict, key: str, fn: Callable[[], Any]) -> Any:
    """Run one part; on any error record it (one line + the traceback's last lines), go on."""
    try:
        value = fn()
    except Exception as exc:  # a benchmark part may fail in many ways: record and continue
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        results["errors"][key] = f"{type(exc).__name__}: {first}"
        results["tracebacks"][key] = traceback.format_exc().splitlines()[-6:]
        print(f"{key}: FAILED {results['errors'][key]}", flush=True)
        return None
    return value


class Bench:
    """Shared state of one run: the scan, the CPU references, the results being written."""

    def __init__(self, args, machine: Machine, work: Path) -> None:
        self.args, self.machine, self.work = args, machine, work
        self.paths, self.ckpt = onnx_models(args, work)
        self.cpu = {k: OnnxEngine(v, provider="cpu") for k, v in self.paths.items()}
        self.info = self.cpu["mc"].info
        self.x = scan_slices(self.info.input_size, args.slices)
        shape = self.cpu["mc"].noise.shape
        self.noise = np.random.default_rng(0).random(shape, dtype=np.float32)
        self.cpu["mc"].noise = FixedNoise(self.noise)
        self.ref = {k: run_scan(self.cpu[k], self.x) for k in ("det", "mc")}
        self.results: dict[str, Any] = {
            "gpu": machine.gpu,
            "machine": machine.__dict__,
            "versions": versions(),
            "input_size": self.info.input_size,
            "slices": len(self.x),
            "mc_samples": self.info.mc_samples,
            "slab": slab(self.cpu["mc"]),
            "runs": {},
            "timings_s": {},
            "errors": {},
            "tracebacks": {},
        }
        for k in ("det", "mc"):
            self.time(f"ort cpu {k}", lambda e=self.cpu[k]: run_scan(e, self.x))

    def time(self, key: str, fn: Callable[[], object]) -> float:
        seconds = median_s(fn, self.args.reps)
        self.results["timings_s"][key] = seconds
        return seconds

    def compare(self, key: str, engine, kind: str) -> dict[str, Any]:
        if kind == "mc":
            engine.noise = FixedNoise(self.noise)
        out = run_scan(engine, self.x)
        row = {"vs_ort_cpu": diff(out, self.ref[kind], self.info.threshold)}
        row["repeat_identical"] = bool(np.array_equal(out.prob, run_scan(engine, self.x).prob))
        self.time(key, lambda: run_scan(engine, self.x))
        self.results["runs"][key] = row
        print(f"{key}: {row}", flush=True)
        return row

    def save(self) -> None:
        self.args.json.write_text(json.dumps(self.results, indent=2, default=str) + "\n")


def tensorrt_part(bench: Bench) -> None:
    from ugss.export.metadata import read_onnx_metadata
    from ugss.export.tensorrt import build_engine, tensorrt_path
    from ugss.runtime.engines import TensorRTEngine

    bench.results["tensorrt_path"] = tensorrt_path(bench.machine.tensorrt).describe()
    jobs = [("det", "fp16"), ("det", "fp32"), ("mc", "fp16"), ("mc", "fp32"), ("mc_graph", "fp16")]
    for key, precision in jobs:
        name = f"trt {key} {precision}"
        src = bench.paths[key]

        def build(src=src, key=key, precision=precision):
            plan = bench.work / f"{key}-{precision}.plan"
            meta = read_onnx_metadata(src)
            return build_engine(src, plan, meta, fp16=precision == "fp16", check=key != "mc_graph")

        made = guarded(bench.results, f"{name} build", build)
        if made is None:
            continue
        print(f"built {made.plan.name} in {made.seconds:.1f} s ({made.path})", flush=True)
        engine = guarded(bench.results, f"{name} load", lambda p=made.plan: TensorRTEngine(p))
        if engine is None:
            continue
        if key == "mc_graph":
            guarded(bench.results, name, lambda e=engine, n=name: graph_noise_row(bench, e, n))
        else:
            row = guarded(bench.results, name, partial(bench.compare, name, engine, key))
            if row is not None:
                row["build_s"] = made.seconds
                row["plan_parity_at_export"] = made.parity.describe() if made.parity else None
        bench.save()


def graph_noise_row(bench: Bench, engine, name: str) -> None:
    a, b = run_scan(engine, bench.x), run_scan(engine, bench.x)
    bench.results["runs"][name] = {
        "run_to_run_max_abs_diff": diff(a, b, bench.info.threshold),
        "random_changes_between_executions": bool(np.abs(a.prob - b.prob).max() > 0),
        "mean_prob_vs_cpu_host_noise_mean_abs": float(np.abs(a.prob - bench.ref["mc"].prob).mean()),
    }
    bench.time(name, lambda: run_scan(engine, bench.x))


def ort_gpu_part(bench: Bench) -> None:
    for provider in ("cuda", "tensorrt"):
        if PROVIDERS[provider] not in bench.machine.ort_gpu:
            bench.results["runs"][f"ort {provider}"] = "not available"
            continue
        for kind in ("det", "mc"):
            name = f"ort {provider} {kind}"

            def run(kind=kind, provider=provider, name=name):
                engine = OnnxEngine(
                    bench.paths[kind],
                    provider=provider,
                    trt_cache_dir=bench.work / "ort-trt",
                    trt_fp16=True,
                )
                row = bench.compare(name, engine, kind)
                row["provider_ran"] = engine.provider
                row["fallback"] = engine.fallback

            guarded(bench.results, name, run)
            bench.save()


def torch_part(bench: Bench, device: str = "cuda") -> None:
    """PyTorch CUDA eager (fp32, fp16 autocast) and torch.compile on the exported weights."""
    import torch

    from ugss.export.mc_graph import DeterministicGraph, MCGraph
    from ugss.train.predict import load_checkpoint

    if bench.ckpt is None:
        bench.results["runs"]["torch cuda"] = "skipped: needs --ckpt (or no --onnx-dir) for weights"
        return
    model = load_checkpoint(bench.ckpt, which="student").model.to(device).eval()
    noise = torch.from_numpy(bench.noise).to(device)
    modules = {
        "det": DeterministicGraph(model),
        "mc": MCGraph(model, bench.info.mc_samples, bench.info.threshold, "input"),
    }
    for kind, module in modules.items():
        for variant in ("eager fp32", "eager fp16 autocast", "compile fp32"):
            name = f"torch {device} {kind} {variant}"
            run = TorchRunner(module, noise if kind == "mc" else None, variant, device, bench.info)
            guarded(bench.results, name, lambda r=run, n=name, k=kind: bench.compare(n, r, k))
            bench.save()


class TorchRunner:
    """A torch module on CUDA behind the engine interface ``run_scan`` uses."""

    def __init__(self, module, noise, variant: str, device: str, info) -> None:
        import torch

        self.torch, self.device, self.noise_tensor, self.info = torch, device, noise, info
        self.fn = torch.compile(module) if variant.startswith("compile") else module
        self.autocast = "fp16" in variant
        self.noise = FixedNoise(None)

    def run(self, batch: np.ndarray) -> EngineOutput:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
        args = (x,) if self.noise_tensor is None else (x, self.noise_tensor)
        with torch.no_grad(), torch.autocast(self.device, torch.float16, enabled=self.autocast):
            out = self.fn(*args)
        if self.device == "cuda":
            torch.cuda.synchronize()
        if self.noise_tensor is None:
            return EngineOutput(prob=out.float().cpu().numpy()[:, 0])
        mean, ent, counts = (t.float().cpu().numpy() for t in out)
        return EngineOutput(mean[:, 0], ent[:, 0], counts)


def summary(bench: Bench) -> None:
    res, timings = bench.results, bench.results["timings_s"]
    plan = timings.get("trt mc fp16")
    res["targets"] = {
        "mc_fp16_plan_s": {"target": TARGET_MC_PLAN_S, "measured": plan},
        "parity": {"max_prob_diff": MAX_PROB_DIFF, "min_mask_dice": MIN_MASK_DICE},
    }
    base = timings.get("ort cpu det") or 1.0
    print(f"\n{'variant':<36}{'seconds':>10}{'× ort cpu det':>15}")
    for k, v in timings.items():
        print(f"{k:<36}{v:10.3f}{v / base:15.2f}")
    if res["errors"]:
        print(f"{len(res['errors'])} part(s) failed: {', '.join(res['errors'])}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, required=True, help="write the figures here")
    p.add_argument("--ckpt", type=Path, help="checkpoint to export (default: random weights)")
    p.add_argument("--onnx-dir", type=Path, help="use model.onnx + model-det.onnx from here")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--slices", type=int, default=34)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    machine = check_machine()
    bench = Bench(args, machine, Path(tempfile.mkdtemp(prefix="ugss-gpu-")))
    if machine.tensorrt:
        guarded(bench.results, "tensorrt", lambda: tensorrt_part(bench))
    else:
        bench.results["runs"]["tensorrt"] = "not installed (tensorrt + cuda-python)"
    guarded(bench.results, "onnxruntime gpu", lambda: ort_gpu_part(bench))
    if machine.torch_cuda:
        guarded(bench.results, "torch", lambda: torch_part(bench))
    else:
        bench.results["runs"]["torch cuda"] = "torch without CUDA, or not installed"
    summary(bench)
    bench.save()
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
