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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ugss import __version__
from ugss.errors import InputError

FORMAT = "ugss-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "ugss_version": __version__}
    doc["torch_version"] = torch.__version__
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
