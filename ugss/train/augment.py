"""Augmentation on image and mask together: crop, rotation and flips in one resampling.

All randomness is drawn by ``draw_params`` from the caller's seeded ``numpy`` generator; the
warp itself is deterministic. One ``grid_sample`` per batch maps each output crop pixel to the
rotated/flipped position in the full preprocessed slice (bilinear; the mask is resampled the same
way and thresholded at ½). With no rotation and an integer crop offset the crop is exact.
Outside the slice the image is 0, which is below every window (air).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """Per sample: crop centre (row, col) in input pixels, rotation in radians, flips."""

    centers: np.ndarray  # (N, 2) float
    angles: np.ndarray  # (N,)
    flip_lr: np.ndarray  # (N,) bool
    flip_ud: np.ndarray  # (N,) bool


def draw_params(
    rng: np.random.Generator,
    n: int,
    size: int,
    crop: int,
    *,
    rotation_deg: float,
    flip_lr: float,
    flip_ud: float,
    anchors: np.ndarray | None = None,
    jitter: float = 0.25,
) -> AugmentParams:
    """Draw crop centres (around ``anchors`` (N, 2) where not NaN), angles and flips.

    Centres are integer + crop/2 so that an unrotated crop is an exact pixel window; a centre
    near an anchor is jittered by up to ``jitter``·crop and kept inside the slice.
    """
    half = crop / 2.0
    lo, hi = half, size - half
    centers = np.empty((n, 2), dtype=np.float64)
    for i in range(n):
        if anchors is not None and not np.isnan(anchors[i, 0]):
            c = anchors[i] + rng.uniform(-jitter * crop, jitter * crop, size=2)
        else:
            c = rng.uniform(lo, hi, size=2) if hi > lo else np.array([size / 2.0, size / 2.0])
        c = np.clip(np.floor(c - half) + half, lo, hi)
        centers[i] = c
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, size=n))
    return AugmentParams(
        centers=centers,
        angles=angles,
        flip_lr=rng.random(n) < flip_lr,
        flip_ud=rng.random(n) < flip_ud,
    )


def _theta(params: AugmentParams, size: int, crop: int) -> torch.Tensor:
    """Affine ``(N, 2, 3)`` from output-crop normalised coords to input normalised coords."""
    n = len(params.angles)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    scale = crop / size
    for i in range(n):
        a = params.angles[i]
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        flip = np.diag([-1.0 if params.flip_lr[i] else 1.0, -1.0 if params.flip_ud[i] else 1.0])
        theta[i, :, :2] = scale * rot @ flip
        row, col = params.centers[i]
        theta[i, :, 2] = [2.0 * col / size - 1.0, 2.0 * row / size - 1.0]  # (x, y) order
    return torch.from_numpy(theta)


def apply_augment(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    params: AugmentParams,
    crop: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images ``(N, C, S, S)`` and masks ``(N, 1, S, S)`` → crops ``(N, C|1, c, c)``."""
    n, c, size, _ = images.shape
    theta = _theta(params, size, crop).to(images.device, images.dtype)
    grid = F.affine_grid(theta, [n, c, crop, crop], align_corners=False)
    stack = images if masks is None else torch.cat([images, masks.to(images.dtype)], dim=1)
    out = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if masks is None:
        return out, None
    return out[:, :c], (out[:, c:] >= 0.5).to(images.dtype)
