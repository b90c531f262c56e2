"""Shared fixtures: tiny synthetic volumes made in the test, never downloaded."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ugss.runtime.volume import Volume

# Under pytest-xdist (``make test``: two workers) each worker gets its share of the cores for
# OpenMP (torch) threads: with two threads per worker on two cores the suite took 174.6 s, with
# one 156.9 s (a file per worker, 2026-12-04). Set before any test module imports torch.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


def make_affine(spacing_zyx=(5.0, 0.45, 0.4), origin=(10.0, -20.0, -30.0)) -> np.ndarray:
    """Canonical (L, P, S) affine: x index → left (RAS −x), y → posterior (−y), z → superior."""
    sz, sy, sx = spacing_zyx
    aff = np.diag([-sx, -sy, sz, 1.0])
    aff[:3, 3] = origin
    return aff


@pytest.fixture
def asym_volume() -> Volume:
    """5 × 24 × 32 HU volume with a pattern that changes under every flip and transpose."""
    z, y, x = np.meshgrid(np.arange(5), np.arange(24), np.arange(32), indexing="ij")
    hu = (100 * z + 3 * y + x - 500).astype(np.float32)
    return Volume(hu=hu, affine=make_affine())
