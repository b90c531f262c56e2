"""Tiny UGSS checkpoints for the export tests, written by the training code's ``save_checkpoint``.

The network is the real ResUNet at a small input size, trained for a few steps on random blobs
(so BatchNorm statistics and weights are not at their initial values), then saved with the same
keys ``ugss.train.loop`` writes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from ugss.runtime.preprocess import DEFAULT_WINDOWS, windows_to_str
from ugss.train.checkpoint import save_checkpoint
from ugss.train.config import DataConfig, MethodConfig, OptimConfig, TrainConfig
from ugss.train.model import ResUNet


def blobs(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random 3-channel images in [0, 1] and a mask where channel 0 is bright."""
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=gen)
    x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return x, (x[:, :1] > 0.6).float()


def write_checkpoint(
    path: Path,
    *,
    dropout_at: str = "head",
    dropout_kind: str = "channel",
    dropout_rate: float = 0.2,
    input_size: int = 32,
    method: str = "ugss",
    steps: int = 4,
    seed: int = 0,
) -> Path:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = TrainConfig(
        data=DataConfig(input_size=input_size, crop_size=input_size),
        method=MethodConfig(method=method),
        optim=OptimConfig(epochs=1, steps_per_epoch=steps, batch_size=4),
    ).replace(
        model={"dropout_at": dropout_at, "dropout_kind": dropout_kind, "dropout_rate": dropout_rate}
    )
    model = ResUNet(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        x, y = blobs(4, input_size, gen)
        loss = F.binary_cross_entropy_with_logits(model(x, mc=True), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    teacher = copy.deepcopy(model)
    with torch.no_grad():  # a teacher that differs from the student
        for p in teacher.parameters():
            p.mul_(0.9)
    split = {"train_labeled": ["a", "b"], "train_unlabeled": ["c"], "val": ["d"], "test": ["e"]}
    payload = {
        "config": cfg.to_dict(),
        "model": cfg.model.to_dict(),
        "input_size": input_size,
        "windows": windows_to_str(DEFAULT_WINDOWS),
        "method": method,
        "eval_model": "teacher" if method != "supervised" else "student",
        "student": model.state_dict(),
        "teacher": None if method == "supervised" else teacher.state_dict(),
        "data": {
            "n_scans": 5,
            "split": split,
            "slices": {"train_labeled": 60, "train_unlabeled": 30, "val": 30, "test": 30},
            "positive_slices_train": 12,
            "w_pos": 2.5,
            "input_size": input_size,
        },
        "step": steps,
        "epoch": 1,
    }
    return save_checkpoint(path, payload)
