"""TensorRT 10 and 11 at export, on the CPU: version logic, both build paths, the fp16 graph,
plan parity wiring.

TensorRT itself is a stand-in here (recording what the build asks of it); what a real
TensorRT makes of the graphs is ``tests/runtime/test_engines_gpu.py::test_real_plan_on_a_gpu``
and ``benchmarks/bench_trt_gpu.py`` on a GPU. The fp16 graph is real and runs in onnxruntime.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_fixtures import Exported

from ugss.errors import InputError, TensorRTBuildError
from ugss.export import tensorrt as trt_mod
from ugss.export.cli import main
from ugss.export.fp16 import fp32_nodes, to_fp16
from ugss.export.metadata import read_onnx_metadata
from ugss.export.onnx_edit import noise_in_graph
from ugss.export.plan_parity import MAX_PROB_DIFF, MIN_MASK_DICE
from ugss.export.trt_patterns import trt_findings
from ugss.export.verify import session
from ugss.runtime import engines
from ugss.runtime.engines import EngineOutput, OnnxEngine
from ugss.runtime.model_info import INPUT_NAME, MC_OUTPUTS, NOISE_INPUT_NAME, ModelInfo

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.mark.parametrize(
    ("version", "typed"), [("10.13.3.9", False), ("10.0.1", False), ("11.3.0", True)]
)
def test_the_build_path_follows_the_major_version(version, typed):
    path = trt_mod.tensorrt_path(version)
    assert path.strongly_typed is typed
    assert ("strongly typed" in path.describe()) is typed
    assert path.describe().startswith(f"TensorRT {version}: ")


@pytest.mark.parametrize("version", ["8.6.1", "12.0.0", "unknown"])
def test_unsupported_majors_are_one_clear_error(version):
    with pytest.raises(InputError) as err:
        trt_mod.tensorrt_path(version)
    assert "\n" not in str(err.value) and version in str(err.value)


class Recorder:
    """Anything: records attribute reads and calls under a name."""

    def __init__(self, log: list, name: str, returns=None) -> None:
        self._log, self._name, self._returns = log, name, returns or {}

    def __getattr__(self, attr):
        def call(*args, **kw):
            self._log.append((f"{self._name}.{attr}", args))
            value = self._returns.get(attr)
            return value(*args) if callable(value) else value

        return call


def fake_builder_trt(version: str, log: list) -> types.ModuleType:
    """A ``tensorrt`` stand-in that builds b"PLAN"; TensorRT 11 has no ``BuilderFlag``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.LayerType = types.SimpleNamespace(CONVOLUTION="conv", FILL="fill")
    trt.float32, trt.bool = "float32", "bool"
    if not version.startswith("11"):
        trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", PREFER_PRECISION_CONSTRAINTS="PPC")
    network = types.SimpleNamespace(num_layers=0, num_inputs=0)

    def parser(net, logger):
        def parse(data: bytes) -> bool:
            log.append(("parse", onnx.load_from_string(data)))
            return True

        return types.SimpleNamespace(parse=parse, num_errors=0)

    trt.OnnxParser = parser
    returns = {
        "create_network": lambda flags: network,
        "create_builder_config": lambda: Recorder(log, "config"),
        "create_optimization_profile": lambda: Recorder(log, "profile"),
        "build_serialized_network": lambda net, cfg: b"PLAN",
    }
    trt.Builder = lambda logger: Recorder(log, "builder", returns)
    return trt


@pytest.fixture
def with_trt(monkeypatch):
    def install(version: str) -> list:
        log: list = []
        monkeypatch.setitem(sys.modules, "tensorrt", fake_builder_trt(version, log))
        monkeypatch.setattr(trt_mod, "cuda_device_count", lambda: 1)
        return log

    return install


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types_ = {t.name: t.data_type for t in g.initializer}
    types_ |= {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)}
    return types_


def test_tensorrt_10_builds_with_builder_flags_from_the_fp32_graph(
    head_export: Exported, with_trt, tmp_path
):
    log = with_trt("10.13.3.9")
    meta = read_onnx_metadata(head_export.mc)
    build = trt_mod.build_engine(head_export.mc, tmp_path / "m.plan", meta, check=False)
    flags = [args[0] for name, args in log if name == "config.set_flag"]
    assert flags == ["FP16", "PPC"]
    (parsed,) = [args for name, args in log if name == "parse"]
    assert all(t.data_type != FLOAT16 for t in parsed.graph.initializer)
    shapes = [args for name, args in log if name == "profile.set_shape"]
    info = ModelInfo.from_metadata(meta)
    lo, opt, hi = engines.profile_batches(info, trt_mod.DEFAULT_SLAB)
    assert shapes == [(INPUT_NAME, [lo, 3, 32, 32], [opt, 3, 32, 32], [hi, 3, 32, 32])]
    assert hi == 8 and build.plan.read_bytes() == b"PLAN"
    side = json.loads(build.sidecar.read_text())
    assert side[engines.PLAN_TRT_VERSION_KEY] == "10.13.3.9"
    assert json.loads(side[engines.PLAN_PROFILE_KEY])[INPUT_NAME][2][0] == 8
    assert "weakly typed" in side["ugss.export.tensorrt_path"]
    assert ModelInfo.from_metadata(side) == info


