"""Every graph we export passes the TensorRT importer's rules we know of (no GPU needed).

The rules are ``ugss.export.trt_patterns`` (operators, random ops fed by constants, run-time
convolution weights that should be folded, constant axes, Q/DQ zero points, dynamic shapes only
where the optimization profile sets them). Here they are applied to each variant ``ugss-export``
writes: deterministic, MC with host noise, MC with graph noise (channel and element dropout),
the Triton copies, and the CPU int8 twins (refused for TensorRT only by their uint8 Q/DQ).
Building and running engines is ``benchmarks/bench_trt_gpu.py`` on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from export_ckpts import write_checkpoint
from export_fixtures import Exported, torch_threads

from ugss.export.api import ExportOptions, export_checkpoint
from ugss.export.onnx_edit import noise_in_graph
from ugss.export.quantize import Calibration, quantize_int8
from ugss.export.tensorrt import plan_profile
from ugss.export.trt_patterns import describe, trt_findings
from ugss.runtime.engines import OnnxEngine
from ugss.runtime.model_info import INPUT_NAME, NOISE_INPUT_NAME, ModelInfo
from ugss.train.predict import load_checkpoint

RUNS = 32  # MC runs of T = 8 samples each for the statistical comparison


@pytest.fixture(scope="module")
def element_export(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Element dropout on the decoder: noise always drawn in the graph (``RandomUniformLike``)."""
    root = tmp_path_factory.mktemp("element")
    with torch_threads(1):
        ckpt = write_checkpoint(root / "model.pt", dropout_at="decoder", dropout_kind="element")
        options = ExportOptions(
            onnx=root / "out" / "model.onnx",
            mc_samples=8,
            noise="graph",
            interval_calibration=False,  # the tiny checkpoint's split names no real scans
        )
        result = export_checkpoint(ckpt, options)
    return Exported(ckpt, load_checkpoint(ckpt, which="auto"), options, result)


def variants(exp: Exported) -> dict[str, Path]:
    out = {"det": exp.det, "mc": exp.mc}
    repo = exp.options.triton
    if repo is not None:
        out["triton-mc"] = repo / exp.options.name / "1" / "model.onnx"
        out["triton-det"] = repo / exp.options.det_name / "1" / "model.onnx"
    return out


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def profile_for(model: onnx.ModelProto, max_batch: int = 8):
    meta = {p.key: p.value for p in model.metadata_props}
    channels = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    return plan_profile(ModelInfo.from_metadata(meta), channels, max_batch)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["head_export", "decoder_export", "element_export"])
def test_every_exported_graph_passes_the_tensorrt_rules(request, which):
    exp: Exported = request.getfixturevalue(which)
    models = {k: load(v) for k, v in variants(exp).items()}
    if any(i.name == NOISE_INPUT_NAME for i in models["mc"].graph.input):
        models["mc-graph-noise"] = noise_in_graph(models["mc"])  # --noise graph
    for name, model in models.items():
        found = trt_findings(model, profile_for(model))
        assert not found, (which, name, describe(found, 10))


@pytest.mark.slow
def test_graph_noise_is_random_uniform_with_a_shape(head_export: Exported, element_export):
    graph = load(variants(head_export)["triton-mc"]).graph
    (rng,) = [n for n in graph.node if n.op_type.startswith("Random")]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in rng.attribute}
    assert rng.op_type == "RandomUniform" and not rng.input
    host = load(head_export.mc).graph.input[1]
    assert attrs["shape"] == [d.dim_value for d in host.type.tensor_type.shape.dim]
    for model in (load(head_export.det), load(head_export.mc)):  # no randomness where not asked
        assert not any(n.op_type.startswith("Random") for n in model.graph.node)
    inits = {t.name for t in load(element_export.mc).graph.initializer}
    likes = [n for n in load(element_export.mc).graph.node if n.op_type == "RandomUniformLike"]
    assert likes and all(n.input[0] not in inits for n in likes)


