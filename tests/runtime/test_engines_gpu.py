"""The GPU engines' shape, buffer and provider handling, on the CPU with stand-ins.

``TensorRTEngine`` runs here against a stand-in ``tensorrt`` + ``cuda-python`` whose "device"
memory is host memory and whose "engine" computes ``prob = mean of the image channels``: the
runner's own logic (profile from the sidecar, batch capping, ``set_input_shape`` checks, buffers
allocated once, pinned host memory, asynchronous copies on one stream) is what is tested. The
onnxruntime TensorRT provider's configuration is checked by capturing what is handed to
``InferenceSession``. A real engine on a real GPU is ``test_real_plan_on_a_gpu`` (skipped
without one) and ``benchmarks/bench_trt_gpu.py``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
import pytest
from onnx_models import build_det_model, det_info, save

from ugss.errors import InputError
from ugss.runtime import engines
from ugss.runtime.engines import OnnxEngine, TensorRTEngine, open_engine
from ugss.runtime.model_info import DET_OUTPUT, INPUT_NAME

TRT_VERSION = "10.13.3.9"


class FakeCudart(types.ModuleType):
    """cuda-python's runtime API over host memory; counts calls."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self) -> None:
        super().__init__("cuda.bindings.runtime")
        self.blocks: dict[int, ctypes.Array] = {}
        self.calls: list[tuple] = []

    def _alloc(self, kind: str, n: int):
        block = ctypes.create_string_buffer(n)
        self.blocks[ctypes.addressof(block)] = block
        self.calls.append((kind, n))
        return 0, ctypes.addressof(block)

    def cudaMalloc(self, n):
        return self._alloc("malloc", n)

    def cudaMallocHost(self, n):
        return self._alloc("malloc_host", n)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        ctypes.memmove(dst, src, n)
        self.calls.append(("copy", kind, n, stream))
        return (0,)

    def cudaStreamCreate(self):
        return 0, 77

    def cudaStreamSynchronize(self, stream):
        self.calls.append(("sync", stream))
        return (0,)

    def cudaFree(self, ptr):
        self.calls.append(("free", ptr))
        return (0,)

    def cudaFreeHost(self, ptr):
        self.calls.append(("free_host", ptr))
        return (0,)

    def cudaStreamDestroy(self, stream):
        return (0,)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.calls if c[0] == kind)


