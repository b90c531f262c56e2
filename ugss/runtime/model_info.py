"""What a model file says about itself: the contract between ``ugss.export`` and the runtime.

An exported ONNX model carries these keys in ``metadata_props`` (strings). The runtime reads
everything it needs from the file — windows, input size, threshold, MC samples — so a model
and its preprocessing can never drift apart.

Graphs (input and output names are part of the contract):
- deterministic: ``image[N,3,H,W] → prob[N,1,H,W]``
- MC: ``image[N,3,H,W] (+ optional dropout_noise[T,C] uniform in [0,1)) →
  mean_prob[N,1,H,W], entropy[N,1,H,W] (bits), sample_counts[N,T]`` (foreground pixels per
  sample at ``threshold``, at model resolution).

MC models may carry ``ugss.interval_calibration`` (JSON, ``ugss.runtime.interval``): the
split-conformal calibration of the volume interval, written by ``ugss-export``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ugss.errors import InputError
from ugss.runtime.interval import METADATA_KEY as INTERVAL_KEY
from ugss.runtime.interval import IntervalCalibration
from ugss.runtime.preprocess import DEFAULT_WINDOWS, Window, windows_from_str, windows_to_str

INPUT_NAME = "image"
NOISE_INPUT_NAME = "dropout_noise"
DET_OUTPUT = "prob"
MC_OUTPUTS = ("mean_prob", "entropy", "sample_counts")


class ModelKind(StrEnum):
    """What a model computes: one probability, or the MC mean, entropy and sample counts."""

    DETERMINISTIC = "deterministic"
    MC = "mc"


KIND_DETERMINISTIC = ModelKind.DETERMINISTIC
KIND_MC = ModelKind.MC


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime must know to use a model; stored as ONNX metadata strings."""

    kind: str = KIND_DETERMINISTIC
    input_size: int = 160
    windows: tuple[Window, ...] = DEFAULT_WINDOWS
    threshold: float = 0.5
    mc_samples: int = 0
    dropout_rate: float = 0.0
    dropout_at: str = ""
    name: str = "ugss-resunet"
    version: str = "0"
    method: str = "ugss"
    checkpoint_sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    interval_calibration: IntervalCalibration | None = None  # MC models; None = uncalibrated

    def __post_init__(self) -> None:
        try:  # converted at the door; metadata and reports keep the string
            object.__setattr__(self, "kind", ModelKind(self.kind))
        except ValueError:
            raise InputError(f"model kind must be deterministic or mc, got {self.kind!r}") from None
        if self.input_size < 16 or self.input_size % 16:
            raise InputError(f"model input size must be a multiple of 16, got {self.input_size}")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"model threshold must be in (0, 1), got {self.threshold}")
        if self.kind == KIND_MC and self.mc_samples < 2:
            raise InputError(f"an MC model needs mc_samples >= 2, got {self.mc_samples}")
        if self.kind != KIND_MC and self.interval_calibration is not None:
            raise InputError("an interval calibration belongs to an MC model only")

    def to_metadata(self) -> dict[str, str]:
        """Flat string map for ONNX ``metadata_props`` (keys prefixed ``ugss.``)."""
        data = asdict(self)
        data["windows"] = windows_to_str(self.windows)
        data["training"] = json.dumps(self.training, sort_keys=True)
        del data["interval_calibration"]
        meta = {f"ugss.{k}": str(v) for k, v in data.items()}
        if self.interval_calibration is not None:
            meta[INTERVAL_KEY] = self.interval_calibration.to_json()
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelInfo:
        """Inverse of ``to_metadata``; a model without UGSS metadata is refused clearly."""
        vals = {k.removeprefix("ugss."): v for k, v in meta.items() if k.startswith("ugss.")}
        if "kind" not in vals or "input_size" not in vals:
            raise InputError("model file carries no UGSS metadata (was it written by ugss-export?)")
        try:
            return cls(
                kind=vals["kind"],
                input_size=int(vals["input_size"]),
                windows=windows_from_str(vals.get("windows", windows_to_str(DEFAULT_WINDOWS))),
                threshold=float(vals.get("threshold", 0.5)),
                mc_samples=int(vals.get("mc_samples", 0)),
                dropout_rate=float(vals.get("dropout_rate", 0.0)),
                dropout_at=vals.get("dropout_at", ""),
                name=vals.get("name", "ugss-resunet"),
                version=vals.get("version", "0"),
                method=vals.get("method", ""),
                checkpoint_sha256=vals.get("checkpoint_sha256", ""),
                training=json.loads(vals.get("training", "{}") or "{}"),
                interval_calibration=_calibration(meta.get(INTERVAL_KEY)),
            )
        except (ValueError, json.JSONDecodeError) as exc:
            raise InputError(f"model metadata is malformed: {exc}") from exc


def _calibration(text: str | None) -> IntervalCalibration | None:
    """The stored interval calibration; absent → None, malformed → ``InputError``."""
    return None if text is None else IntervalCalibration.from_json(text)
