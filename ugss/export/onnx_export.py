"""torch module → checked ``onnx.ModelProto`` with a dynamic batch (and spatial) size.

Two exporters: ``legacy`` (TorchScript tracing, opset 17, < 2 s, also what
TensorRT 8.x needs) is the default; ``dynamo`` (``torch.export``, opset 18+, 10–25 s) is kept as
an option for when the legacy one is gone. Both fold constants (BatchNorm into the convolutions);
dropout never meets them as ``nn.Dropout`` — the model's dropout is an explicit mask.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import onnx
import torch
from torch import nn

from ugss.errors import ConfigError
from ugss.train.model import DOWNSAMPLE

from .onnx_edit import strip_initializer_identities

EXPORTERS = ("legacy", "dynamo")
LEGACY_OPSET = 17
DYNAMO_OPSET = 18
BATCH, HEIGHT, WIDTH = "N", "H", "W"


def export_module(
    module: nn.Module,
    example: Sequence[torch.Tensor],
    input_names: Sequence[str],
    output_names: Sequence[str],
    *,
    exporter: str = "legacy",
    dynamic_spatial: bool = True,
) -> onnx.ModelProto:
    """Trace ``module`` on ``example``; axis 0 of ``image`` and of every image-shaped output is
    the symbolic batch ``N`` (outputs are ``[N, …]``); H and W are symbolic when asked."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    module.eval()
    image_axes = {0: BATCH, 2: HEIGHT, 3: WIDTH} if dynamic_spatial else {0: BATCH}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            model = _legacy(module, example, input_names, output_names, image_axes)
        else:
            model = _dynamo(module, example, input_names, output_names, dynamic_spatial)
    strip_initializer_identities(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def _legacy(module, example, input_names, output_names, image_axes) -> onnx.ModelProto:
    axes: dict[str, dict[int, str]] = {input_names[0]: image_axes}
    for name in output_names:
        axes[name] = image_axes if name != "sample_counts" else {0: BATCH}
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        tuple(example),
        buf,
        dynamo=False,
        opset_version=LEGACY_OPSET,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_axes=axes,
        do_constant_folding=True,
    )
    return onnx.load_from_string(buf.getvalue())


def _dynamo(module, example, input_names, output_names, dynamic_spatial) -> onnx.ModelProto:
    dims: dict[int, object] = {0: torch.export.Dim(BATCH, min=1, max=4096)}
    if dynamic_spatial:  # H, W multiples of the network's downsampling factor
        dims[2] = DOWNSAMPLE * torch.export.Dim("h16", min=1, max=256)
        dims[3] = DOWNSAMPLE * torch.export.Dim("w16", min=1, max=256)
    shapes = [dims] + [None] * (len(example) - 1)
    program = torch.onnx.export(
        module,
        tuple(example),
        dynamo=True,
        opset_version=DYNAMO_OPSET,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=tuple(shapes),
        optimize=True,
    )
    return program.model_proto