@pytest.mark.slow
def test_int8_twins_are_refused_only_for_their_uint8_qdq(head_export: Exported, tmp_path):
    """The CPU int8 twins never go to TensorRT (``--trt`` builds from the fp32 graphs); the
    only rule they break is onnxruntime's uint8 activations, and the checker says so."""
    size = head_export.ckpt.input_size
    slices = np.random.default_rng(0).random((8, 3, size, size), dtype=np.float32)
    for src in (head_export.det, head_export.mc):
        dst = tmp_path / src.name.replace(".onnx", "-int8.onnx")
        quantize_int8(src, dst, Calibration(slices, "test"), 0.5)
        rules = {f.rule for f in trt_findings(load(dst))}
        assert rules == {"qdq"}, (src.name, rules)


def _old_noise_in_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """What ``noise_in_graph`` wrote before: ``RandomUniformLike`` of a zero initializer."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    (noise,) = [i for i in out.graph.input if i.name == NOISE_INPUT_NAME]
    dims = [d.dim_value for d in noise.type.tensor_type.shape.dim]
    template = onnx.numpy_helper.from_array(np.zeros(dims, np.float32), "dropout_noise_like")
    out.graph.initializer.append(template)
    node = onnx.helper.make_node("RandomUniformLike", [template.name], [NOISE_INPUT_NAME])
    out.graph.node.insert(0, node)
    out.graph.input.remove(noise)
    return out


def test_the_checker_finds_the_patterns_tensorrt_refuses(head_export: Exported):
    mc = load(head_export.mc)
    old = _old_noise_in_graph(mc)
    assert {f.rule for f in trt_findings(old)} == {"random-static"}
    unfolded = onnx.ModelProto()
    unfolded.CopyFrom(mc)  # the head's bias expanded in the graph, as exported before
    conv = next(n for n in unfolded.graph.node if n.op_type == "Conv")
    shape = onnx.numpy_helper.from_array(np.array([16], np.int64), "bias_shape")
    unfolded.graph.initializer.append(shape)
    expand = onnx.helper.make_node("Expand", [conv.input[2], "bias_shape"], ["bias16"])
    unfolded.graph.node.insert(0, expand)
    conv.input[2] = "bias16"
    assert {f.rule for f in trt_findings(unfolded)} == {"conv-unfolded"}
    loose = onnx.ModelProto()
    loose.CopyFrom(mc)  # a symbolic channel count: outside any profile
    loose.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "C"
    assert "shape" in {f.rule for f in trt_findings(loose)}
    profile = profile_for(mc)
    profile[INPUT_NAME][2][2] += 16  # a profile that disagrees with nothing fixed is fine …
    assert not trt_findings(mc, profile)
    profile[NOISE_INPUT_NAME] = [[8, 3]] * 3  # … but one that contradicts a fixed input is not
    assert {f.rule for f in trt_findings(mc, profile)} == {"shape"}


@pytest.mark.slow
def test_the_runtime_runs_old_and_new_graph_noise_models(head_export: Exported, tmp_path):
    """Models exported before the change (``RandomUniformLike``) still run, as the new ones do;
    both draw fresh noise per run, and their MC means agree with host-noise runs."""
    mc = load(head_export.mc)
    size = head_export.ckpt.input_size
    x = np.random.default_rng(1).random((2, 3, size, size), dtype=np.float32)
    host = OnnxEngine(head_export.mc, provider="cpu")
    reference = []
    for seed in range(RUNS):
        host.reseed(seed)
        reference.append(host.run(x).prob)
    for name, model in (("old", _old_noise_in_graph(mc)), ("new", noise_in_graph(mc))):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        engine = OnnxEngine(path, provider="cpu")
        runs = [engine.run(x).prob for _ in range(RUNS)]
        assert np.abs(runs[0] - runs[1]).max() > 0, name  # fresh draws per run
        gap = np.abs(np.mean(runs, axis=0) - np.mean(reference, axis=0))
        assert gap.mean() < 0.01 and gap.max() < 0.05, (name, gap.max(), gap.mean())
