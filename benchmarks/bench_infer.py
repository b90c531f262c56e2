"""End-to-end ``ugss-infer`` time for a head CT, split by stage; deterministic vs MC.

    python benchmarks/bench_infer.py                       # bundled model (MC + -det twin)
    python benchmarks/bench_infer.py --model m.onnx        # an exported model
    python benchmarks/bench_infer.py --random-resunet      # ResUNet-shaped ONNX, random weights
    python benchmarks/bench_infer.py --tiny                # CI smoke: tiny models, small scan
    python benchmarks/bench_infer.py --memory              # + peak RSS of a 300-slice 512² run

The scan is a synthetic 34-slice 512² head CT (``ugss.synth`` when present, else a phantom),
stored as int16 NIfTI and read back like a user's file. Stages: read, preprocess, model,
resample (model grid → native), postprocess, write (mask, prob, uncertainty NIfTI), pictures.
Each configuration runs ``--repeats`` times; medians are printed as a table with the ratio
end-to-end (without pictures) / model. ``--random-resunet`` and ``--tiny`` build their models
with the ``onnx`` package (tests' helper), which the runtime itself never needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))  # onnx_models: tiny and random test models

STAGES = ("read", "preprocess", "model", "resample", "postprocess", "write", "pictures", "total")


def make_scan_file(path: Path, slices: int, matrix: int, seed: int = 3) -> Path:
    """A synthetic head CT with a hemorrhage as int16 NIfTI."""
    from ugss.runtime.nifti import write_nifti
    from ugss.runtime.volume import Volume

    try:
        from ugss.synth.scan import make_scan

        volume, _, _ = make_scan(
            seed, matrix=matrix, hemorrhage="subdural", thin=False, slice_thickness=4.5
        )
        hu = volume.hu
        if hu.shape[0] < slices:  # repeat the stack to the wanted count
            hu = np.concatenate([hu] * (slices // hu.shape[0] + 1))
        hu = hu[:slices]
        volume = Volume(hu=np.ascontiguousarray(hu), affine=volume.affine)
    except ImportError:
        import onnx_models as om

        hu, _ = om.phantom_hu((slices, matrix, matrix))
        volume = Volume(hu=hu, affine=om.phantom_affine((5.0, 230 / matrix, 230 / matrix)))
    return write_nifti(path, volume.hu, like=volume, dtype=np.int16)


def build_models(kind: str, out: Path, input_size: int, samples: int) -> dict[str, Path]:
    import onnx_models as om

    from ugss.runtime.model_info import ModelInfo

    if kind == "tiny":
        return {
            "deterministic": om.save(om.build_det_model(om.det_info(input_size)), out / "d.onnx"),
            "mc": om.save(om.build_mc_model(om.mc_info(input_size, samples)), out / "m.onnx"),
        }
    common = {"input_size": input_size, "name": "resunet-random-weights", "dropout_at": "head"}
    det = ModelInfo(kind="deterministic", **common)
    mc = ModelInfo(kind="mc", mc_samples=samples, dropout_rate=0.2, **common)
    return {
        "deterministic": om.save(om.build_resunet(det), out / "d.onnx"),
        "mc": om.save(om.build_resunet(mc), out / "m.onnx"),
    }


def given_models(model: str | None) -> dict[str, Path]:
    from ugss.runtime.engines import OnnxEngine, bundled_model_path, deterministic_companion
    from ugss.runtime.model_info import KIND_MC

    path = Path(model) if model else bundled_model_path()
    kind = OnnxEngine(path).info.kind
    models = {kind: path}
    twin = deterministic_companion(path) if kind == KIND_MC else None
    if twin is not None:
        models["deterministic"] = twin
    return models


def run_once(scan: Path, engine, out_dir: Path, pictures: bool, batch_size: int | None):
    """One scan through the CLI's own per-scan path; returns its stage timings and volume."""
    from ugss.runtime.pipeline import InferOptions, process_scan

    opts = InferOptions(batch_size=batch_size, pictures=pictures)
    report = process_scan(scan, engine, out_dir, "bench", opts)
    return report.timings_s, report.total_volume_ml


def preprocess_profile(scan: Path, input_size: int, repeats: int) -> dict[str, float]:
    """Where ``ugss.runtime.preprocess`` spends its time for this scan (medians, seconds)."""
    from ugss.runtime.io import read_volume
    from ugss.runtime.preprocess import PlaneTransform, apply_windows

    hu = read_volume(scan).hu
    tr = PlaneTransform(hu.shape[1], hu.shape[2], input_size)
    small = np.random.default_rng(0).random((hu.shape[0], 2, input_size, input_size), np.float32)
    parts: dict[str, list[float]] = {
        "forward resize": [],
        "windows": [],
        "inverse resize (2 maps)": [],
    }
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = tr.forward(hu)
        t1 = time.perf_counter()
        apply_windows(x)
        t2 = time.perf_counter()
        tr.inverse(small)
        t3 = time.perf_counter()
        parts["forward resize"].append(t1 - t0)
        parts["windows"].append(t2 - t1)
        parts["inverse resize (2 maps)"].append(t3 - t2)
    return {k: statistics.median(v) for k, v in parts.items()}


