"""The exported graphs use only what TensorRT's ONNX parser accepts (no GPU needed to check).

Operators and restrictions from onnx-tensorrt's operator table (TensorRT 10): ``Dropout`` only
with training mode off (we emit none), Reduce* ``axes`` build-time constants, random ops
supported with the seed ignored. Building and running the engine is ``benchmarks/bench_trt_gpu.py``.
"""

from __future__ import annotations

import onnx
import pytest
from export_fixtures import Exported

TRT_OPS = {
    "Add", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
    "Div", "Equal", "Expand", "Gather", "GreaterOrEqual", "Identity", "Log", "MaxPool", "Mul",
    "RandomUniformLike", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid",
    "Slice", "Sub", "Tile", "Transpose", "Unsqueeze", "Where",
}  # fmt: skip


def graphs(exp: Exported) -> dict[str, onnx.ModelProto]:
    out = {"det": exp.det, "mc": exp.mc}
    if exp.options.triton is not None:
        out["triton-mc"] = exp.options.triton / "ugss" / "1" / "model.onnx"
    return {k: onnx.load(str(v)) for k, v in out.items()}


def constants(model: onnx.ModelProto) -> set[str]:
    names = {t.name for t in model.graph.initializer}
    return names | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}


@pytest.mark.parametrize("which", ["head_export", "decoder_export"])
def test_only_tensorrt_operators(request, which):
    for name, model in graphs(request.getfixturevalue(which)).items():
        ops = {n.op_type for n in model.graph.node}
        assert ops <= TRT_OPS, (name, ops - TRT_OPS)
        assert "Dropout" not in ops
        assert all(o.domain in ("", "ai.onnx") for o in model.opset_import), name
        const = constants(model)
        for node in model.graph.node:
            if node.op_type.startswith("Reduce") and len(node.input) > 1:
                assert node.input[1] in const, (name, node.name)
            if node.op_type == "ConvTranspose":
                assert node.input[1] in const, (name, node.name)


def test_randomness_only_where_asked(head_export: Exported):
    ops = {k: {n.op_type for n in m.graph.node} for k, m in graphs(head_export).items()}
    assert "RandomUniformLike" not in ops["det"] | ops["mc"]
    assert "RandomUniformLike" in ops["triton-mc"]
