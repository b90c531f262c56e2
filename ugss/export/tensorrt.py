"""TensorRT engines (``.plan``) from the exported ONNX, for TensorRT 10 and 11.

Two build paths, chosen by the installed TensorRT's major version (``tensorrt_path``):

- **TensorRT 11** builds strongly typed networks only: fp16 means an fp16 ONNX graph
  (``fp16.to_fp16``: onnxconverter-common, with the sigmoid / MC mean / entropy / count tail and
  the dropout comparison ``noise >= p`` kept fp32), parsed as it is, no precision flags.
- **TensorRT 10** keeps the weakly typed builder path: ``BuilderFlag.FP16`` with precision
  constraints asking for fp32 in the same places (``_keep_fp32``).

One optimization profile (``plan_profile``): batch 1 … ``max_batch``, the optimum at the slab
``ugss.runtime`` sends, spatial size fixed at the model's input size. Before parsing, the graph is
checked for the patterns the ONNX-TensorRT importer refuses (``trt_patterns``). The plan's
metadata goes beside it as ``<plan>.json`` (with the TensorRT version, the profile and, after
``plan_parity``, the parity against onnxruntime on the CPU).

``tensorrt`` is imported only here and only when asked for; without it, with an unsupported
major version, or without an NVIDIA GPU, ``require_tensorrt`` raises one clear ``InputError``
before any export work is done.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from ugss.errors import InputError, TensorRTBuildError
from ugss.runtime.engines import (
    PLAN_PROFILE_KEY,
    PLAN_TRT_VERSION_KEY,
    cuda_device_count,
    profile_batches,
)
from ugss.runtime.model_info import INPUT_NAME, NOISE_INPUT_NAME, ModelInfo
from ugss.runtime.segment import DEFAULT_SLAB

from .metadata import EXPORT_PREFIX as EXPORT
from .plan_parity import PlanParity, plan_parity
from .trt_patterns import describe, trt_findings

log = logging.getLogger(__name__)

MAX_BATCH = 32  # Triton's max_batch_size default; plans for ugss-infer use DEFAULT_SLAB
WORKSPACE_GB = 4.0
PARITY_SLICES = 32  # synthetic slices run through plan and onnxruntime CPU at export
SUPPORTED_MAJORS = (10, 11)
STRONGLY_TYPED_FROM = 11  # TensorRT 11 removed BuilderFlag.FP16 and precision constraints


@dataclass(frozen=True)
class TensorRTPath:
    """How this TensorRT builds an fp16 engine."""

    version: str
    major: int

    @property
    def strongly_typed(self) -> bool:
        return self.major >= STRONGLY_TYPED_FROM

    def describe(self) -> str:
        if self.strongly_typed:
            how = "strongly typed network, fp16 from an fp16 ONNX graph (tail and dropout fp32)"
        else:
            how = "weakly typed network, BuilderFlag.FP16 with fp32 precision constraints"
        return f"TensorRT {self.version}: {how}"


def tensorrt_path(version: str) -> TensorRTPath:
    """The build path for TensorRT ``version``; ``InputError`` for a major we do not support."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError as exc:
        raise InputError(f"--trt: cannot read the TensorRT version {version!r}") from exc
    if major not in SUPPORTED_MAJORS:
        supported = " or ".join(str(m) for m in SUPPORTED_MAJORS)
        raise InputError(
            f"--trt needs TensorRT {supported}, found {version} "
            "(pip install 'ugss[trt]' from NVIDIA's index: see README, Install)"
        )
    return TensorRTPath(str(version), major)


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module (10.x or 11.x) on a machine with an NVIDIA GPU, else one clear
    error line; logs the build path it will take."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise InputError(
            "--trt needs the tensorrt package and an NVIDIA GPU "
            f"({exc.name or 'tensorrt'} is not installed; pip install 'ugss[trt]')"
        ) from exc
    if cuda_device_count() < 1:
        raise InputError("--trt needs an NVIDIA GPU, and none is visible here (no CUDA driver)")
    path = tensorrt_path(getattr(trt, "__version__", "unknown"))
    log.info("%s", path.describe())
    return trt


@dataclass(frozen=True)
class EngineBuild:
    plan: Path
    sidecar: Path
    precision: str
    profile: dict[str, list[list[int]]]
    seconds: float
    path: str  # TensorRTPath.describe()
    parity: PlanParity | None = None


def plan_profile(info: ModelInfo, channels: int, max_batch: int) -> dict[str, list[list[int]]]:
    """``{image: [min, opt, max]}``: batch 1 … ``max_batch``, the optimum at the slab the runtime
    sends (``segment_volume``: ``min(auto_batch_size, DEFAULT_SLAB)``), spatial size fixed at the
    model's input size (the runtime always feeds that). Fixed-shape inputs need no entry."""
    size = info.input_size
    return {INPUT_NAME: [[b, channels, size, size] for b in profile_batches(info, max_batch)]}


