"""``benchmarks/bench_trt_gpu.py`` on the CPU: a failing part is recorded and the next one runs
(what a GPU run relies on to always write its JSON); the real run needs a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_a_failing_part_is_recorded_and_the_run_goes_on(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_trt_gpu as bench

    results = {"errors": {}, "tracebacks": {}}

    def broken():
        raise RuntimeError("TensorRT cannot parse the ONNX model (Conv weights)\nmore")

    assert bench.guarded(results, "trt mc fp16 build", broken) is None
    assert bench.guarded(results, "trt det fp32 build", lambda: 42) == 42
    assert results["errors"] == {
        "trt mc fp16 build": "RuntimeError: TensorRT cannot parse the ONNX model (Conv weights)"
    }
    assert results["tracebacks"]["trt mc fp16 build"]
    sys.modules.pop("bench_trt_gpu", None)
