"""fp16 ONNX graphs for strongly typed TensorRT (11.x), with the parts that must stay fp32.

TensorRT 11 builds strongly typed networks only: a tensor's precision is the one the ONNX graph
gives it (``BuilderFlag.FP16`` and precision constraints are gone), so an fp16 engine needs an
fp16 graph. ``to_fp16`` converts with onnxconverter-common's ``convert_float_to_float16``
(MIT, installed with ``ugss[train]``, which export needs anyway), inputs and outputs kept fp32
(what the runtime feeds and reads), and these nodes kept fp32 (``fp32_nodes``):

- the tail after the last convolution: sigmoid, the MC mean, the entropy (log p of an fp16
  underflow would be wrong) and the foreground counts (fp16 counts stop being exact at 2048);
- the dropout noise up to and including its comparison with the rate (``noise >= p``): in fp16
  a uniform number within 1e-4 of p rounds across it and flips a channel's mask.

The same fp32 islands are what ``tensorrt._keep_fp32`` asks TensorRT 10's builder for.
"""

from __future__ import annotations

import warnings

import onnx

from ugss.errors import InputError
from ugss.runtime.model_info import NOISE_INPUT_NAME

from .trt_patterns import RANDOM_LIKE, RANDOM_SHAPED

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
COMPARISONS = frozenset({"Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal"})
CONVOLUTIONS = frozenset({"Conv", "ConvTranspose"})


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _descendants(
    graph: onnx.GraphProto, start: list[str], stop: frozenset[str] = frozenset()
) -> list[onnx.NodeProto]:
    """Nodes reachable from tensors ``start``; a node whose op is in ``stop`` is included but
    not followed."""
    consumers, seen, found = _consumers(graph), set(), []
    todo = list(start)
    while todo:
        for node in consumers.get(todo.pop(), []):
            key = (node.name, tuple(node.output))
            if key in seen:
                continue
            seen.add(key)
            found.append(node)
            if node.op_type not in stop:
                todo.extend(o for o in node.output if o)
    return found


def fp32_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The tail after the last convolution and the noise path up to its comparison."""
    convs = [n for n in graph.node if n.op_type in CONVOLUTIONS]
    tail = _descendants(graph, list(convs[-1].output)) if convs else []
    random = [n for n in graph.node if n.op_type in RANDOM_LIKE | RANDOM_SHAPED]
    sources = [o for n in random for o in n.output]
    sources += [i.name for i in graph.input if i.name == NOISE_INPUT_NAME]
    noise = random + _descendants(graph, sources, COMPARISONS)
    return tail + noise


def _name_nodes(graph: onnx.GraphProto) -> None:
    """The converter's block list is by node name: give every node a unique one."""
    taken: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in taken:
            node.name = f"{node.op_type}_{i}"
        taken.add(node.name)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of ``model`` with fp32 inputs, outputs and ``fp32_nodes``.

    The fp16 region (every other node) is cut out as a model of its own, converted whole by
    ``convert_float_to_float16(keep_io_types=True)`` — its fp32 boundary becomes Cast nodes —
    and spliced back between the untouched fp32 nodes. (The converter's own block lists mangle
    chains of kept nodes and graph outputs: fp16 round trips between sigmoid and the MC mean.)
    """
    convert = _converter()
    work = onnx.shape_inference.infer_shapes(model)
    _name_nodes(work.graph)
    graph = work.graph
    names = {n.name for n in fp32_nodes(graph)}
    names |= _constants_read_by(graph, names)
    kept = [n for n in graph.node if n.name in names]
    region = convert(_region_model(work, [n for n in graph.node if n.name not in names]))
    _fix_mask_casts(region.graph)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    used = {i for n in kept for i in n.input}
    inits = [t for t in model.graph.initializer if t.name in used]
    del out.graph.node[:], out.graph.initializer[:], out.graph.value_info[:]
    out.graph.node.extend(_topological([*region.graph.node, *kept]))
    out.graph.initializer.extend([*inits, *region.graph.initializer])
    onnx.checker.check_model(out, full_check=True)
    return out


def _converter():
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError as exc:
        raise InputError(
            "an fp16 engine for TensorRT 11 needs onnxconverter-common "
            "(pip install 'ugss[train]'), or build fp32 with --fp32"
        ) from exc

    def convert(region: onnx.ModelProto) -> onnx.ModelProto:
        with warnings.catch_warnings():  # one warning per weight clipped to fp16's range
            warnings.simplefilter("ignore")
            return convert_float_to_float16(region, keep_io_types=True)

    return convert


def _constants_read_by(graph: onnx.GraphProto, names: set[str]) -> set[str]:
    """``Constant`` nodes an fp32 node reads: they stay fp32 (the dropout rate 0.2 is not
    exact in fp16, and ``noise >= p`` must compare with the true rate)."""
    read = {i for n in graph.node if n.name in names for i in n.input}
    return {n.name for n in graph.node if n.op_type == "Constant" and n.output[0] in read}


def _region_model(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """``nodes`` as a model: boundary tensors become its inputs and outputs, its initializers
    are renamed copies (``…_fp16``) so they cannot clash with the fp32 ones kept outside."""
    graph = model.graph
    produced = {o for n in nodes for o in n.output if o}
    inits = {t.name: t for t in graph.initializer}
    read = [i for n in nodes for i in n.input if i]
    names = {n.name for n in nodes}
    outside = {i for n in graph.node if n.name not in names for i in n.input}
    outside |= {o.name for o in graph.output}
    values = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
    inputs = [i for i in dict.fromkeys(read) if i not in produced and i not in inits]
    outputs = [o for o in dict.fromkeys(produced) if o in outside]
    renamed = {name: f"{name}_fp16" for name in dict.fromkeys(read) if name in inits}
    region_nodes = []
    for node in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for k, name in enumerate(copy.input):
            copy.input[k] = renamed.get(name, name)
        region_nodes.append(copy)
    tensors = []
    for name, new in renamed.items():
        t = onnx.TensorProto()
        t.CopyFrom(inits[name])
        t.name = new
        tensors.append(t)
    region = onnx.helper.make_graph(
        region_nodes,
        "fp16_region",
        [values[i] for i in inputs],
        [values[o] for o in outputs],
        tensors,
    )
    opsets = list(model.opset_import)
    return onnx.helper.make_model(region, opset_imports=opsets, ir_version=model.ir_version)


def _fix_mask_casts(graph: onnx.GraphProto) -> None:
    """A ``Cast(to=float)`` that the converter declared fp16 but left at ``to=float`` (the bool
    → float dropout mask, onnxconverter-common 1.14–1.16): ``to`` becomes the declared type."""
    declared = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    for node in graph.node:
        if node.op_type != "Cast":
            continue
        attr = next(a for a in node.attribute if a.name == "to")
        want = declared.get(node.output[0])
        if want in (FLOAT, FLOAT16) and attr.i in (FLOAT, FLOAT16):
            attr.i = want


def _topological(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    produced = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    done: set[int] = set()
    order: list[onnx.NodeProto] = []

    def visit(k: int) -> None:
        stack = [(k, False)]
        while stack:
            j, ready = stack.pop()
            if j in done:
                continue
            if ready:
                done.add(j)
                order.append(nodes[j])
                continue
            stack.append((j, True))
            stack += [(produced[i], False) for i in nodes[j].input if i in produced]

    for k in range(len(nodes)):
        visit(k)
    return order
