"""Validation Dice for early stopping, on the model grid of the cached slices.

Definitions (used in the metrics log, checkpoints and reports of ``ugss-train``):
- prediction: the deterministic network (dropout off), probability after the prior correction
  of the weighted BCE (``losses.prior_correction``) ≥ 0.5 — the caller passes the equivalent
  threshold on the raw sigmoid;
- a scan's Dice: 2|P∩G| / (|P|+|G|) over all its slices at model resolution;
- ``val_dice``: the mean of the scan Dice over the validation scans that contain hemorrhage
  (if none does: over all scans, empty-vs-empty counted as 1); scans without hemorrhage are
  reported as ``val_empty_ok`` (share predicted empty);
- ``val_dice_pooled``: one Dice over all validation voxels pooled (large lesions weigh more).

The full metrics (native grid, eq. 16–19) are ``ugss-eval``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ugss.evaluation import metrics
from ugss.runtime.preprocess import iter_slabs
from ugss.train.cache import CachedScan


@torch.no_grad()
def predict_images(
    model: torch.nn.Module,
    images: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    channels_last: bool = False,
) -> np.ndarray:
    """Deterministic probabilities ``(n, S, S)`` float32 for model-grid images ``(n, C, S, S)``."""
    was_training = model.training
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    n = int(images.shape[0])
    out = np.empty((n, *images.shape[-2:]), dtype=np.float32)
    for sl in iter_slabs(n, batch_size):
        x = torch.from_numpy(np.array(images[sl])).to(device)
        x = x.contiguous(memory_format=fmt)
        out[sl] = torch.sigmoid(model(x).float())[:, 0].cpu().numpy()
    model.train(was_training)
    return out


def predict_cached(
    model: torch.nn.Module,
    scan: CachedScan,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    channels_last: bool = False,
) -> np.ndarray:
    """Deterministic probabilities ``(n, S, S)`` float32 for a cached scan's slices."""
    return predict_images(
        model, scan.images, device=device, batch_size=batch_size, channels_last=channels_last
    )


def sample_slices(scans: Sequence[CachedScan], n: int = 16) -> np.ndarray | None:
    """Up to ``n`` slices spread evenly over ``scans`` (in order), ``(k, C, S, S)``; None if none.

    A fixed sample: the teacher–student agreement of every epoch is measured on the same pixels.
    """
    index = [(i, z) for i, s in enumerate(scans) for z in range(s.n_slices)]
    if not index:
        return None
    picks = np.unique(np.linspace(0, len(index) - 1, min(n, len(index))).round().astype(int))
    return np.stack([np.asarray(scans[i].images[z]) for i, z in (index[k] for k in picks)])


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def dice(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """2|P∩G|/(|P|+|G|) by :func:`ugss.evaluation.metrics.dice`; ``None`` when both are empty."""
    return _none_if_nan(metrics.dice(truth, pred))


@dataclass(frozen=True)
class ValidationResult:
    dice: float
    per_scan: dict[str, float | None] = field(default_factory=dict)
    empty_ok: float | None = None
    pooled: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "val_dice": self.dice,
            "val_dice_pooled": self.pooled,
            "val_dice_scans": self.per_scan,
            "val_empty_ok": self.empty_ok,
        }


def validate(
    model: torch.nn.Module,
    scans: Sequence[CachedScan],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    channels_last: bool = False,
    threshold: float = 0.5,
) -> ValidationResult:
    per_scan: dict[str, float | None] = {}
    positives: list[float] = []
    empty_flags: list[bool] = []
    inter = n_pred = n_truth = 0
    for scan in scans:
        assert scan.mask is not None, "validation scans carry masks"
        prob = predict_cached(
            model, scan, device=device, batch_size=batch_size, channels_last=channels_last
        )
        pred = prob >= threshold
        truth = np.asarray(scan.mask, dtype=bool)
        d = dice(pred, truth)
        inter += int(np.logical_and(pred, truth).sum())
        n_pred += int(pred.sum())
        n_truth += int(truth.sum())
        per_scan[scan.scan_id] = d
        if truth.any():
            positives.append(d or 0.0)
        else:
            empty_flags.append(not pred.any())
    if positives:
        score = float(np.mean(positives))
    else:
        score = float(np.mean([1.0 if d is None else d for d in per_scan.values()] or [0.0]))
    empty_ok = float(np.mean(empty_flags)) if empty_flags else None
    pooled = _none_if_nan(metrics.dice_from_counts(inter, n_truth, n_pred))
    return ValidationResult(score, per_scan, empty_ok, pooled)
