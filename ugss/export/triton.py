"""Triton Inference Server model repositories: ``DIR/<name>/config.pbtxt`` + ``DIR/<name>/<v>/``.

The config is written as protobuf text (``ModelConfig`` of Triton's ``model_config.proto``):
platform ``onnxruntime_onnx`` or ``tensorrt_plan``, ``max_batch_size`` with dynamic batching,
inputs and outputs taken from the ONNX graph (the batch axis left out, symbolic axes as -1), and
the model's metadata as ``parameters`` (``ugss.*`` string values, what
``ugss.runtime.engines.TritonEngine`` reads). Dynamic batching needs a batch axis on every input,
so MC models are written with their dropout noise drawn inside the graph (``RandomUniform``, once
per execution: requests merged into one batch share a draw; ``deploy/triton/README.md``).
TensorRT plans for a Triton image are built with its TensorRT by ``triton_plans``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from ugss.errors import ConfigError

PLATFORM_ONNX = "onnxruntime_onnx"
PLATFORM_PLAN = "tensorrt_plan"
QUEUE_DELAY_US = 2000
_DTYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    dims: tuple[int, ...]  # without the batch axis; -1 = any


def graph_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a batchable graph (axis 0 symbolic everywhere)."""
    inits = {t.name for t in model.graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tt = value.type.tensor_type
        dims = list(tt.shape.dim)
        if not dims or dims[0].dim_value > 0:
            raise ConfigError(
                f"tensor {value.name!r} has no batch axis: Triton's dynamic batching needs one"
            )
        rest = tuple(d.dim_value if d.dim_value > 0 else -1 for d in dims[1:])
        if tt.elem_type not in _DTYPES:
            raise ConfigError(f"tensor {value.name!r}: unsupported data type {tt.elem_type}")
        return TensorSpec(value.name, _DTYPES[tt.elem_type], rest)

    inputs = [spec(v) for v in model.graph.input if v.name not in inits]
    return inputs, [spec(v) for v in model.graph.output]


def _quote(text: str) -> str:
    """A protobuf text-format string literal (ASCII; other bytes as octal escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _tensors(key: str, specs: list[TensorSpec]) -> list[str]:
    lines = [f"{key} ["]
    for i, s in enumerate(specs):
        dims = ", ".join(str(d) for d in s.dims)
        sep = "," if i < len(specs) - 1 else ""
        lines.append(
            f"  {{ name: {_quote(s.name)} data_type: {s.data_type} dims: [ {dims} ] }}{sep}"
        )
    lines.append("]")
    return lines


def config_text(
    name: str,
    platform: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    parameters: dict[str, str],
    *,
    max_batch_size: int,
    preferred_batch: int | None = None,
) -> str:
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {max_batch_size}",
        *_tensors("input", inputs),
        *_tensors("output", outputs),
        "dynamic_batching {",
    ]
    if preferred_batch and preferred_batch <= max_batch_size:
        lines.append(f"  preferred_batch_size: [ {preferred_batch} ]")
    lines += [f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}", "}"]
    for key, value in sorted(parameters.items()):
        lines.append(
            f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}"
        )
    return "\n".join(lines) + "\n"


def write_model(
    root: Path,
    name: str,
    onnx_model: onnx.ModelProto,
    parameters: dict[str, str],
    *,
    version: int,
    max_batch_size: int,
    preferred_batch: int | None = None,
    plan: Path | None = None,
) -> Path:
    """``root/name/config.pbtxt`` and ``root/name/<version>/model.onnx`` (or ``model.plan``)."""
    inputs, outputs = graph_specs(onnx_model)
    folder = root / name
    vdir = folder / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    if plan is None:
        onnx.save(onnx_model, str(vdir / "model.onnx"))
        platform = PLATFORM_ONNX
    else:
        shutil.copyfile(plan, vdir / "model.plan")
        platform = PLATFORM_PLAN
    text = config_text(
        name,
        platform,
        inputs,
        outputs,
        parameters,
        max_batch_size=max_batch_size,
        preferred_batch=preferred_batch,
    )
    (folder / "config.pbtxt").write_text(text)
    return folder