def test_tensorrt_11_parses_an_fp16_graph_and_sets_no_precision_flags(
    head_export: Exported, with_trt, tmp_path
):
    log = with_trt("11.3.0")
    meta = read_onnx_metadata(head_export.mc)
    build = trt_mod.build_engine(head_export.mc, tmp_path / "m.plan", meta, check=False)
    assert not [name for name, _ in log if name == "config.set_flag"]
    (parsed,) = [args for name, args in log if name == "parse"]
    assert any(t.data_type == FLOAT16 for t in parsed.graph.initializer)
    assert {v.type.tensor_type.elem_type for v in (*parsed.graph.input, *parsed.graph.output)} == {
        FLOAT
    }
    assert build.precision == "fp16" and "strongly typed" in build.path
    fp32 = trt_mod.build_engine(head_export.mc, tmp_path / "f.plan", meta, fp16=False, check=False)
    parsed32 = [args for name, args in log if name == "parse"][-1]
    assert fp32.precision == "fp32"
    assert all(t.data_type != FLOAT16 for t in parsed32.graph.initializer)


def test_export_cli_refuses_an_unsupported_tensorrt_in_one_line(
    head_export: Exported, with_trt, tmp_path, monkeypatch, capsys
):
    with_trt("12.0.0")
    out = tmp_path / "m.onnx"
    monkeypatch.setattr(
        sys, "argv", ["ugss-export", str(head_export.ckpt_path), "--onnx", str(out), "--trt"]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(lines) == 1, lines
    assert "needs TensorRT 10 or 11, found 12.0.0" in lines[0]
    assert not out.exists()  # refused before any work


def near_rate_noise(shape, rate: float, seed: int = 2) -> np.ndarray:
    """Uniform noise with half its values within 3e-5 of the dropout rate (fp16 spacing there
    is 1.2e-4: in fp16 they would round across it)."""
    rng = np.random.default_rng(seed)
    u = rng.random(shape, dtype=np.float32)
    u[:, ::2] = rate + np.where(rng.random(u[:, ::2].shape) < 0.5, -3e-5, 3e-5)
    return u.astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["head_export", "decoder_export"])
def test_fp16_graph_keeps_the_tail_and_the_dropout_comparison_fp32(request, which):
    exp: Exported = request.getfixturevalue(which)
    model = onnx.load(str(exp.mc))
    half = to_fp16(model)
    assert not trt_findings(half)  # still a graph TensorRT takes
    kinds = _elem_types(half)
    for node in half.graph.node:
        if node.op_type in ("GreaterOrEqual", "Sigmoid", "ReduceMean", "Log", "ReduceSum"):
            assert all(kinds[i] != FLOAT16 for i in node.input if i), (node.name, node.op_type)
        if node.op_type == "Conv" and node.input[1] in {t.name for t in half.graph.initializer}:
            assert kinds[node.input[1]] == FLOAT16, node.name
    info = ModelInfo.from_metadata(read_onnx_metadata(exp.mc))
    size = info.input_size
    x = np.random.default_rng(0).random((3, 3, size, size), dtype=np.float32)
    dims = [d.dim_value for d in model.graph.input[1].type.tensor_type.shape.dim]
    feed = {INPUT_NAME: x, NOISE_INPUT_NAME: near_rate_noise(dims, info.dropout_rate)}
    ref = session(model).run(list(MC_OUTPUTS), feed)
    got = session(half).run(list(MC_OUTPUTS), feed)
    assert all(g.dtype == np.float32 for g in got)
    assert np.abs(got[0] - ref[0]).max() < MAX_PROB_DIFF  # no channel flipped
    assert np.abs(got[1] - ref[1]).max() < 1e-2
    assert np.abs(got[2] - ref[2]).max() <= 1


def test_fp32_nodes_cover_graph_noise_too(head_export: Exported):
    graph = noise_in_graph(onnx.load(str(head_export.mc))).graph
    kept = {n.op_type for n in fp32_nodes(graph)}
    assert {"RandomUniform", "GreaterOrEqual", "Sigmoid", "ReduceMean", "Log"} <= kept
    assert "Conv" not in kept