def _fp32_layers(trt: ModuleType, network: Any) -> list[Any]:
    """The float layers after the last convolution, and the dropout noise path up to its
    comparison (noise input or random fill → … → the layer with a bool output)."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    convs = [i for i, layer in enumerate(layers) if layer.type == trt.LayerType.CONVOLUTION]
    tail = layers[convs[-1] + 1 :] if convs else []
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    tainted = {t.name for t in inputs if t.name == NOISE_INPUT_NAME}
    noise = []
    for layer in layers:
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        ins = [layer.get_input(k) for k in range(layer.num_inputs)]
        if layer.type == trt.LayerType.FILL or any(
            t is not None and t.name in tainted for t in ins
        ):
            noise.append(layer)
            tainted.update(t.name for t in outs if t.dtype != trt.bool)
    return [layer for layer in layers if any(layer is x for x in tail + noise)]


def _keep_fp32(trt: ModuleType, network: Any) -> int:
    """TensorRT 10: ask for fp32 in ``_fp32_layers``; returns how many were marked."""
    marked = 0
    for layer in _fp32_layers(trt, network):
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        if any(t.dtype not in (trt.float32, trt.bool) for t in outs):
            continue  # shape / index layers
        layer.precision = trt.float32
        for k, t in enumerate(outs):
            if t.dtype == trt.float32:
                layer.set_output_type(k, trt.float32)
        marked += 1
    return marked


def _parse(trt: ModuleType, builder: Any, logger: Any, model: onnx.ModelProto, where: Path):
    network = builder.create_network(0)  # explicit batch (10) / strongly typed (11): defaults
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"{where}: TensorRT cannot parse the ONNX model ({errors})")
    return network, parser


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    meta: dict[str, str],
    *,
    fp16: bool = True,
    max_batch: int = DEFAULT_SLAB,
    check: bool = True,
) -> EngineBuild:
    """Parse ``onnx_path``, build, write ``plan_path`` and ``<plan>.json`` (metadata), and with
    ``check`` run the plan against onnxruntime CPU (``check_plan``)."""
    trt = require_tensorrt()
    path = tensorrt_path(trt.__version__)
    info = ModelInfo.from_metadata(meta)
    t0 = time.perf_counter()
    shapes = plan_profile(info, len(info.windows), max_batch)
    model = onnx.load(str(onnx_path))
    found = trt_findings(model, shapes)
    if found:
        raise TensorRTBuildError(f"{onnx_path}: TensorRT would refuse it ({describe(found)})")
    if fp16 and path.strongly_typed:
        from .fp16 import to_fp16

        model = to_fp16(model)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, model, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(WORKSPACE_GB * 2**30))
    if fp16 and not path.strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        log.info("kept %d layers in fp32", _keep_fp32(trt, network))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError(f"{onnx_path}: TensorRT could not build an engine (see log)")
    plan_path.write_bytes(bytes(serialized))
    precision = "fp16" if fp16 else "fp32"
    side = dict(meta)
    side.update(
        {
            PLAN_TRT_VERSION_KEY: str(trt.__version__),
            f"{EXPORT}tensorrt_path": path.describe(),
            f"{EXPORT}precision": precision,
            PLAN_PROFILE_KEY: json.dumps(shapes),
            f"{EXPORT}source_onnx": onnx_path.name,
        }
    )
    sidecar = write_sidecar(plan_path, side)
    parity = check_plan(plan_path, onnx_path, info, shapes) if check else None
    seconds = time.perf_counter() - t0
    return EngineBuild(plan_path, sidecar, precision, shapes, seconds, path.describe(), parity)


def check_plan(
    plan_path: Path,
    onnx_path: Path,
    info: ModelInfo,
    shapes: dict[str, list[list[int]]],
    slices: np.ndarray | None = None,
) -> PlanParity:
    """``plan_parity`` of the written plan against its ONNX on the CPU; stored in the sidecar,
    and the plan deleted and refused (``TensorRTBuildError``) when below the bar."""
    from ugss.runtime.engines import OnnxEngine, TensorRTEngine

    from .quantize import calibration_slices

    if slices is None:
        slices = calibration_slices(info, (), max_slices=PARITY_SLICES).slices
    plan = TensorRTEngine(plan_path, seed=0)
    try:
        reference = OnnxEngine(onnx_path, provider="cpu", seed=0)
        parity = plan_parity(plan, reference, slices, batch=shapes[INPUT_NAME][1][0])
    finally:
        plan.close()
    sidecar = sidecar_path(plan_path)
    meta = json.loads(sidecar.read_text())
    meta.update(parity.to_metadata(EXPORT))
    write_sidecar(plan_path, meta)
    log.info("%s: %s", plan_path.name, parity.describe())
    if not parity.ok:
        plan_path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise TensorRTBuildError(
            f"{plan_path.name}: {parity.describe()}, outside the bar ({parity.bar()}); "
            "plan refused: build it with --fp32, or report the model"
        )
    return parity


def sidecar_path(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.name + ".json")


def write_sidecar(plan_path: Path, meta: dict[str, str]) -> Path:
    path = sidecar_path(plan_path)
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path