def peak_memory(models: dict[str, Path], slices: int, matrix: int, work: Path) -> dict:
    """Peak RSS of ``ugss-infer`` (a fresh process) on a thin-slice scan, per model kind.

    Read from the child's own ``VmHWM``: ``ru_maxrss`` would include this (large) parent,
    which Linux carries across fork + exec.
    """
    import onnx_models as om

    from ugss.runtime.nifti import write_nifti
    from ugss.runtime.volume import Volume

    hu, _ = om.phantom_hu((slices, matrix, matrix))
    spacing = (0.625, 230 / matrix, 230 / matrix)
    volume = Volume(hu=hu, affine=om.phantom_affine(spacing))
    scan = write_nifti(work / "thin.nii.gz", hu, like=volume, dtype=np.int16)
    del hu, volume
    result = {}
    for kind, model in models.items():
        code = (
            "import sys\n"
            "from ugss.runtime.infer_cli import main\n"
            "sys.argv = sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
            "print('PEAK', hwm[0].split()[1])\n"
        )
        args = ["ugss-infer", str(scan), "--model", str(model), "-o", str(work / kind)]
        if kind == "deterministic":
            args.append("--deterministic")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
        )
        peak_kib = int(proc.stdout.split("PEAK")[-1])
        result[kind] = {
            "peak_rss_gib": round(peak_kib / 2**20, 3),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    return {"slices": slices, "matrix": matrix, "by_model": result}


def environment() -> dict:
    import onnxruntime

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--random-resunet", action="store_true", help="ResUNet-shaped, random")
    parser.add_argument("--tiny", action="store_true", help="tiny models and scan (CI smoke)")
    parser.add_argument("--input-size", type=int, default=160, help="for built models")
    parser.add_argument("--samples", type=int, default=8, help="MC samples for built models")
    parser.add_argument("--slices", type=int, default=34)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--no-pictures", action="store_true")
    parser.add_argument("--memory", action="store_true", help="peak RSS on a 300-slice scan")
    parser.add_argument("--memory-slices", type=int, default=300)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    from ugss.runtime.engines import OnnxEngine

    if args.tiny:
        args.slices, args.matrix, args.repeats = min(args.slices, 8), min(args.matrix, 128), 1
        args.input_size = min(args.input_size, 64)
        args.memory_slices = min(args.memory_slices, 40)
    work = Path(tempfile.mkdtemp(prefix="ugss-bench-"))
    if args.tiny or args.random_resunet:
        models = build_models(
            "tiny" if args.tiny else "resunet", work, args.input_size, args.samples
        )
    else:
        models = given_models(args.model)
    scan = make_scan_file(work / "scan.nii.gz", args.slices, args.matrix)
    rows = {}
    for kind, path in models.items():
        engine = OnnxEngine(path, threads=args.threads)
        run_once(scan, engine, work, False, args.batch_size)  # warm-up: session, caches, imports
        runs = [
            run_once(scan, engine, work, not args.no_pictures, args.batch_size)
            for _ in range(args.repeats)
        ]
        med = {s: statistics.median(r[0].get(s, 0.0) for r in runs) for s in STAGES}
        no_pics = statistics.median(r[0]["total"] - r[0]["pictures"] for r in runs)
        rows[kind] = {
            "model_file": path.name,
            "input_size": engine.info.input_size,
            "mc_samples": engine.info.mc_samples,
            "stages_s": {k: round(v, 4) for k, v in med.items()},
            "end_to_end_no_pictures_s": round(no_pics, 4),
            "end_to_end_s": round(med["total"], 4),
            "ratio_no_pictures_to_model": round(no_pics / med["model"], 3),
            "volume_ml": round(runs[-1][1], 3),
        }
    size = next(iter(rows.values()))["input_size"]
    result = {
        "scan": {"slices": args.slices, "matrix": args.matrix, "file": "int16 NIfTI (gz)"},
        "repeats": args.repeats,
        "threads": args.threads or "onnxruntime default",
        "environment": environment(),
        "results": rows,
        "preprocess_profile_s": {
            k: round(v, 4) for k, v in preprocess_profile(scan, size, args.repeats).items()
        },
    }
    if "mc" in rows and "deterministic" in rows:
        result["mc_over_deterministic_model"] = round(
            rows["mc"]["stages_s"]["model"] / rows["deterministic"]["stages_s"]["model"], 3
        )
    if args.memory:
        result["memory"] = peak_memory(models, args.memory_slices, args.matrix, work)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def print_table(result: dict) -> None:
    scan = result["scan"]
    print(f"ugss-infer, {scan['slices']} slices {scan['matrix']}², medians of {result['repeats']}")
    print(f"{'stage (s)':<22}" + "".join(f"{k:>15}" for k in result["results"]))
    for stage in STAGES[:-1]:
        print(
            f"{stage:<22}"
            + "".join(f"{r['stages_s'][stage]:>15.3f}" for r in result["results"].values())
        )
    for key, label in (
        ("end_to_end_no_pictures_s", "total, no pictures"),
        ("end_to_end_s", "total"),
        ("ratio_no_pictures_to_model", "no pictures / model"),
    ):
        print(f"{label:<22}" + "".join(f"{r[key]:>15.3f}" for r in result["results"].values()))
    if "mc_over_deterministic_model" in result:
        print(f"MC / deterministic model time: {result['mc_over_deterministic_model']:.2f}x")
    print(
        "preprocess profile (s): "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["preprocess_profile_s"].items())
    )
    if "memory" in result:
        mem = result["memory"]
        for kind, r in mem["by_model"].items():
            print(
                f"peak RSS, {mem['slices']} x {mem['matrix']}² scan, {kind}: "
                f"{r['peak_rss_gib']:.2f} GiB ({r['seconds']:.0f} s)"
            )


if __name__ == "__main__":
    main()
