"""``export_checkpoint``: checkpoint → deterministic + MC ONNX (+ TensorRT plans, Triton repo).

Files written for ``--onnx X.onnx``:

- ``X.onnx``: the MC graph (eq. 2–3) when ``mc_samples ≥ 2``, else the deterministic graph;
- ``X-det.onnx``: the deterministic twin beside an MC model (``ugss-infer --deterministic``);
- with ``int8``: ``X-int8.onnx`` / ``X-det-int8.onnx``, int8 twins for CPU (``quantize``);
- with ``trt``: ``X.plan`` / ``X-det.plan`` and their ``.plan.json`` metadata;
- with ``triton``: ``DIR/<name>/`` (MC, noise drawn in the graph) and ``DIR/<name>-det/``.

The MC model's volume interval is calibrated (split-conformal, ``interval_calibration``) on the
checkpoint's validation split or on ``interval_cohort`` and the calibration is stored in its
metadata (``ugss.interval_calibration``), which its int8 twin, TensorRT plan and Triton model
carry too; ``interval_calibration=False`` leaves the interval uncalibrated.

Each graph is checked with ``onnx.checker``, compared with PyTorch (``verify``) and opened and
run once through ``ugss.runtime.engines.OnnxEngine`` — the code that will use it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from ugss import __version__
from ugss.errors import ConfigError, ExportError, InputError
from ugss.runtime.engines import OnnxEngine, auto_batch_size, model_twin
from ugss.runtime.interval import weak_warning
from ugss.runtime.model_info import (
    DET_OUTPUT,
    INPUT_NAME,
    KIND_DETERMINISTIC,
    KIND_MC,
    MC_OUTPUTS,
    NOISE_INPUT_NAME,
    ModelInfo,
)
from ugss.train.predict import LoadedCheckpoint

from . import metadata as md
from .interval_calibration import (
    CalibrationScans,
    IntervalResult,
    calibrate_model,
    folder_scans,
    validation_scans,
)
from .mc_graph import NOISE_MODES, DeterministicGraph, MCGraph
from .onnx_edit import noise_in_graph
from .onnx_export import DYNAMO_OPSET, EXPORTERS, LEGACY_OPSET, export_module
from .source import WEIGHTS, open_checkpoint
from .verify import Parity, deterministic_parity, example_batch, mc_parity, run_to_run_change

PARITY_BATCH = 2


@dataclass(frozen=True)
class ExportOptions:
    """What to write; validated at construction (one clear error per bad value)."""

    onnx: Path
    weights: str = "auto"  # the validated weights, as ugss-eval and ugss-infer use
    mc_samples: int = 8
    noise: str = "input"
    threshold: float = 0.5
    name: str = "ugss"
    version: int = 1
    exporter: str = "legacy"
    trt: bool = False
    fp16: bool = True
    triton: Path | None = None
    max_batch: int = 32
    int8: bool = False
    calibration: tuple[str, ...] = ()
    interval_calibration: bool = True
    interval_cohort: Path | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.onnx.suffix == ".onnx", f"--onnx must name a .onnx file, got {self.onnx}"),
            (self.weights in WEIGHTS, f"--weights must be one of {', '.join(WEIGHTS)}"),
            (
                self.mc_samples == 0 or self.mc_samples >= 2,
                f"--mc-samples must be 0 (deterministic only) or >= 2, got {self.mc_samples}",
            ),
            (self.noise in NOISE_MODES, f"--noise must be one of {', '.join(NOISE_MODES)}"),
            (0.0 < self.threshold < 1.0, f"--threshold must be in (0, 1), got {self.threshold}"),
            (self.version >= 1, f"--model-version must be >= 1, got {self.version}"),
            (self.exporter in EXPORTERS, f"--exporter must be one of {', '.join(EXPORTERS)}"),
            (1 <= self.max_batch <= 4096, f"--max-batch must be in 1..4096, got {self.max_batch}"),
            (self.fp16 or self.trt, "--fp32 applies to the TensorRT engine: add --trt"),
            (bool(self.name.strip()) and "/" not in self.name, f"bad --name {self.name!r}"),
            (self.int8 or not self.calibration, "--calibration applies to --int8: add --int8"),
            (
                self.interval_calibration or self.interval_cohort is None,
                "--interval-calibration and --no-interval-calibration exclude each other",
            ),
            (
                self.mc or self.interval_cohort is None,
                "--interval-calibration applies to an MC model: --mc-samples must be >= 2",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def mc(self) -> bool:
        return self.mc_samples >= 2

    @property
    def det_name(self) -> str:
        return f"{self.name}-det" if self.mc else self.name

    @property
    def det_path(self) -> Path:
        return model_twin(self.onnx, det=True) if self.mc else self.onnx


@dataclass(frozen=True)
class Artifact:
    """One written file (or Triton model folder) and how it was checked."""

    path: Path
    kind: str  # deterministic | mc
    form: str  # onnx | plan | triton
    seconds: float
    parity: Parity | None = None
    note: str = ""


@dataclass
class ExportResult:
    checkpoint: Path
    sha256: str
    infos: dict[str, ModelInfo]
    artifacts: list[Artifact] = field(default_factory=list)
    interval: IntervalResult | None = None  # the MC volume interval's calibration


Progress = Callable[[str], None]


def export_checkpoint(
    checkpoint: str | Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    """Run the whole export; raises ``InputError`` (bad input) or ``ExportError`` (parity)."""
    say = progress or (lambda _msg: None)
    checkpoint = Path(checkpoint)
    if options.trt:
        from .tensorrt import require_tensorrt

        require_tensorrt()  # before minutes of work, not after
    for out in (options.onnx, options.det_path):
        if out.resolve() == checkpoint.resolve():
            raise InputError(f"{out}: would overwrite the checkpoint")
    say("loading checkpoint")
    ckpt = open_checkpoint(checkpoint, options.weights)
    if options.mc and not ckpt.model.dropout_sites:
        raise InputError(
            f"{checkpoint}: the model was trained without dropout (rate 0): "
            "export it with --mc-samples 0"
        )
    kind = ckpt.model_config.dropout_kind
    if options.mc and kind != "channel" and options.noise == "input":
        raise InputError(
            f"{checkpoint}: the model uses {kind!r} dropout; host noise (dropout_noise[T, C]) "
            "exists only for channel dropout: use --noise graph"
        )
    sha = md.file_sha256(checkpoint)
    interval_scans = _interval_scans(ckpt, options, sha, say)  # before minutes of work
    training = md.training_summary(ckpt)
    common = dict(threshold=options.threshold, version=options.version, sha256=sha)
    infos = {
        KIND_DETERMINISTIC: md.model_info(
            ckpt,
            kind=KIND_DETERMINISTIC,
            mc_samples=0,
            name=options.det_name,
            training=training,
            **common,
        )
    }
    if options.mc:
        infos[KIND_MC] = md.model_info(
            ckpt,
            kind=KIND_MC,
            mc_samples=options.mc_samples,
            name=options.name,
            training=training,
            **common,
        )
    result = ExportResult(checkpoint, sha, infos)
    x = example_batch(PARITY_BATCH, ckpt.model.config.in_channels, ckpt.input_size)
    options.onnx.parent.mkdir(parents=True, exist_ok=True)

    say("exporting deterministic graph")
    det, art = _export_det(ckpt, options, x, infos[KIND_DETERMINISTIC])
    result.artifacts.append(art)
    mc = None
    if options.mc:
        say(f"exporting MC graph (T = {options.mc_samples})")
        mc, art = _export_mc(ckpt, options, x, infos[KIND_MC])
        result.artifacts.append(art)
        if interval_scans is not None:
            _calibrate_interval(result, options, mc, interval_scans, say)
    if options.int8:
        result.artifacts += _export_int8(options, infos, say)
    if options.trt:
        result.artifacts += _build_plans(options, say)
    if options.triton is not None:
        say(f"writing Triton repository {options.triton}")
        result.artifacts += _write_triton(options, infos, det, mc)
    return result


def _interval_scans(
    ckpt: LoadedCheckpoint, options: ExportOptions, sha: str, say: Progress
) -> CalibrationScans | None:
    """The labeled scans to calibrate the MC volume interval on, or None (not asked)."""
    if not (options.mc and options.interval_calibration):
        return None
    say("finding the interval calibration scans")
    if options.interval_cohort is not None:
        return folder_scans(options.interval_cohort)
    return validation_scans(ckpt, sha)


def _calibrate_interval(
    result: ExportResult,
    options: ExportOptions,
    mc: onnx.ModelProto,
    scans: CalibrationScans,
    say: Progress,
) -> None:
    """Calibrate the written MC model's interval; store it in the file and in ``mc``."""
    interval = calibrate_model(options.onnx, scans, say)
    cal = interval.calibration
    info = replace(result.infos[KIND_MC], interval_calibration=cal)
    meta = {p.key: p.value for p in mc.metadata_props} | info.to_metadata()
    meta[f"{md.EXPORT_PREFIX}interval_calibration_seconds"] = f"{interval.seconds:.1f}"
    if cal.weak:
        meta[f"{md.EXPORT_PREFIX}interval_calibration_warning"] = weak_warning(cal.n_scans)
    md.attach(mc, meta, int(info.version))
    onnx.save(mc, str(options.onnx))
    _runtime_check(options.onnx, info)
    result.infos[KIND_MC] = info
    result.interval = interval


