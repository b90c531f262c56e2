"""Image noise in brain tissue: how a soft-tissue reconstruction is told from a sharp one.

Hemorrhage is read on soft-tissue (brain) kernels. A bone or other sharp kernel enhances edges
and raises the noise in brain tissue several-fold. Measured with ``volume_noise_hu`` on the 100
held-out ``bench_mimics`` scans (synthetic, 512², 5 mm): 1.9–4.7 HU for the 82 soft-kernel
scans, 21–26 HU for the 18 sharp ones; real kernels were not measured here. The model is much
less accurate on the sharp ones (``ugss/models/MODEL_CARD.md``). The node passes over a series
whose kernel is unnamed and whose noise is above ``SHARP_NOISE_HU`` (``dicom_node.selection``);
``ugss-infer`` flags it (``report.qc_flags``: ``high_noise``). Thin soft-kernel slices are
noisier than 5 mm ones and might exceed it too (not measured: the synthetic thin slices do
not), so the flag names both causes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SHARP_NOISE_HU = 12.0  # above this in brain tissue: a sharp kernel (or very thin slices)
NOISE_MIN_PIXELS = 200  # brain-tissue pixels needed to measure noise at all


def noise_hu(slice_hu: np.ndarray) -> float | None:
    """Robust noise (HU) in brain tissue of one slice: the spread of each pixel against its
    3×3 mean, where the whole 3×3 neighbourhood lies in 0–80 HU. None: too little tissue."""
    hu = np.asarray(slice_hu, dtype=np.float32)
    tissue = (hu > -20) & (hu < 100)
    inner = ndimage.uniform_filter(tissue.astype(np.float32), 3) > 0.999
    inner &= (hu > 0) & (hu < 80)
    if np.count_nonzero(inner) < NOISE_MIN_PIXELS:
        return None
    residual = (hu - ndimage.uniform_filter(hu, 3))[inner]
    mad = float(np.median(np.abs(residual - np.median(residual))))
    return 1.4826 * mad / np.sqrt(8.0 / 9.0)  # σ of white noise behind the 3×3 residual


def volume_noise_hu(hu: np.ndarray, slices: int = 5) -> float | None:
    """Median ``noise_hu`` of up to ``slices`` slices spread over the middle third of a
    (z, y, x) volume (the brain's levels, away from the skull base and the vertex); None when
    no slice has enough tissue."""
    n = hu.shape[0]
    zs = np.unique(np.linspace(n // 3, max(n // 3, (2 * n) // 3 - 1), slices).round().astype(int))
    found = [v for v in (noise_hu(hu[z]) for z in zs) if v is not None]
    return float(np.median(found)) if found else None