class FakePlan:
    """Stands in for ``TensorRTEngine``: the plan's ONNX source in onnxruntime, ± an offset."""

    offset = 0.0

    def __init__(self, plan_path: Path, seed: int | None = 0) -> None:
        side = json.loads(Path(f"{plan_path}.json").read_text())
        self.inner = OnnxEngine(FakePlan.source / side["ugss.export.source_onnx"], seed=seed)
        self.info, self.noise = self.inner.info, self.inner.noise

    def reseed(self, seed):
        self.inner.reseed(seed)

    def run(self, batch):
        out = self.inner.run(batch)
        return EngineOutput(np.clip(out.prob + FakePlan.offset, 0, 1), out.entropy)

    def close(self):
        pass


@pytest.mark.parametrize(("offset", "ok"), [(0.0, True), (0.01, False)])
def test_plan_parity_is_stored_beside_the_plan_or_the_plan_refused(
    head_export: Exported, with_trt, tmp_path, monkeypatch, offset, ok
):
    with_trt("10.13.3.9")
    monkeypatch.setattr(engines, "TensorRTEngine", FakePlan)
    FakePlan.source, FakePlan.offset = head_export.mc.parent, offset
    meta = read_onnx_metadata(head_export.mc)
    build = trt_mod.build_engine(head_export.mc, tmp_path / "m.plan", meta, check=False)
    size = build.profile[INPUT_NAME][0][2]
    slices = np.random.default_rng(5).random((6, 3, size, size), dtype=np.float32)
    info = ModelInfo.from_metadata(meta)
    if ok:
        parity = trt_mod.check_plan(build.plan, head_export.mc, info, build.profile, slices)
        side = json.loads(build.sidecar.read_text())
        assert float(side["ugss.export.plan_max_prob_diff"]) == pytest.approx(
            parity.max_prob_diff, abs=1e-9
        )
        assert side["ugss.export.plan_parity_mode"] == "exact" and parity.ok
        assert float(side["ugss.export.plan_mask_dice"]) >= MIN_MASK_DICE
    else:
        with pytest.raises(TensorRTBuildError, match="plan refused"):
            trt_mod.check_plan(build.plan, head_export.mc, info, build.profile, slices)
        assert not build.plan.exists() and not build.sidecar.exists()


class Layer:
    def __init__(self, kind: str, ins: list, outs: list) -> None:
        self.type, self.ins, self.outs = kind, ins, outs
        self.num_inputs, self.num_outputs = len(ins), len(outs)
        self.precision, self.output_types = None, {}

    def get_input(self, k):
        return self.ins[k]

    def get_output(self, k):
        return self.outs[k]

    def set_output_type(self, k, dtype):
        self.output_types[k] = dtype


def test_tensorrt_10_keeps_the_noise_comparison_and_the_tail_fp32():
    t = types.SimpleNamespace
    trt = t(LayerType=t(CONVOLUTION="conv", FILL="fill"), float32="float32", bool="bool")
    tensor = {n: t(name=n, dtype=d) for n, d in [
        ("image", "float32"), ("f", "float32"), (NOISE_INPUT_NAME, "float32"),
        ("mask", "bool"), ("m", "float32"), ("w", "float32"), ("logit", "float32"),
        ("prob", "float32"), ("shape", "int32"),
    ]}  # fmt: skip
    layers = [
        Layer("conv", [tensor["image"]], [tensor["f"]]),
        Layer("elementwise", [tensor[NOISE_INPUT_NAME], None], [tensor["mask"]]),  # noise >= p
        Layer("cast", [tensor["mask"]], [tensor["m"]]),
        Layer("elementwise", [tensor["m"]], [tensor["w"]]),
        Layer("conv", [tensor["f"], tensor["w"]], [tensor["logit"]]),
        Layer("activation", [tensor["logit"]], [tensor["prob"]]),
        Layer("shape", [tensor["prob"]], [tensor["shape"]]),
    ]
    network = t(
        num_layers=len(layers),
        get_layer=layers.__getitem__,
        num_inputs=2,
        get_input=[tensor["image"], tensor[NOISE_INPUT_NAME]].__getitem__,
    )
    assert trt_mod._keep_fp32(trt, network) == 2
    assert [layer.precision for layer in layers] == [
        None,
        "float32",
        None,
        None,
        None,
        "float32",
        None,
    ]
    assert layers[1].output_types == {} and layers[5].output_types == {0: "float32"}