def _export_meta(ckpt: LoadedCheckpoint, options: ExportOptions, extra: dict) -> dict[str, str]:
    opset = LEGACY_OPSET if options.exporter == "legacy" else DYNAMO_OPSET
    base = {
        "ugss_version": __version__,
        "torch_version": torch.__version__,
        "exporter": options.exporter,
        "opset": opset,
        "dropout_kind": ckpt.model_config.dropout_kind,
        "dropout_sites": ",".join(ckpt.model.dropout_sites),
        "precision": "fp32",
    }
    base.update(extra)
    return base


def _save(model: onnx.ModelProto, path: Path, info: ModelInfo, export: dict) -> None:
    md.attach(model, md.metadata_map(info, export), int(info.version))
    onnx.save(model, str(path))
    _runtime_check(path, info)


def _runtime_check(path: Path, info: ModelInfo) -> None:
    """Open the file the way ``ugss-infer`` does and run one slice through it."""
    engine = OnnxEngine(path, provider="cpu", threads=None, seed=0)
    if engine.info != info:
        raise ExportError(f"{path}: metadata does not read back as written")
    batch = np.zeros((1, len(info.windows), info.input_size, info.input_size), np.float32)
    out = engine.run(batch)
    if out.prob.shape != (1, info.input_size, info.input_size):
        raise ExportError(f"{path}: runtime got probability shape {out.prob.shape}")


