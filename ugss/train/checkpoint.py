"""Checkpoints: everything to resume a run exactly and to rebuild the model for export/eval.

A checkpoint holds the student and teacher weights, optimizer, LR-schedule and AMP-scaler
state, the global step and epoch, the random-generator states, the early-stopping state, the
full ``TrainConfig`` (``to_dict``), the data summary (split scan ids, w_pos, …) and, at the top
level for readers that only need the model, ``model`` (dropout placement/rate/kind),
``input_size``, ``windows`` (``windows_to_str``), ``eval_model`` (the weights with
the higher validation Dice at that epoch, ``teacher`` or ``student``; always ``student`` for
``supervised``), ``val_dice`` (``{"student": d, "teacher": d}``, the teacher only when there is
one),
``logit_offset`` (−ln w_pos: added to the head bias for inference it turns the weighted-BCE
output into a calibrated probability, ``losses.prior_correction``) and ``threshold`` (0.5 on
that calibrated probability). ``ugss.train.predict.load_checkpoint`` applies the offset.

``Checkpoint`` is that content as a typed record: the training loop writes ``to_dict()`` and
reads resume state and scores the best epoch through it, ``predict.load_checkpoint`` rebuilds the
network from it. The file stays a plain dict (``torch.save``), so a checkpoint of format 1 needs
no conversion; keys a reader does not know are logged and ignored (``ugss.known_keys``), and
the keys an export-only checkpoint (weights and model description, no optimizer) omits have
defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ugss import __version__
from ugss.errors import InputError
from ugss.known_keys import known_keys

FORMAT = "ugss-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = ("student", "teacher")
_HEADER = ("format", "format_version", "ugss_version", "torch_version")  # save_checkpoint's


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint holds (see the module doc); ``to_dict`` is what the file stores."""

    model: dict[str, Any]  # ModelConfig.to_dict()
    input_size: int
    windows: str  # windows_to_str
    student: dict[str, Any]
    teacher: dict[str, Any] | None = None
    method: str = ""
    eval_model: str = "student"
    val_dice: dict[str, float] = field(default_factory=dict)
    logit_offset: float = 0.0
    threshold: float = 0.5
    config: dict[str, Any] | None = None  # TrainConfig.to_dict()
    data: dict[str, Any] = field(default_factory=dict)  # split scan ids, w_pos, …
    step: int = 0
    epoch: int = 0
    # resume state: absent from export-only checkpoints
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    rng: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, shallow (``asdict`` would deep-copy every weight tensor)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "checkpoint") -> Checkpoint:
        """The checkpoint in ``doc`` (header and unknown keys ignored; ``None`` for a key with
        a default is that default); a missing model description is an ``InputError``."""
        body = {k: v for k, v in doc.items() if k not in _HEADER}
        kept = {k: v for k, v in known_keys(cls, body, strict=False).items() if v is not None}
        missing = [k for k in ("model", "input_size", "windows", "student") if k not in kept]
        if missing:
            raise InputError(f"{where}: not a complete UGSS checkpoint (no {', '.join(missing)})")
        return cls(**kept)

    def weights(self, which: str) -> dict[str, Any] | None:
        """The ``student`` or ``teacher`` state dict (None: this checkpoint has none)."""
        if which not in WEIGHTS:
            raise InputError(f"which must be auto, teacher or student, got {which!r}")
        return self.student if which == "student" else self.teacher

    @property
    def can_resume(self) -> bool:
        return None not in (self.optimizer, self.scheduler, self.scaler, self.state, self.rng)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = dict(
        zip(_HEADER, (FORMAT, FORMAT_VERSION, __version__, torch.__version__), strict=True)
    )
    doc.update(payload)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(doc, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict, refusing files that are not UGSS checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        doc = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise InputError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path}: not a UGSS training checkpoint")
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format is newer than this ugss")
    return doc


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """``read_checkpoint`` as a ``Checkpoint``."""
    return Checkpoint.from_dict(read_checkpoint(path, map_location), str(path))
