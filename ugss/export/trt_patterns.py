"""Graph patterns TensorRT's ONNX importer refuses, found without a GPU (onnx only, no torch).

A GPU sees these only when ``ugss-export --trt`` parses the graph; checking them on the CPU at
export (and in the tests, for every graph variant we write) catches them where they are made.
The rules come from the ONNX-TensorRT importer (TensorRT 10) and its operator table:

- ``op``: only operators the importer supports and our graphs use (``TRT_OPS``), default domain.
- ``dropout``: ``Dropout`` only with training mode off; we emit none (explicit masks instead).
- ``random-static``: ``RandomUniformLike`` / ``RandomNormalLike`` whose input is an
  initializer or a constant — "The input tensor cannot be an initializer" (NVIDIA/TensorRT#3568).
  Graph noise of a fixed shape is ``RandomUniform(shape=…)``, which has no input.
- ``random-shape``: ``RandomUniform`` / ``RandomNormal`` need a ``shape`` attribute, a float
  type and at most 2³¹−1 elements (TensorRT's fill layer limit).
- ``conv-unfolded``: convolution weights or bias computed at run time from constants only,
  where a folded initializer would do (a run-time kernel costs a kernel-less, slower tactic);
  weights that depend on the input or the noise (the fused MC head) are allowed.
- ``deconv-weights``: ``ConvTranspose`` weights must be an initializer (or a DequantizeLinear
  of one: explicit quantization).
- ``axes``: the ``axes`` input of Reduce*, Slice, Squeeze, Unsqueeze must be a constant.
- ``qdq``: Q/DQ zero points must be int8 zeros (TensorRT's explicit quantization); onnxruntime's
  uint8 activations (the CPU int8 twins) are refused — those twins are for CPU only.
- ``shape``: symbolic dimensions only where the optimization profile sets them: axes N, H, W of
  ``image``; every other input has a fixed shape; with a profile, the fixed dimensions agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ugss.runtime.model_info import INPUT_NAME

TRT_OPS = frozenset(
    {
        "Add", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
        "DequantizeLinear", "Div", "Equal", "Expand", "Gather", "GreaterOrEqual", "Identity",
        "Log", "MaxPool", "Mul", "QuantizeLinear", "RandomUniform", "RandomUniformLike",
        "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Sub",
        "Tile", "Transpose", "Unsqueeze", "Where",
    }
)  # fmt: skip
RANDOM_LIKE = frozenset({"RandomUniformLike", "RandomNormalLike"})
RANDOM_SHAPED = frozenset({"RandomUniform", "RandomNormal"})
AXES_INPUT = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1}  # Reduce*: input 1
MAX_FILL_ELEMENTS = 2**31 - 1
IMAGE_DYNAMIC_AXES = (0, 2, 3)  # N, H, W: what the optimization profile sets
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
Profile = Mapping[str, Sequence[Sequence[int]]]  # input → [min, opt, max] shapes


@dataclass(frozen=True)
class Finding:
    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.node}: {self.message}"


def static_tensors(graph: onnx.GraphProto) -> tuple[set[str], set[str]]:
    """``(constants, static)``: initializers and ``Constant`` outputs; and everything computable
    from them alone (no graph input, no random op upstream) — what a constant folder would fold."""
    const = {t.name for t in graph.initializer}
    const |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    static = set(const)
    for node in graph.node:  # ONNX nodes are topologically sorted
        inputs = [i for i in node.input if i]
        random = node.op_type in RANDOM_LIKE | RANDOM_SHAPED
        if inputs and not random and all(i in static for i in inputs):
            static.update(o for o in node.output if o)
    return const, static


def _node_findings(graph: onnx.GraphProto) -> list[Finding]:
    const, static = static_tensors(graph)
    # weights behind DequantizeLinear are TensorRT's explicit quantization: constants for it
    inits = {t.name for t in graph.initializer}
    inits |= {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    out: list[Finding] = []
    for node in graph.node:
        name, op = node.name or node.output[0], node.op_type
        if node.domain not in ("", "ai.onnx"):
            out.append(Finding("op", name, f"custom domain {node.domain!r} ({op})"))
        elif op == "Dropout":
            out.append(Finding("dropout", name, "Dropout is refused in training mode"))
        elif op not in TRT_OPS:
            out.append(Finding("op", name, f"{op} is not among the operators checked for TRT"))
        if op in RANDOM_LIKE and node.input[0] in static:
            out.append(Finding("random-static", name, f"{op} fed by constant {node.input[0]!r}"))
        if op in RANDOM_SHAPED:
            out += _random_shape(node, name)
        if op in ("Conv", "ConvTranspose"):
            out += _conv(node, name, inits, static)
        axes = 1 if op.startswith("Reduce") else AXES_INPUT.get(op)
        loose = axes is not None and len(node.input) > axes and node.input[axes] not in const
        if loose and node.input[axes]:
            out.append(Finding("axes", name, f"{op} axes {node.input[axes]!r} not constant"))
    return out


def _random_shape(node: onnx.NodeProto, name: str) -> list[Finding]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    shape = list(attrs.get("shape", []))
    if not shape:
        return [Finding("random-shape", name, f"{node.op_type} has no shape attribute")]
    found = []
    if int(attrs.get("dtype", onnx.TensorProto.FLOAT)) not in FLOAT_TYPES:
        found.append(Finding("random-shape", name, "random values must be fp32 or fp16"))
    if int(np.prod(shape)) > MAX_FILL_ELEMENTS:
        found.append(Finding("random-shape", name, f"{shape} exceeds 2^31-1 elements"))
    return found


def _conv(node: onnx.NodeProto, name: str, inits: set[str], static: set[str]) -> list[Finding]:
    found = []
    for k, what in ((1, "weights"), (2, "bias")):
        if len(node.input) <= k or not node.input[k] or node.input[k] in inits:
            continue
        tensor = node.input[k]
        if node.op_type == "ConvTranspose":
            found.append(Finding("deconv-weights", name, f"{what} {tensor!r} not an initializer"))
        elif tensor in static:
            found.append(
                Finding("conv-unfolded", name, f"{what} {tensor!r} computed from constants")
            )
    return found


def _qdq_findings(graph: onnx.GraphProto) -> list[Finding]:
    inits = {t.name: t for t in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = inits.get(node.input[2])
        if zp is None:
            continue
        values = numpy_helper.to_array(zp)
        if values.dtype != np.int8 or np.any(values != 0):
            out.append(
                Finding("qdq", node.name or node.output[0], f"zero point {values.dtype} non-int8/0")
            )
    return out


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]


def _shape_findings(graph: onnx.GraphProto, profile: Profile | None) -> list[Finding]:
    inits = {t.name for t in graph.initializer}
    out = []
    for value in graph.input:
        if value.name in inits:
            continue
        dims = _dims(value)
        allowed = IMAGE_DYNAMIC_AXES if value.name == INPUT_NAME else ()
        if value.name == INPUT_NAME and len(dims) != 4:
            out.append(Finding("shape", value.name, f"image must be [N, C, H, W], got {dims}"))
            continue
        loose = [k for k, d in enumerate(dims) if d is None and k not in allowed]
        if loose:
            out.append(Finding("shape", value.name, f"symbolic axes {loose} outside the profile"))
        if profile is None:
            continue
        shapes = profile.get(value.name)
        if shapes is None:
            if any(d is None for d in dims):
                out.append(Finding("shape", value.name, "dynamic input missing from the profile"))
            continue
        out += _profile_findings(value.name, dims, shapes)
    return out


def _profile_findings(
    name: str, dims: list[int | None], shapes: Sequence[Sequence[int]]
) -> list[Finding]:
    lo, opt, hi = (list(s) for s in shapes)
    if not all(len(s) == len(dims) for s in (lo, opt, hi)):
        return [Finding("shape", name, f"profile rank differs from {dims}")]
    out = []
    for k, d in enumerate(dims):
        if not lo[k] <= opt[k] <= hi[k] or lo[k] < 1:
            out.append(Finding("shape", name, f"profile axis {k}: {lo[k]}/{opt[k]}/{hi[k]}"))
        if d is not None and not lo[k] == opt[k] == hi[k] == d:
            out.append(Finding("shape", name, f"axis {k} is fixed at {d}, profile says {hi[k]}"))
    return out


def trt_findings(model: onnx.ModelProto, profile: Profile | None = None) -> list[Finding]:
    """Every pattern above found in ``model`` (empty: nothing we know TensorRT refuses)."""
    graph = model.graph
    return _node_findings(graph) + _qdq_findings(graph) + _shape_findings(graph, profile)


def describe(findings: Sequence[Finding], limit: int = 3) -> str:
    text = "; ".join(str(f) for f in findings[:limit])
    return text + (f"; … {len(findings) - limit} more" if len(findings) > limit else "")