def _check(parity: Parity, what: str) -> Parity:
    if not parity.ok:
        raise ExportError(f"{what}: parity with PyTorch failed ({parity.describe()})")
    return parity


def _export_det(
    ckpt: LoadedCheckpoint, options: ExportOptions, x: torch.Tensor, info: ModelInfo
) -> tuple[onnx.ModelProto, Artifact]:
    t0 = time.perf_counter()
    model = export_module(
        DeterministicGraph(ckpt.model), [x], [INPUT_NAME], [DET_OUTPUT], exporter=options.exporter
    )
    seconds = time.perf_counter() - t0
    parity = _check(deterministic_parity(ckpt.model, model, x), "deterministic graph")
    extra = {"parity_max_abs_diff": f"{parity.max_prob_diff:.3g}", "noise": "none"}
    _save(model, options.det_path, info, _export_meta(ckpt, options, extra))
    return model, Artifact(options.det_path, KIND_DETERMINISTIC, "onnx", seconds, parity)


def _export_mc(
    ckpt: LoadedCheckpoint, options: ExportOptions, x: torch.Tensor, info: ModelInfo
) -> tuple[onnx.ModelProto, Artifact]:
    """Host-noise graph first (exact parity), moved into the graph afterwards if asked."""
    channel = ckpt.model_config.dropout_kind == "channel"
    graph = MCGraph(
        ckpt.model, options.mc_samples, options.threshold, "input" if channel else "graph"
    )
    t0 = time.perf_counter()
    if channel:
        u = torch.rand(graph.samples, graph.noise_channels)
        names = [INPUT_NAME, NOISE_INPUT_NAME]
        model = export_module(graph, [x, u], names, list(MC_OUTPUTS), exporter=options.exporter)
        seconds = time.perf_counter() - t0
        parity: Parity | None = _check(mc_parity(graph, model, x), "MC graph")
        if options.noise == "graph":
            model = noise_in_graph(model)
    else:
        model = export_module(graph, [x], [INPUT_NAME], list(MC_OUTPUTS), exporter=options.exporter)
        seconds = time.perf_counter() - t0
        parity = None
    note = ""
    if options.noise == "graph":
        change = run_to_run_change(model, x)
        note = f"in-graph noise; mean_prob changes by up to {change:.2g} between runs"
    layout = ",".join(f"{s}:{c}" for s, c in graph.layout)
    extra = {
        "noise": options.noise,
        "noise_shape": f"[{graph.samples}, {graph.noise_channels}]"
        if options.noise == "input"
        else "",
        "noise_layout": layout if channel else "",
        "parity_max_abs_diff": f"{parity.max_prob_diff:.3g}" if parity else "",
    }
    _save(model, options.onnx, info, _export_meta(ckpt, options, extra))
    return model, Artifact(options.onnx, KIND_MC, "onnx", seconds, parity, note)


