"""Names for array shapes and axis orders used across the package.

- HU volume: ``(z, y, x)`` float32, slices × rows × columns, canonical L/P/S orientation.
- Model input: ``(n, 3, H, W)`` float32 in [0, 1], one channel per HU window (eq. 13–15).
- Model output: ``(n, 1, H, W)`` probability of hemorrhage.
- ``Spacing``: ``(z, y, x)`` voxel size in millimetres.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

Spacing: TypeAlias = tuple[float, float, float]
HUVolume: TypeAlias = np.ndarray  # (z, y, x) float32
ModelInput: TypeAlias = np.ndarray  # (n, 3, H, W) float32
ProbMap: TypeAlias = np.ndarray  # (n, 1, H, W) or (z, y, x) float32
