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

The slices where the fp32 model marks foreground are dealt out to both halves in turn, so the
check sees them wherever they lie in the stack. When the fp32 model marks fewer than
``MIN_FOREGROUND_PX`` pixels on the held-out half, a mask Dice would test nothing (two empty
masks agree perfectly): the export stops with one line instead of passing.
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
MIN_FOREGROUND_PX = 50  # fp32 mask pixels on the held-out slices for the Dice to mean something
SYNTHETIC_SCANS = 4
MAX_SLICES = 64


@dataclass(frozen=True)
class Calibration:
    """Preprocessed model inputs ``(n, C, size, size)`` and where they came from."""

    slices: np.ndarray
    source: str

    def split(self, foreground_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(fit, check)`` indices: slices with fp32 foreground (``foreground_px > 0``) and
        those without are each dealt out alternately, the check half taking the first
        foreground slice, so one positive slice is enough for the check to see it."""
        fg = np.flatnonzero(np.asarray(foreground_px) > 0)
        bg = np.flatnonzero(np.asarray(foreground_px) <= 0)
        fit = np.sort(np.concatenate([fg[1::2], bg[0::2]]))
        check = np.sort(np.concatenate([fg[0::2], bg[1::2]]))
        return fit, check


@dataclass(frozen=True)
class Agreement:
    """int8 against fp32 on the held-out slices."""

    max_prob_diff: float
    mask_dice: float
    fp32_pixels: int
    slices: int
    foreground_slices: int = 0  # held-out slices where the fp32 model marks foreground

    def describe(self) -> str:
        return (
            f"int8 vs fp32 on {self.slices} held-out slices: max |Δp| {self.max_prob_diff:.3f}, "
            f"mask Dice {self.mask_dice:.4f} ({self.fp32_pixels} fp32 foreground px on "
            f"{self.foreground_slices} slices)"
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


def _check_foreground(pixels: int, calibration: Calibration, held_out: int) -> None:
    if pixels >= MIN_FOREGROUND_PX:
        return
    raise InputError(
        f"int8 check: the fp32 model marks {pixels} px of hemorrhage on {held_out} held-out "
        f"calibration slices ({calibration.source}), fewer than {MIN_FOREGROUND_PX}: the "
        "int8 mask cannot be compared; calibrate on scans with hemorrhage (--calibration)"
    )


def quantize_int8(src: Path, dst: Path, calibration: Calibration, threshold: float) -> Agreement:
    """Write the int8 (QDQ) twin of ``src`` to ``dst`` and compare it with ``src``.

    The fp32 model runs on every calibration slice first; the split puts its foreground in
    both halves, and too little foreground on the held-out half stops here (``InputError``),
    before anything is written. Metadata is copied by the caller (quantization keeps the
    graph, not the props).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    noise = _noise(src)
    ref_all = _probabilities(src, _feeds(calibration.slices, noise))
    per_slice = (ref_all >= threshold).reshape(len(ref_all), -1).sum(axis=1)
    fit, check = calibration.split(per_slice)
    _check_foreground(int(per_slice[check].sum()), calibration, len(check))
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            _Reader(_feeds(calibration.slices[fit], noise)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    ref = ref_all[check]
    q = _probabilities(dst, _feeds(calibration.slices[check], noise))
    a, b = ref >= threshold, q >= threshold
    return Agreement(
        float(np.abs(ref - q).max()),
        dice(a, b, empty=1.0),
        int(a.sum()),
        len(check),
        int((per_slice[check] > 0).sum()),
    )
