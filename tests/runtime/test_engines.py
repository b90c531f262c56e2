"""Engines: real onnxruntime sessions on tiny ONNX models built in the test."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnx_models as om
import onnxruntime as ort
import pytest

import ugss
from ugss.errors import InputError
from ugss.runtime import engines
from ugss.runtime.engines import (
    Engine,
    OnnxEngine,
    TensorRTEngine,
    TritonEngine,
    auto_batch_size,
    open_engine,
)
from ugss.runtime.preprocess import preprocess_slices


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "det": om.save(om.build_det_model(om.det_info()), d / "det.onnx"),
        "mc": om.save(om.build_mc_model(om.mc_info()), d / "mc.onnx"),
        "mc_det": om.save(om.build_det_model(om.det_info()), d / "mc-det.onnx"),
        "mc_rand": om.save(om.build_mc_model(om.mc_info(), internal_random=True), d / "r.onnx"),
        "foreign": om.save(om.build_det_model(None), d / "foreign.onnx"),
    }


@pytest.fixture(scope="module")
def batch():
    hu, _ = om.phantom_hu((4, 128, 128))
    return preprocess_slices(hu, 64)


def test_deterministic_engine_outputs(models, batch):
    eng = OnnxEngine(models["det"], provider="cpu", threads=1)
    assert isinstance(eng, Engine)
    assert eng.info.kind == "deterministic" and eng.info.input_size == 64
    assert "CPUExecutionProvider" in eng.description
    out = eng.run(batch)
    assert out.prob.shape == (4, 64, 64) and out.prob.dtype == np.float32
    assert out.entropy is None and out.sample_counts is None
    assert 0 < np.count_nonzero(out.prob >= 0.5) < out.prob.size // 20


def test_mc_engine_contract(models, batch):
    eng = OnnxEngine(models["mc"])
    t = eng.info.mc_samples
    out = eng.run(batch)
    assert out.prob.shape == out.entropy.shape == (4, 64, 64)
    assert out.sample_counts.shape == (4, t)
    assert np.all((out.entropy >= 0) & (out.entropy <= 1.0 + 1e-6))
    # counts are foreground pixels per sample; their mean is close to the mean-prob mask's size
    mean_mask = np.count_nonzero(out.prob >= 0.5, axis=(1, 2))
    assert np.allclose(out.sample_counts.mean(axis=1), mean_mask, rtol=0.2, atol=5)


def test_mc_noise_is_fixed_per_scan_and_new_per_seed(models, batch):
    eng = OnnxEngine(models["mc"], seed=7)
    a, b = eng.run(batch), eng.run(batch)
    # within one scan every slab sees the same T sub-networks
    np.testing.assert_array_equal(a.sample_counts, b.sample_counts)
    eng.reseed(8)
    c = eng.run(batch)
    assert not np.array_equal(a.sample_counts, c.sample_counts)
    eng.reseed(7)
    d = eng.run(batch)
    np.testing.assert_array_equal(a.sample_counts, d.sample_counts)
    np.testing.assert_array_equal(a.prob, d.prob)


def test_in_graph_random_varies_between_calls(models, batch):
    eng = OnnxEngine(models["mc_rand"])
    assert eng.noise.shape is None
    a, b = eng.run(batch), eng.run(batch)
    assert not np.array_equal(a.sample_counts, b.sample_counts)


def test_bad_models_are_refused_with_one_line(models, tmp_path):
    with pytest.raises(InputError, match="no UGSS metadata"):
        OnnxEngine(models["foreign"])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(InputError, match="not a usable ONNX model") as err:
        OnnxEngine(junk)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="not found"):
        open_engine(tmp_path / "missing.onnx")
    # metadata that claims MC on a graph without the MC outputs
    lying = om.save(om.build_det_model(om.mc_info()), tmp_path / "lying.onnx")
    with pytest.raises(InputError, match="mean_prob"):
        OnnxEngine(lying)


def test_providers():
    assert engines.resolve_providers("cpu") == ["CPUExecutionProvider"]
    assert engines.resolve_providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(InputError, match="unknown provider"):
        engines.resolve_providers("gpu9000")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(InputError, match="onnxruntime-gpu"):
            engines.resolve_providers("cuda")


def test_threads_must_be_positive(models):
    with pytest.raises(InputError, match="threads"):
        OnnxEngine(models["det"], threads=0)


def test_deterministic_twin_is_used_when_asked(models):
    assert open_engine(models["mc"]).info.kind == "mc"
    assert open_engine(models["mc"], deterministic=True).info.kind == "deterministic"
    # without a twin the MC model stays (the caller drops its MC outputs)
    assert open_engine(models["mc_rand"], deterministic=True).info.kind == "mc"


def test_bundled_model(monkeypatch):
    path = engines.bundled_model_path()  # ugss/models/default.onnx is part of the repository
    assert path == Path(ugss.__file__).parent / "models" / "default.onnx"
    assert open_engine(None).info.kind == "mc"
    assert open_engine(None, deterministic=True).info.kind == "deterministic"  # default-det.onnx
    monkeypatch.setattr(engines, "BUNDLED_MODEL", "no-such-model.onnx")
    with pytest.raises(InputError, match="pass --model"):
        open_engine(None)


def test_auto_batch_size_bounds_memory():
    det, mc = om.det_info(input_size=256), om.mc_info(input_size=256, samples=8)
    assert auto_batch_size(det) > auto_batch_size(mc) >= 1
    assert auto_batch_size(om.det_info(input_size=16)) == 32
    per_slice = 256**2 * 8 * engines.BYTES_PER_PIXEL_SAMPLE
    assert auto_batch_size(mc) * per_slice <= engines.DEFAULT_MODEL_MEMORY_MB * 2**20
    # dropout before the head only: the samples repeat the head, not the network
    head = om.mc_info(input_size=256, samples=8, dropout_at="head")
    assert auto_batch_size(det) > auto_batch_size(head) > auto_batch_size(mc)


def test_tensorrt_plan_needs_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if not installed
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="tensorrt") as err:
        open_engine(plan)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="not found"):
        TensorRTEngine(tmp_path / "none.plan")


def test_triton_needs_tritonclient(monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "tritonclient.http", None)
    with pytest.raises(InputError, match="tritonclient"):
        open_engine("ugss", triton_url="localhost:8000")


def test_triton_without_http_support(monkeypatch):
    """tritonclient installed without its [http] extra raises RuntimeError on import."""
    import importlib.abc
    import importlib.machinery

    class NoHttp(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name == "tritonclient.http":
                return importlib.machinery.ModuleSpec(name, self)
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise RuntimeError("The installation does not include http support.")

    pkg = types.ModuleType("tritonclient")
    pkg.__path__ = []
    monkeypatch.setitem(sys.modules, "tritonclient", pkg)
    monkeypatch.delitem(sys.modules, "tritonclient.http", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoHttp(), *sys.meta_path])
    with pytest.raises(InputError, match=r"tritonclient\[http\]"):
        open_engine("ugss", triton_url="localhost:8000")


def _fake_tritonclient(model_path, info) -> types.ModuleType:
    """A stand-in for ``tritonclient.http`` whose server runs the model in onnxruntime."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    config = {
        "name": "ugss",
        "parameters": {k: {"string_value": v} for k, v in info.to_metadata().items()},
        "input": [
            {"name": "image", "data_type": "TYPE_FP32", "dims": [3, -1, -1]},
            {"name": "dropout_noise", "data_type": "TYPE_FP32", "dims": [info.mc_samples, 2]},
        ],
        "output": [{"name": n} for n in ("mean_prob", "entropy", "sample_counts")],
    }
    http = types.ModuleType("tritonclient.http")

    class InferInput:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, shape, dtype

        def set_data_from_numpy(self, array):
            assert list(array.shape) == self.shape and self.dtype == "FP32"
            self.data = array

    class InferRequestedOutput:
        def __init__(self, name):
            self.name = name

    class Result:
        def __init__(self, values):
            self.values = values

        def as_numpy(self, name):
            return self.values[name]

    class InferenceServerClient:
        def __init__(self, url):
            self.url = url

        def is_model_ready(self, name):
            return name == "ugss"

        def get_model_config(self, name):
            return config

        def infer(self, name, inputs, outputs):
            feed = {i.name: i.data for i in inputs}
            names = [o.name for o in outputs]
            return Result(dict(zip(names, session.run(names, feed), strict=True)))

    http.InferInput, http.InferRequestedOutput = InferInput, InferRequestedOutput
    http.InferenceServerClient = InferenceServerClient
    return http


def test_triton_engine_against_a_fake_server(models, batch, monkeypatch):
    http = _fake_tritonclient(models["mc"], om.mc_info())
    pkg = types.ModuleType("tritonclient")
    pkg.http = http
    monkeypatch.setitem(sys.modules, "tritonclient", pkg)
    monkeypatch.setitem(sys.modules, "tritonclient.http", http)
    eng = open_engine("ugss", triton_url="http://localhost:8000", seed=3)
    assert isinstance(eng, TritonEngine) and eng.info.kind == "mc"
    local = OnnxEngine(models["mc"], seed=3)
    remote_out, local_out = eng.run(batch), local.run(batch)
    np.testing.assert_allclose(remote_out.prob, local_out.prob, atol=1e-6)
    np.testing.assert_array_equal(remote_out.sample_counts, local_out.sample_counts)
    with pytest.raises(InputError, match="not ready"):
        open_engine("other", triton_url="localhost:8000")
