"""TensorRT engines (``.plan``) from the exported ONNX, with the runtime's batch sizes.

One optimization profile: batch 1 … ``max_batch`` with the optimum at the batch size
``ugss.runtime`` picks for this model (``auto_batch_size``), spatial size fixed at the model's
input size (the runtime always feeds that). fp16 by default; the layers after the last
convolution (sigmoid, MC mean, entropy, foreground counts) are asked to stay fp32, so counts
above 2048 pixels stay exact and log p is not taken of an fp16 underflow.

``tensorrt`` is imported only here and only when asked for; without it, or without an NVIDIA
GPU, ``require_tensorrt`` raises one clear ``InputError`` before any export work is done.
"""

from __future__ import annotations

import ctypes
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx

from ugss.errors import InputError, UGSSError
from ugss.runtime.engines import auto_batch_size
from ugss.runtime.model_info import INPUT_NAME, ModelInfo
from ugss.runtime.segment import DEFAULT_SLAB

from .trt_patterns import describe, trt_findings

log = logging.getLogger(__name__)

MAX_BATCH = 32  # the runtime never sends more slices per call (auto_batch_size's cap)
WORKSPACE_GB = 4.0


class TensorRTBuildError(UGSSError):
    """TensorRT refused the network or failed to build it."""


def cuda_device_count() -> int:
    """NVIDIA GPUs visible through the driver API (no CUDA toolkit or torch needed)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module on a machine with an NVIDIA GPU, else one clear error line."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise InputError(
            "--trt needs the tensorrt package and an NVIDIA GPU "
            f"({exc.name or 'tensorrt'} is not installed; pip install 'ugss[trt]')"
        ) from exc
    if cuda_device_count() < 1:
        raise InputError("--trt needs an NVIDIA GPU, and none is visible here (no CUDA driver)")
    return trt


@dataclass(frozen=True)
class EngineBuild:
    plan: Path
    sidecar: Path
    precision: str
    profile: dict[str, list[list[int]]]
    seconds: float


def plan_profile(info: ModelInfo, channels: int, max_batch: int) -> dict[str, list[list[int]]]:
    """``{image: [min, opt, max]}``: batch 1 … ``max_batch``, the optimum at the slab the runtime
    sends (``segment_volume``: ``min(auto_batch_size, DEFAULT_SLAB)``), spatial size fixed at the
    model's input size (the runtime always feeds that). Fixed-shape inputs need no entry."""
    opt = max(1, min(auto_batch_size(info), DEFAULT_SLAB, max_batch))
    size = info.input_size
    return {INPUT_NAME: [[b, channels, size, size] for b in (1, opt, max_batch)]}


def _keep_tail_fp32(trt: ModuleType, network: Any) -> int:
    """Ask for fp32 in the float layers after the last convolution; returns how many."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    convs = [i for i, layer in enumerate(layers) if layer.type == trt.LayerType.CONVOLUTION]
    if not convs:
        return 0
    marked = 0
    for layer in layers[convs[-1] + 1 :]:
        if all(layer.get_output(k).dtype == trt.float32 for k in range(layer.num_outputs)):
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
            marked += 1
    return marked


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    meta: dict[str, str],
    *,
    fp16: bool = True,
    max_batch: int = MAX_BATCH,
) -> EngineBuild:
    """Parse ``onnx_path``, build, write ``plan_path`` and ``<plan>.json`` (metadata)."""
    trt = require_tensorrt()
    info = ModelInfo.from_metadata(meta)
    t0 = time.perf_counter()
    shapes = plan_profile(info, len(info.windows), max_batch)
    found = trt_findings(onnx.load(str(onnx_path)), shapes)
    if found:
        raise TensorRTBuildError(
            f"{onnx_path}: TensorRT would refuse this graph ({describe(found)})"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"{onnx_path}: TensorRT cannot parse the ONNX model ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(WORKSPACE_GB * 2**30))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        log.info("kept %d tail layers in fp32", _keep_tail_fp32(trt, network))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError(f"{onnx_path}: TensorRT could not build an engine (see log)")
    plan_path.write_bytes(bytes(serialized))
    precision = "fp16" if fp16 else "fp32"
    sidecar = plan_path.with_name(plan_path.name + ".json")
    side = dict(meta)
    side.update(
        {
            "ugss.export.tensorrt_version": str(trt.__version__),
            "ugss.export.precision": precision,
            "ugss.export.profile": json.dumps(shapes),
            "ugss.export.source_onnx": onnx_path.name,
        }
    )
    sidecar.write_text(json.dumps(side, indent=2, sort_keys=True) + "\n")
    return EngineBuild(plan_path, sidecar, precision, shapes, time.perf_counter() - t0)