def _export_int8(
    options: ExportOptions, infos: dict[str, ModelInfo], say: Progress
) -> list[Artifact]:
    """int8 twins of the written fp32 graphs, checked against them (``quantize``); a check
    with too little fp32 foreground stops the export (``InputError``) before writing a twin."""
    from .quantize import MIN_AGREEMENT, calibration_slices, quantize_int8

    say("reading calibration slices")
    calib = calibration_slices(infos[KIND_DETERMINISTIC], options.calibration)
    out = []
    for kind, src in [(KIND_DETERMINISTIC, options.det_path)] + (
        [(KIND_MC, options.onnx)] if options.mc else []
    ):
        dst = model_twin(src, int8=True)
        say(f"quantizing {src.name} to int8")
        t0 = time.perf_counter()
        agreement = quantize_int8(src, dst, calib, infos[kind].threshold)
        if agreement.mask_dice < MIN_AGREEMENT:
            dst.unlink(missing_ok=True)
            raise ExportError(
                f"{dst.name}: {agreement.describe()}, below {MIN_AGREEMENT}; keep the fp32 model "
                "or calibrate on scans like yours (--calibration)"
            )
        info = replace(infos[kind], name=f"{infos[kind].name}-int8")
        meta = md.read_onnx_metadata(src)
        meta.update(info.to_metadata())
        meta.update(
            {
                f"{md.EXPORT_PREFIX}precision": "int8",
                f"{md.EXPORT_PREFIX}calibration": calib.source,
                f"{md.EXPORT_PREFIX}int8_max_prob_diff": f"{agreement.max_prob_diff:.3g}",
                f"{md.EXPORT_PREFIX}int8_mask_dice": f"{agreement.mask_dice:.4f}",
            }
        )
        model = onnx.load(str(dst))
        md.attach(model, meta, int(info.version))
        onnx.save(model, str(dst))
        _runtime_check(dst, info)
        seconds = time.perf_counter() - t0
        out.append(Artifact(dst, kind, "onnx-int8", seconds, None, agreement.describe()))
    return out


def _plan_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".plan")


def _build_plans(options: ExportOptions, say: Progress) -> list[Artifact]:
    from .tensorrt import DEFAULT_SLAB, build_engine

    out = []
    batch = min(options.max_batch, DEFAULT_SLAB)  # ugss-infer sends at most this many slices
    for path in [options.det_path] + ([options.onnx] if options.mc else []):
        say(f"building TensorRT engine from {path.name}")
        meta = md.read_onnx_metadata(path)
        build = build_engine(path, _plan_path(path), meta, fp16=options.fp16, max_batch=batch)
        parity = f"; {build.parity.describe()}" if build.parity else ""
        note = f"{build.path}; {build.precision}, batch 1–{batch}{parity}"
        out.append(Artifact(build.plan, meta["ugss.kind"], "plan", build.seconds, None, note))
    return out


def _write_triton(
    options: ExportOptions,
    infos: dict[str, ModelInfo],
    det: onnx.ModelProto,
    mc: onnx.ModelProto | None,
) -> list[Artifact]:
    from .triton import write_model

    root = options.triton
    assert root is not None
    models = [(options.det_name, det, KIND_DETERMINISTIC)]
    if mc is not None:
        has_noise = any(i.name == NOISE_INPUT_NAME for i in mc.graph.input)
        models.insert(0, (options.name, noise_in_graph(mc) if has_noise else mc, KIND_MC))
    out = []
    for name, model, kind in models:
        t0 = time.perf_counter()
        params = {p.key: p.value for p in model.metadata_props}
        plan = None
        with tempfile.TemporaryDirectory() as tmp:
            if options.trt:
                from .tensorrt import build_engine

                src = Path(tmp) / "model.onnx"
                onnx.save(model, str(src))
                plan = build_engine(
                    src,
                    Path(tmp) / "model.plan",
                    params,
                    fp16=options.fp16,
                    max_batch=options.max_batch,
                ).plan
            folder = write_model(
                root,
                name,
                model,
                params,
                version=options.version,
                max_batch_size=options.max_batch,
                preferred_batch=auto_batch_size(infos[kind]),
                plan=plan,
            )
        note = "TensorRT plan" if plan else "ONNX"
        if kind == KIND_MC:
            note += ", dropout noise drawn in the graph"
        out.append(Artifact(folder, kind, "triton", time.perf_counter() - t0, None, note))
    return out
