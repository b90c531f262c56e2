"""Image noise in brain tissue: how a soft-tissue reconstruction is told from a sharp one.

Hemorrhage is read on soft-tissue (brain) kernels. A bone or other sharp kernel enhances edges
and raises the noise in brain tissue several-fold (about 3–8 HU for a soft kernel at 5 mm
against 30 HU and more for a bone kernel). The model was trained on soft and sharp synthetic
kernels but is much less accurate on sharp ones (``ugss/models/MODEL_CARD.md``). The node
passes over a series whose kernel is unnamed and whose noise is above ``SHARP_NOISE_HU``
(``dicom_node.selection``); ``ugss-infer`` flags it (``report.qc_flags``: ``high_noise``).
Very thin soft-kernel slices (below about 1 mm) can also exceed it: the flag says both.
"""

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
