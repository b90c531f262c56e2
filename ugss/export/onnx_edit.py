"""Small edits of exported ONNX graphs (onnx only, no torch)."""

from __future__ import annotations

import onnx

from ugss.errors import ConfigError


def strip_initializer_identities(model: onnx.ModelProto) -> int:
    """Drop ``Identity`` nodes that merely alias an initializer (the legacy exporter's way of
    sharing folded constants); consumers read the initializer directly. Returns how many."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {
        n.output[0]: n.input[0]
        for n in graph.node
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs
    }
    if not alias:
        return 0
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(keep)
    return len(alias)


def noise_in_graph(model: onnx.ModelProto, input_name: str = "dropout_noise") -> onnx.ModelProto:
    """The same graph with its host-noise input replaced by ``RandomUniform(shape=[T, C])``.

    Everything downstream is untouched, so the parity measured with host noise carries over.
    Needed where an input without a batch axis is not allowed (Triton's dynamic batching).
    ``RandomUniform`` with a ``shape`` attribute has no input at all: TensorRT's ONNX importer
    refuses ``RandomUniformLike`` fed by an initializer ("The input tensor cannot be an
    initializer", NVIDIA/TensorRT#3568), which is what this function wrote before.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    (noise,) = [i for i in graph.input if i.name == input_name]
    dims = [d.dim_value for d in noise.type.tensor_type.shape.dim]
    if not all(d > 0 for d in dims):
        raise ConfigError(f"{input_name} must have a fixed shape to move it into the graph")
    node = onnx.helper.make_node(
        "RandomUniform",
        [],
        [input_name],
        name="dropout_noise_rng",
        dtype=onnx.TensorProto.FLOAT,
        shape=dims,
        low=0.0,
        high=1.0,
    )
    graph.node.insert(0, node)
    graph.input.remove(noise)
    for prop in out.metadata_props:  # keep the export notes true
        if prop.key == "ugss.export.noise":
            prop.value = "graph"
        elif prop.key == "ugss.export.noise_shape":
            prop.value = ""
    onnx.checker.check_model(out, full_check=True)
    return out
