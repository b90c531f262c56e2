"""Three tiny synthetic scans whose metrics are worked out by hand in test_eval_accumulator."""

from __future__ import annotations

import numpy as np

from ugss.evaluation import EvaluationAccumulator

VOXEL_ML = 0.1


def three_scans() -> list[tuple[str, np.ndarray, np.ndarray]]:
    # "a" (4 slices): truth 4 voxels in slice 1, 2 in slice 2. Prediction: 3 of slice 1's truth
    # voxels + 1 false positive in slice 1; slice 2 missed (0.2); slice 0 peaks at 0.4.
    ta = np.zeros((4, 4, 4), bool)
    ta[1, :2, :2] = True
    ta[2, 0, :2] = True
    pa = np.zeros((4, 4, 4), np.float32)
    pa[1, :2, :2] = 0.9
    pa[1, 1, 1] = 0.3
    pa[1, 3, 3] = 0.7
    pa[2, 0, :2] = 0.2
    pa[0, 2, 2] = 0.4
    # "b" (3 slices): empty truth, empty prediction (max 0.45).
    tb = np.zeros((3, 4, 4), bool)
    pb = np.full((3, 4, 4), 0.1, np.float32)
    pb[0, 0, 0] = 0.45
    # "c" (3 slices): truth 2 voxels in slice 0, found; 3 false positives in slice 2.
    tc = np.zeros((3, 4, 4), bool)
    tc[0, 0, :2] = True
    pc = np.zeros((3, 4, 4), np.float32)
    pc[0, 0, :2] = 0.8
    pc[2, 3, :3] = 0.6
    return [("a", ta, pa), ("b", tb, pb), ("c", tc, pc)]


def filled(**kwargs) -> EvaluationAccumulator:
    acc = EvaluationAccumulator(**kwargs)
    for scan_id, truth, prob in three_scans():
        acc.add(scan_id, truth, prob, VOXEL_ML)
    return acc
