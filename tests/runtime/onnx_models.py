"""Tiny real ONNX models and a small head phantom for runtime tests (built here, never downloaded).

The models threshold the brain window per pixel, so on a phantom they find the hyperdense
(60–90 HU) blood and ignore brain (~35 HU) and bone (the subdural channel vetoes > ~100 HU):

    logit = A·(brain − B) − K·relu(subdural − 0.6),  prob = sigmoid(logit)

with brain = HU/80 and subdural = (HU + 20)/200 clipped to [0, 1] (windows 40/80 and 80/200),
so logit = 0 near 54 HU. The MC model shifts the logit of sample t by G·(noise[t, 0] − 0.5),
a per-sample threshold jitter, and returns the contract's mean_prob, entropy (bits) and
sample_counts. Building needs the ``onnx`` package, which tests (not the runtime) may import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ugss.runtime.model_info import KIND_DETERMINISTIC, KIND_MC, ModelInfo
from ugss.runtime.volume import Volume

A, B, K, G = 30.0, 0.68, 100.0, 4.0
OPSET = 18


def _const(name: str, value, dtype=np.float32) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
    )


def _logit_nodes() -> list[onnx.NodeProto]:
    """image → logit [N,1,H,W]."""
    return [
        _const("s0", [0], np.int64),
        _const("s1", [1], np.int64),
        _const("s2", [2], np.int64),
        _const("ax1", [1], np.int64),
        helper.make_node("Slice", ["image", "s0", "s1", "ax1"], ["brain"]),
        helper.make_node("Slice", ["image", "s1", "s2", "ax1"], ["subdural"]),
        _const("b", B),
        _const("a", A),
        _const("sub_lo", 0.6),
        _const("k", K),
        helper.make_node("Sub", ["brain", "b"], ["d"]),
        helper.make_node("Mul", ["d", "a"], ["ad"]),
        helper.make_node("Sub", ["subdural", "sub_lo"], ["sd"]),
        helper.make_node("Relu", ["sd"], ["rsd"]),
        helper.make_node("Mul", ["rsd", "k"], ["veto"]),
        helper.make_node("Sub", ["ad", "veto"], ["logit"]),
    ]


def _model(nodes, inputs, outputs, info: ModelInfo | None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "ugss_test", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    if info is not None:
        helper.set_model_props(model, info.to_metadata())
        model.model_version = int(info.version) if info.version.isdigit() else 1
    onnx.checker.check_model(model)
    return model


def _image_input() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])


def det_info(input_size: int = 64, **kw) -> ModelInfo:
    return ModelInfo(kind=KIND_DETERMINISTIC, input_size=input_size, name="tiny-det", **kw)


def mc_info(
    input_size: int = 64, samples: int = 6, dropout_at: str = "test-jitter", **kw
) -> ModelInfo:
    return ModelInfo(
        kind=KIND_MC,
        input_size=input_size,
        mc_samples=samples,
        dropout_rate=0.1,
        dropout_at=dropout_at,
        name="tiny-mc",
        version="3",
        checkpoint_sha256="ab" * 32,
        **kw,
    )


def build_det_model(info: ModelInfo | None = None) -> onnx.ModelProto:
    """Deterministic ``image → prob``; ``info=None`` leaves the metadata out (a foreign model)."""
    nodes = [*_logit_nodes(), helper.make_node("Sigmoid", ["logit"], ["prob"])]
    out = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, "H", "W"])
    return _model(nodes, [_image_input()], [out], info)


def build_mc_model(info: ModelInfo, *, internal_random: bool = False, channels: int = 2):
    """MC ``image (+ dropout_noise[T, C]) → mean_prob, entropy, sample_counts``."""
    t = info.mc_samples
    inputs = [_image_input()]
    nodes = _logit_nodes()
    if internal_random:
        nodes += [
            _const("zeros", np.zeros((t, channels))),
            helper.make_node("RandomUniformLike", ["zeros"], ["dropout_noise"]),
        ]
    else:
        inputs.append(
            helper.make_tensor_value_info("dropout_noise", TensorProto.FLOAT, [t, channels])
        )
    nodes += [
        _const("c0", [0], np.int64),
        _const("c1", [1], np.int64),
        helper.make_node("Slice", ["dropout_noise", "c0", "c1", "c1"], ["n0"]),  # [T, 1]
        _const("half", 0.5),
        _const("g", G),
        helper.make_node("Sub", ["n0", "half"], ["n0c"]),
        helper.make_node("Mul", ["n0c", "g"], ["jit"]),
        _const("shape_t", [1, t, 1, 1], np.int64),
        helper.make_node("Reshape", ["jit", "shape_t"], ["jit4"]),
        helper.make_node("Add", ["logit", "jit4"], ["logit_t"]),  # [N, T, H, W]
        helper.make_node("Sigmoid", ["logit_t"], ["p_t"]),
        _const("axis1", [1], np.int64),
        helper.make_node("ReduceMean", ["p_t", "axis1"], ["mean_prob"], keepdims=1),
        _const("eps", 1e-7),
        _const("one_m_eps", 1 - 1e-7),
        helper.make_node("Clip", ["mean_prob", "eps", "one_m_eps"], ["pc"]),
        _const("one", 1.0),
        helper.make_node("Sub", ["one", "pc"], ["qc"]),
        helper.make_node("Log", ["pc"], ["lp"]),
        helper.make_node("Log", ["qc"], ["lq"]),
        helper.make_node("Mul", ["pc", "lp"], ["plp"]),
        helper.make_node("Mul", ["qc", "lq"], ["qlq"]),
        helper.make_node("Add", ["plp", "qlq"], ["h_nat"]),
        _const("neg_inv_ln2", -1.0 / np.log(2.0)),
        helper.make_node("Mul", ["h_nat", "neg_inv_ln2"], ["entropy"]),
        _const("thr", info.threshold),
        helper.make_node("GreaterOrEqual", ["p_t", "thr"], ["fg"]),
        helper.make_node("Cast", ["fg"], ["fgf"], to=TensorProto.FLOAT),
        _const("axes23", [2, 3], np.int64),
        helper.make_node("ReduceSum", ["fgf", "axes23"], ["sample_counts"], keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("mean_prob", TensorProto.FLOAT, ["N", 1, "H", "W"]),
        helper.make_tensor_value_info("entropy", TensorProto.FLOAT, ["N", 1, "H", "W"]),
        helper.make_tensor_value_info("sample_counts", TensorProto.FLOAT, ["N", t]),
    ]
    return _model(nodes, inputs, outputs, info)


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    onnx.save(model, str(path))
    return path


def phantom_affine(spacing_zyx=(5.0, 0.9, 0.9), origin=(60.0, 40.0, -20.0)) -> np.ndarray:
    """Canonical L/P/S affine: column → patient left (RAS −x), row → posterior, slice → superior."""
    sz, sy, sx = spacing_zyx
    aff = np.diag([-sx, -sy, sz, 1.0])
    aff[:3, 3] = origin
    return aff


def phantom_hu(
    shape=(10, 128, 128), *, bleed: bool = True, bleed_hu: float = 75.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An elliptic head (skull 1000 HU, brain 35 HU) in air; the bleed sits on patient LEFT.

    Returns ``(hu (z, y, x) float32, true bleed mask)``.
    """
    rng = np.random.default_rng(seed)
    z, y, x = shape
    zz, yy, xx = np.meshgrid(
        np.linspace(-1, 1, z), np.linspace(-1, 1, y), np.linspace(-1, 1, x), indexing="ij"
    )
    r = np.sqrt((yy / 0.8) ** 2 + (xx / 0.7) ** 2 + (zz / 1.3) ** 2)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[r < 1.0] = 1000.0
    hu[r < 0.88] = 35.0
    hu += rng.normal(0.0, 4.0, shape).astype(np.float32)
    truth = np.zeros(shape, dtype=bool)
    if bleed:
        # columns increase toward patient left: put the bleed at +x
        rb = np.sqrt(((xx - 0.35) / 0.18) ** 2 + ((yy + 0.1) / 0.22) ** 2 + ((zz - 0.1) / 0.5) ** 2)
        truth = rb < 1.0
        hu[truth] = bleed_hu + rng.normal(0.0, 3.0, int(truth.sum())).astype(np.float32)
    return hu, truth


