"""The Triton model repository, parsed with Triton's own protobuf definitions."""

from __future__ import annotations

import json

import onnx
import pytest
from export_fixtures import Exported
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from ugss.export.triton import _quote
from ugss.runtime.model_info import KIND_DETERMINISTIC, KIND_MC, ModelInfo

ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}


def parse(path):
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def dims_of(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.dim_value > 0 else -1 for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize(("name", "kind"), [("ugss", KIND_MC), ("ugss-det", KIND_DETERMINISTIC)])
def test_config_matches_the_onnx_graph(head_export: Exported, name: str, kind: str):
    folder = head_export.options.triton / name
    config = parse(folder / "config.pbtxt")
    model = onnx.load(str(folder / "1" / "model.onnx"))
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    for section, values in ((config.input, model.graph.input), (config.output, model.graph.output)):
        assert [t.name for t in section] == [v.name for v in values]
        for t, v in zip(section, values, strict=True):
            assert dims_of(v)[0] == -1  # the batch axis Triton adds
            assert list(t.dims) == dims_of(v)[1:]
            assert pb.DataType.Name(t.data_type) == ONNX_TO_TRITON[v.type.tensor_type.elem_type]
    params = {k: v.string_value for k, v in config.parameters.items()}
    info = ModelInfo.from_metadata(params)
    assert info.kind == kind and info.name == name and info.input_size == 32
    assert info.checkpoint_sha256 == head_export.result.sha256
    if kind == KIND_MC:
        assert [t.name for t in config.input] == ["image"]  # noise drawn in the graph
        assert [list(t.dims) for t in config.output][2] == [8]  # sample_counts [N, T]
        assert params["ugss.export.noise"] == "graph"
        assert json.loads(params["ugss.training"])["weights"] == "teacher"  # auto: the validated


def test_string_literals_survive_quotes_and_unicode():
    config = pb.ModelConfig()
    value = 'a "quoted" \\ back\nslash — µ'
    text_format.Parse(
        f"parameters {{ key: {_quote('k')} value: {{ string_value: {_quote(value)} }} }}", config
    )
    assert config.parameters["k"].string_value == value
