"""Predict a whole volume with a torch model (for evaluation), and load trained checkpoints.

The same path as the runtime: slabs of slices → ``preprocess_slices`` → network →
``PlaneTransform.inverse`` onto the native grid. With ``mc_samples > 0`` the probability is the
MC-dropout mean (eq. 2) from the shared trunk; ``predict_volume_mc`` also returns its entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ugss.errors import InputError
from ugss.runtime.preprocess import (
    PlaneTransform,
    Window,
    iter_slabs,
    preprocess_slices,
    windows_from_str,
)
from ugss.runtime.volume import Volume
from ugss.train.checkpoint import load
from ugss.train.config import TrainConfig
from ugss.train.losses import entropy_bits
from ugss.train.model import ModelConfig, ResUNet


@torch.no_grad()
def predict_volume_mc(
    model: ResUNet,
    volume: Volume,
    *,
    input_size: int,
    windows: Sequence[Window],
    batch_size: int = 8,
    mc_samples: int = 0,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(prob, entropy)`` on the native ``(z, y, x)`` grid; entropy (bits) only for MC."""
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    z, h, w = volume.shape
    transform = PlaneTransform(h, w, input_size)
    prob = np.empty((z, h, w), dtype=np.float32)
    ent = np.empty((z, h, w), dtype=np.float32) if mc_samples > 0 else None
    try:
        for slab in iter_slabs(z, batch_size):
            x = torch.from_numpy(preprocess_slices(volume.hu[slab], input_size, windows)).to(device)
            if mc_samples > 0:
                p = torch.sigmoid(model.mc_logits(x, mc_samples).float()).mean(dim=0)[:, 0]
                u = entropy_bits(p)
                both = transform.inverse(torch.stack([p, u], dim=1).cpu().numpy())
                prob[slab], ent[slab] = both[:, 0], both[:, 1]  # type: ignore[index]
            else:
                p = torch.sigmoid(model(x).float())[:, 0]
                prob[slab] = transform.inverse(p.cpu().numpy())
    finally:
        model.train(was_training)
    return prob, ent


def predict_volume(
    model: ResUNet,
    volume: Volume,
    *,
    input_size: int,
    windows: Sequence[Window],
    batch_size: int = 8,
    mc_samples: int = 0,
) -> np.ndarray:
    """Hemorrhage probability ``(z, y, x)`` float32 on the volume's native grid."""
    prob, _ = predict_volume_mc(
        model,
        volume,
        input_size=input_size,
        windows=windows,
        batch_size=batch_size,
        mc_samples=mc_samples,
    )
    return prob


@dataclass(frozen=True, eq=False)
class LoadedCheckpoint:
    """A trained network ready for prediction plus what it was trained with."""

    model: ResUNet
    input_size: int
    windows: tuple[Window, ...]
    model_config: ModelConfig
    which: str  # "teacher" or "student"
    method: str
    path: str
    threshold: float = 0.5
    logit_offset: float = 0.0  # already added to the head bias when ``calibrated``
    calibrated: bool = True
    config: TrainConfig | None = None
    data: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0


def load_checkpoint(
    path: str | Path,
    *,
    which: str = "auto",
    device: torch.device | str = "cpu",
    calibrated: bool = True,
) -> LoadedCheckpoint:
    """Rebuild a checkpoint's network; ``which``: auto, teacher or student.

    ``auto`` takes the checkpoint's ``eval_model``: the weights with the higher validation Dice
    when it was saved (checkpoints from before both were validated name the one that was).

    With ``calibrated`` (the default) the checkpoint's ``logit_offset`` is added to the head
    bias, so the network outputs the prior-corrected probability and ``threshold`` applies.
    """
    ckpt = load(path, map_location=device)
    if which == "auto":
        which = ckpt.eval_model
    state = ckpt.weights(which)
    if state is None:
        raise InputError(f"{path}: the checkpoint has no {which} weights")
    mcfg = ModelConfig.from_dict(ckpt.model)
    model = ResUNet(mcfg)
    model.load_state_dict(state)
    offset = float(ckpt.logit_offset)
    if calibrated and offset:
        with torch.no_grad():
            model.head.bias.add_(offset)
    model.to(device).eval()
    return LoadedCheckpoint(
        model=model,
        input_size=int(ckpt.input_size),
        windows=windows_from_str(ckpt.windows),
        model_config=mcfg,
        which=which,
        method=str(ckpt.method),
        path=str(path),
        threshold=float(ckpt.threshold),
        logit_offset=offset,
        calibrated=calibrated,
        config=None if ckpt.config is None else TrainConfig.from_dict(ckpt.config),
        data=dict(ckpt.data),
        epoch=int(ckpt.epoch),
        step=int(ckpt.step),
    )