def phantom_volume(
    shape=(10, 128, 128), spacing=(5.0, 0.9, 0.9), **kw
) -> tuple[Volume, np.ndarray]:
    hu, truth = phantom_hu(shape, **kw)
    return Volume(hu=hu, affine=phantom_affine(spacing)), truth


class _Graph:
    """A small builder for a conv net with random (He) weights and folded BatchNorm."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def weight(self, shape, fan_in: int, scale: float = 1.0) -> str:
        name = self.name("w")
        std = scale * np.sqrt(2.0 / fan_in)
        value = (self.rng.standard_normal(shape) * std).astype(np.float32)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, k: int, scale: float = 1.0) -> str:
        w = self.weight((c_out, c_in, k, k), c_in * k * k, scale)
        b = self.weight((c_out,), 1, 0.01)
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], pads=[k // 2] * 4)

    def res_block(self, x: str, c_in: int, c_out: int) -> str:
        y = self.op("Relu", [self.conv(x, c_in, c_out, 3)])
        y = self.conv(y, c_out, c_out, 3, scale=0.5)
        short = x if c_in == c_out else self.conv(x, c_in, c_out, 1)
        return self.op("Relu", [self.op("Add", [y, short])])


def build_resunet(info: ModelInfo, seed: int = 0) -> onnx.ModelProto:
    """A ResUNet of the paper's shape (3→16→32→64→128, 256 bottleneck, transposed-conv decoder)
    with random weights: real model cost without torch, for benchmarks.

    The MC variant mirrors ``ugss.train``'s default placement: channel dropout on the 16-channel
    features before the 1×1 head, fed as ``dropout_noise[T, 16]``, so the trunk runs once.
    """
    g = _Graph(seed)
    x, skips, c_prev = "image", [], 3
    for ch in (16, 32, 64, 128):
        x = g.res_block(x, c_prev, ch)
        skips.append(x)
        x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        c_prev = ch
    x = g.res_block(x, 128, 256)
    c_prev = 256
    for ch, skip in zip((128, 64, 32, 16), reversed(skips), strict=True):
        w = g.weight((c_prev, ch, 2, 2), c_prev)
        b = g.weight((ch,), 1, 0.01)
        up = g.op("ConvTranspose", [x, w, b], kernel_shape=[2, 2], strides=[2, 2])
        x = g.res_block(g.op("Concat", [up, skip], axis=1), 2 * ch, ch)
        c_prev = ch
    head_w = (g.rng.standard_normal(16) * 0.3).astype(np.float32)
    inputs = [_image_input()]
    if info.kind == KIND_DETERMINISTIC:
        g.inits.append(numpy_helper.from_array(head_w.reshape(1, 16, 1, 1), "head_w"))
        g.inits.append(numpy_helper.from_array(np.array([-8.0], np.float32), "head_b"))
        logit = g.op("Conv", [x, "head_w", "head_b"], kernel_shape=[1, 1])
        g.nodes.append(helper.make_node("Sigmoid", [logit], ["prob"]))
        outputs = [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, "H", "W"])]
        return _model_from(g, inputs, outputs, info)
    t = info.mc_samples
    inputs.append(helper.make_tensor_value_info("dropout_noise", TensorProto.FLOAT, [t, 16]))
    g.inits += [
        numpy_helper.from_array(np.float32(info.dropout_rate), "rate"),
        numpy_helper.from_array(np.float32(1.0 / (1.0 - info.dropout_rate)), "keep_scale"),
        numpy_helper.from_array(head_w.reshape(1, 16), "head_w_row"),
        numpy_helper.from_array(np.float32(-8.0), "head_b0"),
        numpy_helper.from_array(np.float32(info.threshold), "thr"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes23"),
        numpy_helper.from_array(np.float32(1e-7), "eps"),
        numpy_helper.from_array(np.float32(1 - 1e-7), "one_m_eps"),
        numpy_helper.from_array(np.float32(1.0), "one"),
        numpy_helper.from_array(np.float32(-1.0 / np.log(2.0)), "neg_inv_ln2"),
    ]
    keep = g.op("Cast", [g.op("GreaterOrEqual", ["dropout_noise", "rate"])], to=TensorProto.FLOAT)
    w_eff = g.op("Mul", [g.op("Mul", [keep, "keep_scale"]), "head_w_row"])  # [T, 16]
    feats = g.op("Transpose", [x], perm=[0, 2, 3, 1])  # [N, H, W, 16]
    logits = g.op("MatMul", [feats, g.op("Transpose", [w_eff], perm=[1, 0])])  # [N, H, W, T]
    logits = g.op("Add", [g.op("Transpose", [logits], perm=[0, 3, 1, 2]), "head_b0"])
    p_t = g.op("Sigmoid", [logits])
    g.nodes.append(helper.make_node("ReduceMean", [p_t, "axis1"], ["mean_prob"], keepdims=1))
    pc = g.op("Clip", ["mean_prob", "eps", "one_m_eps"])
    qc = g.op("Sub", ["one", pc])
    h = g.op("Add", [g.op("Mul", [pc, g.op("Log", [pc])]), g.op("Mul", [qc, g.op("Log", [qc])])])
    g.nodes.append(helper.make_node("Mul", [h, "neg_inv_ln2"], ["entropy"]))
    fg = g.op("Cast", [g.op("GreaterOrEqual", [p_t, "thr"])], to=TensorProto.FLOAT)
    g.nodes.append(helper.make_node("ReduceSum", [fg, "axes23"], ["sample_counts"], keepdims=0))
    outputs = [
        helper.make_tensor_value_info("mean_prob", TensorProto.FLOAT, ["N", 1, "H", "W"]),
        helper.make_tensor_value_info("entropy", TensorProto.FLOAT, ["N", 1, "H", "W"]),
        helper.make_tensor_value_info("sample_counts", TensorProto.FLOAT, ["N", t]),
    ]
    return _model_from(g, inputs, outputs, info)


def _model_from(g: _Graph, inputs, outputs, info: ModelInfo) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, "ugss_resunet_random", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    helper.set_model_props(model, info.to_metadata())
    onnx.checker.check_model(model)
    return model
