"""Partial volume: the fraction of a pixel on one side of a boundary or inside a thin layer.

Every structure is an implicit surface with a distance in mm; a pixel of width ``pix`` centred at
distance ``x`` covers the structure by the exact 1D overlap, so edges get intermediate HU at any
resolution and a layer thinner than a pixel fades instead of vanishing or staying full.
"""

from __future__ import annotations

import numpy as np


def ramp(x: np.ndarray, pix: float) -> np.ndarray:
    """Area fraction of a pixel of width ``pix`` on the positive side of a boundary at x = 0."""
    return np.clip(x * np.float32(1.0 / pix) + np.float32(0.5), 0.0, 1.0)


def band(x: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float, pix: float) -> np.ndarray:
    """Area fraction of a pixel centred at ``x`` inside ``[lo, hi]`` (exact in 1D, 0 when thin)."""
    h = np.float32(pix / 2.0)
    inside = np.minimum(x + h, hi) - np.maximum(x - h, lo)
    return np.clip(inside * np.float32(1.0 / pix), 0.0, 1.0)


def sheet(dist: np.ndarray, halfwidth: np.ndarray | float, pix: float) -> np.ndarray:
    """Area fraction inside a sheet of ``halfwidth`` around a mid-surface, from |distance|."""
    return band(dist, -halfwidth, halfwidth, pix)