class FakeContext:
    """An execution context of a deterministic model: ``prob = mean over channels``."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.profile
        ok = len(shape) == 4 and all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True))
        if ok:
            self.shapes[name] = tuple(shape)
        return ok

    def get_tensor_shape(self, name):
        n, _, h, w = self.shapes[INPUT_NAME]
        return self.shapes[INPUT_NAME] if name == INPUT_NAME else (n, 1, h, w)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream):
        shape = self.shapes[INPUT_NAME]
        n = int(np.prod(shape))
        raw = (ctypes.c_float * n).from_address(self.addresses[INPUT_NAME])
        image = np.frombuffer(raw, np.float32).reshape(shape)
        prob = image.mean(axis=1, keepdims=True)
        out = (ctypes.c_float * prob.size).from_address(self.addresses[DET_OUTPUT])
        np.frombuffer(out, np.float32)[:] = prob.reshape(-1)
        self.engine.executions.append((shape[0], stream))
        return True


class FakeEngine:
    def __init__(self, size: int, max_batch: int) -> None:
        self.profile = ([1, 3, size, size], [4, 3, size, size], [max_batch, 3, size, size])
        self.num_io_tensors = 2
        self.executions: list[tuple[int, int]] = []

    def get_tensor_name(self, i):
        return [INPUT_NAME, DET_OUTPUT][i]

    def get_tensor_mode(self, name):
        return "in" if name == INPUT_NAME else "out"

    def get_tensor_shape(self, name):
        return (-1, 3, -1, -1) if name == INPUT_NAME else (-1, 1, -1, -1)

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_profile_shape(self, name, index):
        return self.profile

    def create_execution_context(self):
        return FakeContext(self)


def fake_tensorrt(engine: FakeEngine | None, version: str = TRT_VERSION) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = np.dtype

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return engine

    trt.Runtime = Runtime
    return trt


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """A plan + sidecar (profile batch 1..8) and the stand-in modules; returns (plan, engine,
    cudart)."""
    info = det_info(input_size=16)
    engine = FakeEngine(16, max_batch=8)
    cudart = FakeCudart()
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda.bindings = bindings
    for name, module in {
        "tensorrt": fake_tensorrt(engine),
        "cuda": cuda,
        "cuda.bindings": bindings,
        "cuda.bindings.runtime": cudart,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(engines, "cuda_device_count", lambda: 1)
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan")
    meta = info.to_metadata() | {
        engines.PLAN_TRT_VERSION_KEY: TRT_VERSION,
        engines.PLAN_PROFILE_KEY: json.dumps({INPUT_NAME: [[b, 3, 16, 16] for b in (1, 4, 8)]}),
    }
    (tmp_path / "m.plan.json").write_text(json.dumps(meta))
    return plan, engine, cudart


def test_plan_runner_preallocates_and_copies_asynchronously_on_one_stream(fake_gpu):
    plan, engine, cudart = fake_gpu
    runner = open_engine(plan)
    assert isinstance(runner, TensorRTEngine) and runner.max_batch == 8
    allocated = (cudart.count("malloc"), cudart.count("malloc_host"))
    assert allocated == (2, 2)  # image and prob, device + pinned host, once
    x = np.random.default_rng(0).random((5, 3, 16, 16), dtype=np.float32)
    for _ in range(3):
        out = runner.run(x)
        np.testing.assert_allclose(out.prob, x.mean(axis=1), rtol=1e-6)
    assert (cudart.count("malloc"), cudart.count("malloc_host")) == allocated  # reused
    copies = [c for c in cudart.calls if c[0] == "copy"]
    assert {c[3] for c in copies} == {77} and cudart.count("sync") == 3  # one sync per call
    assert {e[1] for e in engine.executions} == {77}
    runner.close()
    assert cudart.count("free") == 2 and cudart.count("free_host") == 2


def test_plan_runner_caps_batches_to_the_profile(fake_gpu):
    plan, engine, _ = fake_gpu
    runner = TensorRTEngine(plan)
    x = np.random.default_rng(1).random((19, 3, 16, 16), dtype=np.float32)
    out = runner.run(x)
    assert [e[0] for e in engine.executions] == [8, 8, 3]
    np.testing.assert_allclose(out.prob, x.mean(axis=1), rtol=1e-6)


def test_plan_runner_refuses_a_shape_outside_the_profile(fake_gpu):
    plan, _, _ = fake_gpu
    runner = TensorRTEngine(plan)
    with pytest.raises(InputError, match="outside the plan's optimization profile") as err:
        runner.run(np.zeros((2, 3, 32, 32), np.float32))  # the plan is for 16² inputs
    assert "\n" not in str(err.value)


def test_a_plan_from_another_tensorrt_version_is_one_clear_error(fake_gpu, monkeypatch):
    plan, engine, _ = fake_gpu
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engine, "11.3.0"))
    with pytest.raises(InputError, match=r"built with TensorRT 10\.13\.3\.9, this is TensorRT 11"):
        open_engine(plan)


def test_a_plan_without_a_gpu_is_one_clear_error(fake_gpu, monkeypatch):
    plan, _, _ = fake_gpu
    monkeypatch.setattr(engines, "cuda_device_count", lambda: 0)
    with pytest.raises(InputError, match="needs an NVIDIA GPU"):
        open_engine(plan)


def test_an_unloadable_plan_is_one_clear_error(fake_gpu, monkeypatch):
    plan, _, _ = fake_gpu
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(None))
    with pytest.raises(InputError, match="could not load this plan"):
        open_engine(plan)


def test_infer_cli_says_so_in_one_line(fake_gpu, monkeypatch, capsys, tmp_path):
    from ugss.runtime import infer_cli

    plan, engine, _ = fake_gpu
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engine, "10.0.1"))
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"")
    monkeypatch.setattr(sys, "argv", ["ugss-infer", str(scan), "--model", str(plan)])
    with pytest.raises(SystemExit) as exc:
        infer_cli.main()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(lines) == 1 and "this is TensorRT 10.0.1" in lines[0]


class CapturedSession:
    """Stands in for ``ort.InferenceSession``: records providers, runs on the CPU."""

    seen: ClassVar[list] = []
    runs_on = "TensorrtExecutionProvider"

    def __init__(self, model, sess_options=None, providers=None):
        CapturedSession.seen.append(providers)
        self._real = REAL_SESSION(model, sess_options, providers=["CPUExecutionProvider"])

    def get_providers(self):
        return [CapturedSession.runs_on, "CPUExecutionProvider"]

    def __getattr__(self, name):
        return getattr(self._real, name)


REAL_SESSION = ort.InferenceSession


@pytest.fixture
def ort_with_tensorrt(monkeypatch, tmp_path) -> Path:
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    monkeypatch.setattr(ort, "InferenceSession", CapturedSession)
    CapturedSession.seen = []
    CapturedSession.runs_on = "TensorrtExecutionProvider"
    return save(build_det_model(det_info(input_size=32)), tmp_path / "det.onnx")


def test_ort_tensorrt_provider_is_configured_with_profiles_cache_and_cuda_behind(
    ort_with_tensorrt, tmp_path
):
    engine = OnnxEngine(
        ort_with_tensorrt, provider="tensorrt", trt_cache_dir=tmp_path / "c", trt_fp16=True
    )
    (trt_name, options), *rest = CapturedSession.seen[-1]
    assert trt_name == "TensorrtExecutionProvider"
    assert rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    batches = engines.profile_batches(engine.info, 8)
    assert options["trt_profile_min_shapes"] == f"image:{batches[0]}x3x32x32"
    assert options["trt_profile_opt_shapes"] == f"image:{batches[1]}x3x32x32"
    assert options["trt_profile_max_shapes"] == "image:8x3x32x32"
    assert options["trt_fp16_enable"] is True and options["trt_engine_cache_enable"] is True
    assert Path(options["trt_engine_cache_path"]) == tmp_path / "c"
    assert (tmp_path / "c").is_dir()
    assert engine.description.endswith("TensorrtExecutionProvider")


def test_a_provider_fallback_is_reported_and_logged(ort_with_tensorrt, tmp_path, caplog):
    CapturedSession.runs_on = "CUDAExecutionProvider"  # TensorRT did not take the session
    with caplog.at_level(logging.WARNING, logger="ugss.runtime.engines"):
        engine = OnnxEngine(ort_with_tensorrt, provider="tensorrt", trt_cache_dir=tmp_path)
    assert engine.provider == "CUDAExecutionProvider"
    assert "asked for TensorrtExecutionProvider" in engine.description
    assert any("running on CUDAExecutionProvider" in r.message for r in caplog.records)


def test_cuda_without_the_cuda_provider_is_one_clear_error(tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    path = save(build_det_model(det_info(input_size=32)), tmp_path / "det.onnx")
    with pytest.raises(InputError, match="no CUDAExecutionProvider") as err:
        OnnxEngine(path, provider="cuda")
    assert "\n" not in str(err.value)


def _gpu_and_tensorrt() -> str:
    if engines.cuda_device_count() < 1:
        return "no NVIDIA GPU visible"
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime  # noqa: F401
    except ImportError:
        return "tensorrt / cuda-python not installed"
    return ""


@pytest.mark.gpu
@pytest.mark.skipif(bool(_gpu_and_tensorrt()), reason=_gpu_and_tensorrt() or "ok")
def test_real_plan_on_a_gpu(tmp_path):
    """Build a plan of the tiny ONNX model with the export code and run it (GPU only)."""
    from ugss.export.tensorrt import build_engine

    onnx_path = save(build_det_model(det_info(input_size=32)), tmp_path / "det.onnx")
    meta = ort.InferenceSession(str(onnx_path)).get_modelmeta().custom_metadata_map
    build = build_engine(onnx_path, tmp_path / "det.plan", dict(meta), fp16=False)
    assert build.parity is not None and build.parity.ok
    runner = TensorRTEngine(build.plan)
    x = np.random.default_rng(0).random((11, 3, 32, 32), dtype=np.float32)
    ref = OnnxEngine(onnx_path, provider="cpu").run(x).prob
    assert np.abs(runner.run(x).prob - ref).max() < 1e-3
