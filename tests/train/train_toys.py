"""Tiny toy cohorts written by the training tests (PhysioNet CT-ICH layout), no synth needed."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def _affine(spacing=(0.8, 0.8, 5.0)) -> np.ndarray:
    return np.diag([spacing[0], spacing[1], spacing[2], 1.0])


def write_scan(path: Path, data_ijk: np.ndarray, affine: np.ndarray, dtype=np.int16) -> None:
    img = nib.Nifti1Image(data_ijk.astype(dtype), affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def toy_scan(rng: np.random.Generator, shape=(48, 48, 6), lesion: bool = True):
    """A head-like phantom in HU with an optional bright 'hemorrhage' disk; (i, j, k) order."""
    ni, nj, nk = shape
    i, j = np.meshgrid(np.arange(ni), np.arange(nj), indexing="ij")
    r = np.hypot((i - ni / 2) / (0.42 * ni), (j - nj / 2) / (0.36 * nj))
    plane = np.where(r < 1.0, 35.0, -1000.0)
    plane = np.where((r >= 0.88) & (r < 1.0), 1200.0, plane)
    hu = np.repeat(plane[..., None], nk, axis=2) + rng.normal(0, 4, size=shape)
    mask = np.zeros(shape, dtype=np.uint8)
    if lesion:
        ci, cj = rng.uniform(0.35, 0.65, size=2) * (ni, nj)
        rad = rng.uniform(0.07, 0.12) * ni
        disk = np.hypot(i - ci, j - cj) < rad
        for k in range(1, nk - 1):
            mask[..., k] = disk
        hu[mask > 0] = 72.0 + rng.normal(0, 4, size=int(mask.sum()))
    return hu, mask


def write_toy_cohort(root: Path, n_scans: int = 6, seed: int = 0, shape=(48, 48, 6)) -> Path:
    rng = np.random.default_rng(seed)
    for s in range(n_scans):
        hu, mask = toy_scan(rng, shape, lesion=s % 3 != 2)
        write_scan(root / "ct_scans" / f"{s:03d}.nii", hu, _affine())
        write_scan(root / "masks" / f"{s:03d}.nii", mask, _affine(), np.uint8)
    return root
