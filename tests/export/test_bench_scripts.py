"""The export benchmarks keep working: the GPU script refuses a CPU machine cleanly, and the CPU
benchmark runs end to end at its tiny CI size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ugss.export.tensorrt import cuda_device_count

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.integration
def test_trt_gpu_script_exits_2_with_one_line_without_gpu(tmp_path: Path):
    try:
        import tensorrt  # noqa: F401

        if cuda_device_count() > 0:
            pytest.skip("a GPU with TensorRT is here: the script would run for real")
    except ImportError:
        pass
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_trt_gpu.py"), "--json", str(tmp_path / "t.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_trt_gpu: "), lines
    assert not (tmp_path / "t.json").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_bench_export_tiny(tmp_path: Path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_export.py"),
            "--tiny",
            "--json",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    rows = doc["placements"]
    assert [r["placement"] for r in rows] == ["head", "decoder"]
    for r in rows:
        assert set(r["times_s"]) == {
            f"{lib} {v}" for lib in ("ort", "torch") for v in ("det", "mc", "naive")
        } | {"ort det int8", "ort mc int8"}
        assert "mask Dice" in r["int8_check"]["mc"]
        assert 0.0 <= r["quality_int8"]["dice_mc"] <= 1.0
        assert max(r["parity"]["deterministic"].values()) < 1e-4
        auc = r["quality"]["auroc_mc_entropy"]
        assert auc != auc or 0.0 <= auc <= 1.0  # nan when a tiny model makes no error
    assert "Uncertainty quality" in proc.stdout
