"""int8 twins of exported ONNX models for CPU inference (onnxruntime static quantization).

Convolutions dominate the ResUNet's time on CPU (three quarters of it in onnxruntime's
profile). With 8-bit weights (per output channel) and 8-bit activations (ranges calibrated on
real model inputs: windowed CT slices through the shared preprocessing), onnxruntime runs them
on the CPU's integer dot-product units (AVX-512 VNNI / AVX-VNNI / ARM dot product).

Calibration slices come from CT scans the user names (``--calibration``: NIfTI files or DICOM
series folders, read by the runtime's own reader) or, by default, from synthetic head CTs made
by ``ugss.synth``. Half of the slices calibrate, the other half check the result against the
fp32 model: the largest probability difference and the agreement (Dice) of the two masks are
printed and stored in the model's metadata. An int8 model whose masks agree with fp32 less
than ``MIN_AGREEMENT`` is refused rather than written.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ugss.errors import InputError
from ugss.evaluation import dice
from ugss.runtime.model_info import INPUT_NAME, NOISE_INPUT_NAME, ModelInfo
from ugss.runtime.preprocess import preprocess_slices

MIN_AGREEMENT = 0.9  # Dice of int8 vs fp32 masks on the held-out calibration slices
SYNTHETIC_SCANS = 4
MAX_SLICES = 64


@dataclass(frozen=True)
class Calibration:
    """Preprocessed model inputs ``(n, C, size, size)`` and where they came from."""

    slices: np.ndarray
    source: str

    @property
    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        """Calibrate on the even slices, check on the odd ones (both cover the whole range)."""
        return self.slices[0::2], self.slices[1::2]


@dataclass(frozen=True)
class Agreement:
    """int8 against fp32 on the held-out slices."""

    max_prob_diff: float
    mask_dice: float  # 1.0 when both masks are empty
    fp32_pixels: int
    slices: int

    def describe(self) -> str:
        return (
            f"int8 vs fp32 on {self.slices} held-out slices: max |Δp| {self.max_prob_diff:.3f}, "
            f"mask Dice {self.mask_dice:.4f} ({self.fp32_pixels} fp32 foreground px)"
        )


def _spread(slices: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` slices, evenly spread (calibration wants the whole range of anatomy)."""
    if len(slices) <= n:
        return slices
    return slices[np.linspace(0, len(slices) - 1, n).round().astype(int)]


def calibration_slices(
    info: ModelInfo, scans: Sequence[str | Path] = (), max_slices: int = MAX_SLICES
) -> Calibration:
    """Model inputs for calibration from ``scans`` (files, folders, globs) or synthetic CT."""
    parts = []
    if scans:
        from ugss.runtime.io import expand_inputs, read_volume

        paths = expand_inputs([str(spec) for spec in scans])  # as ugss-infer finds scans
        for path in paths:
            try:
                hu = read_volume(path).hu
            except InputError as exc:
                raise InputError(f"--calibration {exc}") from exc
            parts.append(preprocess_slices(hu, info.input_size, info.windows))
        source = f"{len(paths)} scan(s): " + ", ".join(p.name for p in paths[:3])
        source += ", …" if len(paths) > 3 else ""
    else:
        from ugss.synth import make_scan

        for seed in range(SYNTHETIC_SCANS):
            vol, _, _ = make_scan(9000 + seed, matrix=256, slice_thickness=5.0, hemorrhage="any")
            parts.append(preprocess_slices(vol.hu, info.input_size, info.windows))
        source = f"{SYNTHETIC_SCANS} synthetic head CTs (ugss.synth, seeds 9000+)"
    per_scan = max(2, max_slices // len(parts))
    slices = np.concatenate([_spread(p, per_scan) for p in parts])
    if len(slices) < 2:
        raise InputError("--calibration: need at least 2 slices")
    return Calibration(np.ascontiguousarray(slices, dtype=np.float32), source)


def _noise(model_path: Path) -> dict[str, np.ndarray]:
    """Fixed dropout noise when the graph takes it as an input (else nothing)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    for inp in graph.input:
        if inp.name == NOISE_INPUT_NAME:
            dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
            return {NOISE_INPUT_NAME: np.random.default_rng(0).random(dims, dtype=np.float32)}
    return {}


def _feeds(slices: np.ndarray, extra: dict[str, np.ndarray], batch: int = 4) -> list[dict]:
    return [{INPUT_NAME: slices[i : i + batch]} | extra for i in range(0, len(slices), batch)]


class _Reader:
    """onnxruntime's ``CalibrationDataReader`` protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _probabilities(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, feed)[0] for feed in feeds])


def quantize_int8(src: Path, dst: Path, calibration: Calibration, threshold: float) -> Agreement:
    """Write the int8 (QDQ) twin of ``src`` to ``dst`` and compare it with ``src``.

    Metadata is copied by the caller (quantization keeps the graph, not the props).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fit, check = calibration.halves
    noise = _noise(src)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            _Reader(_feeds(fit, noise)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    feeds = _feeds(check, noise)
    ref, q = _probabilities(src, feeds), _probabilities(dst, feeds)
    a, b = ref >= threshold, q >= threshold
    return Agreement(float(np.abs(ref - q).max()), dice(a, b, empty=1.0), int(a.sum()), len(check))
